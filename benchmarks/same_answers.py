"""Do the speed switches keep the same answers? val_loss of each switch against the defaults.

    python -m benchmarks.same_answers [--config=dense_compress|conv_denoise|all] [--epochs=N]
                                      [--train-examples=N] [--test-examples=N] [--out=FILE]

For each config, trains the default config, then each speed switch of `benchmarks.switches`
(mixed_bfloat16 among them), through `autoenc.train.train_and_evaluate`, the code launch.py
runs, each in a fresh temporary workdir: `--epochs` epochs (default 2) on the first
`--train-examples` real training images, validated on the first `--test-examples` test
images, with the config's own recipe and early stopping off, so every run trains the same
epochs. Every switch starts from the default's initial weights (checked before training).

Float noise is measured, not assumed: the rows `one_ulp_up` and `one_ulp_down` train the
default from initial weights nudged by one float32 ulp each, up or down, a change as small as
rounding. The conv model's first epoch amplifies such changes a lot, so any change of kernels
or fusion moves it as much, and by how much depends on the change: two nudges measure that
spread better than one.

A switch is judged after the last epoch, on the answer training gives, against a bound: the
larger of the precision's tolerance (1e-4 for float32 switches; 2% for 16-bit ones, whose
activations and gradients keep 8 or 11 mantissa bits) and twice the larger of the nudged rows'
deviations there (the JSON records that bound for every epoch too, for reading). Not earlier
epochs: in the conv model's first epoch any change of rounding, a float32 switch's included,
swings val_loss by up to about 12% either way (the nudges measured 1-6%), which the next epoch
undoes. Exits 1 if a switch is outside.
The JSON goes to --out, or to a new file under runs/benchmarks/.
"""

import argparse
import contextlib
import copy
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
from autoenc.command_line import configure_process  # noqa: E402

configure_process()  # the process settings launch.py runs with (oneDNN on, one malloc arena)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from autoenc import config as config_lib  # noqa: E402
from autoenc import data as data_lib  # noqa: E402
from autoenc import models, train  # noqa: E402
from benchmarks import cpu as cpu_lib  # noqa: E402
from benchmarks.clock import log, output_path, write_json  # noqa: E402
from benchmarks.switches import CONFIGS, VARIANTS  # noqa: E402

FLOAT32_TOLERANCE = 1e-4
TOLERANCES = {"float32": FLOAT32_TOLERANCE, "mixed_bfloat16": 0.02, "mixed_float16": 0.02}
# The float-noise envelope: this many times the largest val_loss deviation that nudging every
# initial weight by one float32 ulp, up or down, causes at the same epoch (the nudged rows).
NOISE_MULTIPLE = 2.0
NUDGES = {"one_ulp_up": np.float32(np.inf), "one_ulp_down": np.float32(-np.inf)}


def short_config(name: str, overrides: dict, epochs: int, train_examples: int):
    """The named config with `overrides`, shortened to `epochs` on `train_examples` images."""
    config = copy.deepcopy(config_lib.load_config(name))
    config.update(overrides)
    config.epochs = epochs
    config.train_examples = train_examples
    config.early_stopping.enabled = False
    config.image_every_epochs = 0
    config.loss_every_steps = 0
    config_lib.validate(config)
    return config


def initial_weights(config) -> list[np.ndarray]:
    """The weights `train_and_evaluate` starts from: the seed, then the model."""
    keras.utils.set_random_seed(config.seed)
    return models.build(config).autoencoder.get_weights()


@contextlib.contextmanager
def initial_weights_nudged(toward: np.float32):
    """Within the block, every model `train_and_evaluate` builds starts one float32 ulp from the
    weights the seed gives, toward +inf or -inf: a perturbation as small as rounding, to see
    how far training carries it."""
    build = models.build

    def nudged(config):
        nets = build(config)
        weights = nets.autoencoder.get_weights()
        nets.autoencoder.set_weights([np.nextafter(w, toward) for w in weights])
        return nets

    models.build = nudged
    try:
        yield
    finally:
        models.build = build


def train_short(config, data, nudge: np.float32 | None = None) -> dict:
    """One run of `train_and_evaluate` in a temporary workdir: val_loss per epoch and more;
    with `nudge` (+inf or -inf), from initial weights one ulp that way."""
    with tempfile.TemporaryDirectory(prefix="same-answers-") as workdir:
        started = time.perf_counter()
        with contextlib.nullcontext() if nudge is None else initial_weights_nudged(nudge):
            metrics = train.train_and_evaluate(config, workdir, data=data)
        seconds = time.perf_counter() - started
        with open(Path(workdir) / "history.csv", newline="") as f:
            history = list(csv.DictReader(f))
    return dict(
        val_loss=[float(row["val_loss"]) for row in history],
        loss=[float(row["loss"]) for row in history],
        test_psnr=metrics["test"]["psnr"],
        seconds=seconds,
    )


