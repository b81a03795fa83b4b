"""Training throughput of autoenc's loop against Keras `model.fit`, interleaved on this CPU.

    python -m benchmarks [--config=dense_compress|conv_denoise|all] [--rounds=N] [--quick]
                         [--no-variants] [--no-launch-run] [--out=FILE.json]

Per config (with `all`, each in its own process, so that its peak RSS is its own), from the
same initial weights and with the same global batch, the arms (`benchmarks.arms`,
`benchmarks.fit`) are: `ours`, our loop in steady state; `ours_epoch`, our loop over whole
epochs timed as launch.py's history.csv `images_per_sec`; `fit` in this process and
`fit_tf_defaults` in a process at TensorFlow's defaults; the speed switches
(`benchmarks.switches`; with `bf16`, also `fit_bf16`, so bfloat16 is compared like for like);
`clean` and `clean_bf16` (conv: no noise, which `fit`'s inputs, noised once up front, do not
cost it); `pipeline`, the input alone; `matmul` (and `matmul_bf16`), the CPU's
attainable rate. Every arm but `fit_tf_defaults` runs with launch.py's process settings.
After the rounds, `python launch.py --config=NAME --config.epochs=4` runs in a child process
for its history.csv rates (the median of epochs 2 to 4 against `ours`) and its peak RSS. The
targets (`benchmarks.report.TARGETS`) are judged on this CPU, with the measured reason where
one is missed. docs/speed.md says how to read the table. The JSON goes to --out, or to a new
file under runs/benchmarks/.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's start-up INFO lines
from autoenc.command_line import configure_process  # noqa: E402

ENV_AS_GIVEN = dict(os.environ)  # for fit at TensorFlow's defaults, and child processes
configure_process()

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from autoenc import config as config_lib  # noqa: E402
from autoenc import data as data_lib  # noqa: E402
from autoenc import models, train  # noqa: E402
from benchmarks import cpu as cpu_lib  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.arms import Flops, OurLoop, matmul_arm  # noqa: E402
from benchmarks.clock import log, output_path, run_rounds, write_json  # noqa: E402
from benchmarks.fit import FitProcess, fit_arm  # noqa: E402
from benchmarks.launch_child import launch_run  # noqa: E402
from benchmarks.switches import BF16, CONFIGS, VARIANTS, variant_config  # noqa: E402

# Timed steps per measurement and rounds, (full, --quick): a multiple of every arm's
# steps_per_loop (a switch whose loop does not divide them is left out).
TIMED_STEPS = {"dense_compress": (200, 100), "conv_denoise": (100, 20)}
# Conv takes 6 rounds: with 4, two runs on one quiet CPU gave conv medians 10% apart, the
# cores running some stretches of seconds at two thirds of their speed.
ROUNDS = {"dense_compress": (7, 2), "conv_denoise": (6, 2)}
PIPELINE_SECONDS = (1.0, 0.3)  # timed seconds per pipeline measurement, at least
LAUNCH_EPOCHS = 4  # the launch.py run: the median of its epochs after the first (which traces)


def as_config(run, config):
    """`run` with op determinism set as `config` says before each call (it is process-wide)."""

    def wrapped():
        train.set_op_determinism(config.deterministic)
        return run()

    return wrapped


def make_arms(config, name: str, rounds: int, quick: bool, switches: bool) -> tuple[dict, dict]:
    """Builds every arm of one config, {arm: run() -> Timing}, and facts about them."""
    train.set_op_determinism(config.deterministic)
    data = data_lib.load_fashion_mnist(config.data_dir or None)
    images, timed = tf.constant(data.x_train), TIMED_STEPS[name][quick]
    loop = OurLoop(config, images)
    weights = loop.initial_weights
    fit_process = FitProcess(name, weights, timed, ENV_AS_GIVEN)
    fit = fit_arm(config, data.x_train, weights, timed)
    # In this order, reversed on odd rounds: ours sits next to fit and its whole epochs.
    arms = {
        "fit_tf_defaults": fit_process,
        "fit": as_config(fit, config),
        "ours": as_config(loop.steady(timed), config),
        "ours_epoch": as_config(OurLoop(config, images, weights).whole_epoch(1 + rounds), config),
    }
    if config.noise_factor:
        arms["clean"] = as_config(OurLoop(config, images, weights, 0.0).steady(timed), config)
    variants, same_steps, not_measured = {}, [], {}
    for variant, overrides in (VARIANTS[name] if switches else {}).items():
        vconfig = variant_config(config, overrides)
        if timed % vconfig.steps_per_loop:
            log(f"  {variant}: left out, {timed} timed steps are not whole calls of its loop")
            continue
        log(f"  building {variant} ({overrides})")
        arms[variant] = as_config(OurLoop(vconfig, images, weights).steady(timed), vconfig)
        variants[variant] = overrides
        if vconfig.steps_per_loop == config.steps_per_loop:
            same_steps.append(variant)
        if variant == BF16:
            fit_bf16 = as_config(fit_arm(vconfig, data.x_train, weights, timed), vconfig)
            try:  # Keras' fit may refuse a model in bfloat16 (its losses' dtypes)
                fit_bf16()
                arms["fit_bf16"] = fit_bf16
            except (TypeError, ValueError) as error:
                not_measured["bf16_over_fit_bf16"] = f"fit fails in bfloat16: {error}"[:160]
                log(f"  fit_bf16: {not_measured['bf16_over_fit_bf16']}")
            if config.noise_factor:
                clean_bf16 = OurLoop(vconfig, images, weights, 0.0).steady(timed)
                arms["clean_bf16"] = as_config(clean_bf16, vconfig)
    arms["pipeline"] = as_config(loop.pipeline_alone(PIPELINE_SECONDS[quick]), config)
    arms["matmul"] = matmul_arm()
    if BF16 in variants:
        arms["matmul_bf16"] = matmul_arm(tf.bfloat16)
    facts = dict(
        global_batch=config.batch_size,
        steps_per_loop=config.steps_per_loop,
        steps_per_epoch=loop.batches.steps_per_epoch,
        timed_steps=timed,
        replicas=loop.strategy.num_replicas_in_sync,
        flop_per_image=Flops.of(loop.model).per_image,
        # fit runs the book's layers, which do more multiply-adds for the conv model
        fit_flop_per_image=Flops.of(models.build(config, fused_layers=False).autoencoder).per_image,
        deterministic=bool(config.deterministic),
        xla=bool(config.xla),
        precision=config.precision,
        variants=variants,
        same_steps_as_ours=same_steps,
        not_measured=not_measured,
        fit_jit_compile=fit.jit_compile,
        fit_tf_defaults_onednn=fit_process.facts["onednn"],
    )
    return arms, facts


def run_one(name: str, args) -> dict:
    """Measures one config in this process; returns its summary."""
    config = config_lib.load_config(name)
    config_lib.validate(config)
    rounds = args.rounds or ROUNDS[name][args.quick]
    log(f"{name}: building")
    arms, facts = make_arms(config, name, rounds, args.quick, args.variants)
    slow_against = {variant: "ours" for variant in facts["variants"]}
    slow_against.update({"fit_bf16": "fit"} if "fit_bf16" in arms else {})
    slow_against.update({"clean_bf16": "clean"} if "clean_bf16" in arms else {})
    results = run_rounds(arms, rounds, slow_against)
    arms["fit_tf_defaults"].close()
    facts["rss_fit_tf_defaults_gb"] = arms["fit_tf_defaults"].peak_rss_gb
    run = None
    if args.launch_run and not args.quick:
        log(f"{name}: python launch.py --config.epochs={LAUNCH_EPOCHS}")
        run = launch_run(name, LAUNCH_EPOCHS, env=ENV_AS_GIVEN)
    return report.summarize(results, facts, run)


def measure_all(args) -> dict:
    """Each config in a child process of its own (its own peak RSS); their summaries."""
    summaries = {}
    for name in CONFIGS:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "summary.json"
            child = [sys.executable, "-m", "benchmarks.throughput", f"--config={name}"]
            child += [f"--summary-to={out}"] + ([f"--rounds={args.rounds}"] if args.rounds else [])
            child += ["--quick"] * args.quick + ["--no-variants"] * (not args.variants)
            child += ["--no-launch-run"] * (not args.launch_run)
            subprocess.run(child, check=True, stdout=subprocess.DEVNULL, env=ENV_AS_GIVEN)
            summaries[name] = json.loads(out.read_text())
    return summaries


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--config", default="all", choices=[*CONFIGS, "all"])
    parser.add_argument("--rounds", type=int, help="rounds (default 7 dense, 4 conv; 2 --quick)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes")
    parser.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--launch-run", action=argparse.BooleanOptionalAction, default=True,
        help=f"run launch.py for {LAUNCH_EPOCHS} epochs per config (not with --quick)",
    )  # fmt: skip
    parser.add_argument("--out", help="the JSON report (default: a new file in runs/benchmarks/)")
    parser.add_argument("--summary-to", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is not None and args.rounds < 1:
        parser.error(f"--rounds={args.rounds}: must be at least 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.summary_to:  # a child of measure_all
        Path(args.summary_to).write_text(json.dumps(run_one(args.config, args)))
        return
    out = output_path(args.out, "throughput")
    command = " ".join(["python -m benchmarks", *sys.argv[1:]])
    started, load_at_start = time.perf_counter(), os.getloadavg()
    if args.config == "all":
        summaries = measure_all(args)
    else:
        summaries = {args.config: run_one(args.config, args)}
    cpu = cpu_lib.this_cpu(onednn=cpu_lib.onednn_enabled())
    versions = f"TF {tf.__version__}, Keras {keras.__version__}, Python {platform.python_version()}"
    load = "/".join(f"{v:.1f}" for v in (*load_at_start, *os.getloadavg()[:1]))
    print(f"{command}\nCPU: {cpu.describe()}\n{versions}; load average 1/5/15 min, end: {load}\n")
    for name, summary in summaries.items():
        summary["targets"] = report.judge(name, summary, cpu.has_bf16_units)
        print(report.format_config(name, summary) + "\n")
    for name, summary in summaries.items():
        print(report.format_targets(name, summary, cpu.describe()) + "\n")
    wall = time.perf_counter() - started
    print(f"wall time {wall / 60:.1f} min; JSON: {out}")
    write_json(out, dict(command=command, cpu=cpu.to_json(), versions=versions, configs=summaries))


if __name__ == "__main__":
    main()