def check_config(name: str, data, epochs: int, train_examples: int) -> dict:
    """Trains the default and every variant of one config; returns runs and verdicts."""
    default = short_config(name, {}, epochs, train_examples)
    start = initial_weights(default)
    runs = {}
    for nudged, toward in NUDGES.items():
        log(f"{name}: training {nudged} (the default from initial weights one ulp off)")
        runs[nudged] = train_short(default, data, nudge=toward)
        runs[nudged].update(overrides={}, tolerance=None)
        log(f"  val_loss {runs[nudged]['val_loss']}  ({runs[nudged]['seconds']:.0f} s)")
    for variant, overrides in {"default": {}, **VARIANTS[name]}.items():
        config = short_config(name, overrides, epochs, train_examples)
        same_start = all(
            np.array_equal(a, b) for a, b in zip(initial_weights(config), start, strict=True)
        )
        if not same_start:
            raise SystemExit(f"{name} {variant}: initial weights differ from the default's")
        log(f"{name}: training {variant} {overrides}")
        run = train_short(config, data)
        run.update(overrides=overrides, tolerance=TOLERANCES[config.precision])
        runs[variant] = run
        log(f"  val_loss {run['val_loss']}  ({run['seconds']:.0f} s)")
    judge(runs)
    reference = runs["default"]["val_loss"]
    gain = 1 - reference[-1] / reference[0]
    return dict(
        epochs=epochs,
        train_examples=train_examples,
        test_examples=len(data.x_test),
        default_gain_first_to_last_epoch=float(gain),
        runs=runs,
    )


def judge(runs: dict) -> None:
    """Adds each run's `relative_diff` per epoch against the default, and to each switch (a run
    with a tolerance) its `bounds` per epoch and whether it gave the `same` answer after the
    last. Runs without a tolerance are the nudged yardsticks: the float-noise envelope is the
    largest of their deviations at each epoch."""
    reference = np.array(runs["default"]["val_loss"])
    for run in runs.values():
        run["relative_diff"] = (np.array(run["val_loss"]) / reference - 1).tolist()
    yardsticks = [run for run in runs.values() if run["tolerance"] is None]
    assert yardsticks, "judge needs the nudged runs"
    noise = np.max([np.abs(run["relative_diff"]) for run in yardsticks], axis=0)
    for run in runs.values():
        if run["tolerance"] is None:
            run["same"] = True
            continue
        # Per epoch: the precision's own tolerance, or the float-noise envelope if wider.
        bounds = np.maximum(run["tolerance"], NOISE_MULTIPLE * noise)
        run["bounds"] = bounds.tolist()
        run["same"] = bool(abs(run["relative_diff"][-1]) <= bounds[-1])


def format_config(name: str, result: dict) -> str:
    runs = result["runs"]
    epochs = range(1, result["epochs"] + 1)
    header = "".join(f"{f'val_loss e{e}':>13}{'rel diff':>10}" for e in epochs)
    lines = [
        f"{name}: {result['epochs']} epochs on the first {result['train_examples']:,} training"
        f" images, validated on the first {result['test_examples']:,} test images; default"
        f" val_loss gain epoch 1 -> {result['epochs']}:"
        f" {result['default_gain_first_to_last_epoch']:.1%}",
        f"  {'variant':<14}{header}{'bound, last':>12}{'test PSNR':>11}{'run s':>7}  verdict",
    ]
    for variant, run in runs.items():
        cells = "".join(
            f"{v:13.6f}{d:10.1e}" for v, d in zip(run["val_loss"], run["relative_diff"])
        )
        if run["tolerance"] is None:
            bound, verdict = f"{'-':>12}", "float noise, the yardstick"
        else:
            bound = f"{run['bounds'][-1]:12.1e}"
            verdict = "same" if run["same"] else "DIFFERENT"
        lines.append(
            f"  {variant:<14}{cells}{bound}{run['test_psnr']:11.3f}{run['seconds']:7.0f}  {verdict}"
        )
    lines.append(
        f"  (bound per epoch: the precision's tolerance ({FLOAT32_TOLERANCE:.0e} float32, 2%"
        f" 16-bit) or {NOISE_MULTIPLE:g}x the larger |rel diff| of the one_ulp rows at that epoch,"
        " whichever is larger; every switch judged after the last epoch)"
    )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.same_answers", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--config", default="all", choices=[*CONFIGS, "all"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-examples", type=int, default=6000)
    parser.add_argument("--test-examples", type=int, default=2000, help="validation images")
    parser.add_argument("--out", help="the JSON report (default: a new file in runs/benchmarks/)")
    args = parser.parse_args(argv)
    if min(args.epochs, args.train_examples, args.test_examples) < 1:
        parser.error("--epochs, --train-examples and --test-examples must be at least 1")
    out = output_path(args.out, "same_answers")
    command = " ".join(["python -m benchmarks.same_answers", *sys.argv[1:]])
    started = time.perf_counter()
    data = data_lib.load_fashion_mnist(None)
    data = data._replace(
        x_test=data.x_test[: args.test_examples], y_test=data.y_test[: args.test_examples]
    )
    names = CONFIGS if args.config == "all" else (args.config,)
    results = {name: check_config(name, data, args.epochs, args.train_examples) for name in names}
    cpu = cpu_lib.this_cpu(onednn=cpu_lib.onednn_enabled())
    print(f"{command}\nCPU: {cpu.describe()}")
    for name, result in results.items():
        print(format_config(name, result) + "\n")
    wall = time.perf_counter() - started
    print(f"wall time {wall / 60:.1f} min; JSON: {out}")
    write_json(out, dict(command=command, cpu=cpu.to_json(), wall_seconds=wall, configs=results))
    return 0 if all(run["same"] for r in results.values() for run in r["runs"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
