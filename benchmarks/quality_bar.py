"""Time to a denoiser's quality bar in each precision: `python launch.py` runs, seed by seed.

    python -m benchmarks.quality_bar [--config=conv_denoise] [--seeds=0,1,2] [--epochs=5]
                                     [--precisions=float32,mixed_bfloat16] [--bar-db=8]
                                     [--out=FILE.json]

For each seed, one run per precision back to back (the order turning from seed to seed, so
drift hits both alike), each `python launch.py --config=NAME --config.epochs=N
--config.precision=P --config.seed=S` in a temporary workdir. The bar is the noisy input's
PSNR (metrics.json `noisy_input`, the test images with the evaluation noise, which validation
scores too) plus --bar-db; a run reaches it at the first epoch whose validation PSNR (the
run's TensorBoard scalar `epoch_psnr`) is at or above it, after the sum of history.csv's
epoch `seconds` up to there: the epochs' wall time, evaluation included, without the
process's start-up. Which epoch first crosses moves with the seed, so one seed says little;
the summary gives each precision's median time over the seeds, which precision got there
first seed by seed, and the last epoch's val_loss against the first precision's: figures to
read, not a verdict. The JSON goes to --out (or a new file under runs/benchmarks/), rewritten
after every seed, so a failed run keeps the seeds before it.
"""

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

from autoenc import config as config_lib
from autoenc.command_line import configure_process
from autoenc.errors import UsageError
from benchmarks import cpu as cpu_lib
from benchmarks.clock import log, output_path, write_json
from benchmarks.launch_child import launch_run
from benchmarks.report import after_first_epoch


def read_run(workdir: Path) -> dict:
    """A finished run's validation PSNR, val_loss and seconds (evaluation included) per
    epoch, and the noisy input's PSNR."""
    import tensorflow as tf  # here, not at the top: a usage error needs no TensorFlow
    from tensorboard.backend.event_processing import event_accumulator

    with open(workdir / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    events = event_accumulator.EventAccumulator(
        str(workdir / "validation"), size_guidance={event_accumulator.TENSORS: 0}
    )
    events.Reload()
    psnr = {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("epoch_psnr")}
    return dict(
        val_psnr=[psnr[int(row["epoch"])] for row in history],
        val_loss=[float(row["val_loss"]) for row in history],
        epoch_seconds=[float(row["seconds"]) for row in history],
        noisy_psnr=json.loads((workdir / "metrics.json").read_text())["noisy_input"]["psnr"],
    )


def first_crossing(run: dict, bar: float) -> tuple[int, float] | None:
    """(epoch, seconds of epochs up to its end) of the first epoch at or above the bar."""
    for index, psnr in enumerate(run["val_psnr"]):
        if psnr >= bar:
            return index + 1, sum(run["epoch_seconds"][: index + 1])
    return None


def summarize(runs: dict, precisions: list[str], bar_db: float) -> dict:
    """Per precision, from {seed: {precision: run}}: the runs that reached the bar, their median
    seconds, how many seeds it was first on, and its last val_loss off the first precision's,
    seed by seed. Writes each run's `bar` and `crossing` into the run."""
    reference = precisions[0]
    summary = {p: dict(reached=0, seconds=[], first=0, last_val_loss_off=[]) for p in precisions}
    for by_precision in runs.values():
        times = {}
        for precision, run in by_precision.items():
            run["bar"] = run["noisy_psnr"] + bar_db
            run["crossing"] = first_crossing(run, run["bar"])
            times[precision] = run["crossing"][1] if run["crossing"] else float("inf")
            if run["crossing"]:
                summary[precision]["reached"] += 1
                summary[precision]["seconds"].append(run["crossing"][1])
            last = run["val_loss"][-1] / by_precision[reference]["val_loss"][-1] - 1
            summary[precision]["last_val_loss_off"].append(last)
        fastest = min(times.values())
        winners = [p for p, t in times.items() if t == fastest]
        if len(times) > 1 and fastest < float("inf") and len(winners) == 1:
            summary[winners[0]]["first"] += 1
    for figures in summary.values():
        figures["median_seconds"] = (
            statistics.median(figures["seconds"]) if figures["seconds"] else None
        )
    return summary


def format_report(config: str, epochs: int, runs: dict, summary: dict, bar_db: float) -> str:
    lines = [
        f"{config}, {epochs} epochs per run; the bar: the noisy input's PSNR + {bar_db:g} dB",
        f"  {'seed':<5}{'precision':<16}{'val PSNR by epoch, dB':<34}{'bar dB':>7}"
        f"{'reached':>9}{'seconds':>9}{'images/s':>10}{'val_loss':>10}{'peak RSS':>10}",
    ]
    for seed, by_precision in runs.items():
        for precision, run in by_precision.items():
            psnrs = " ".join(f"{p:.2f}" for p in run["val_psnr"])
            reached, seconds = run["crossing"] or (None, float("nan"))
            reached = "never" if reached is None else f"epoch {reached}"
            rate = statistics.median(after_first_epoch(run["images_per_sec"]))
            lines.append(
                f"  {seed:<5}{precision:<16}{psnrs:<34}{run['bar']:7.2f}{reached:>9}"
                f"{seconds:9.1f}{rate:10,.0f}{run['val_loss'][-1]:10.4f}"
                f"{run['peak_rss_gb']:7.2f} GB"
            )
    seeds = len(runs)
    reference = next(iter(summary))  # summarize keeps --precisions' order
    for precision, figures in summary.items():
        median = figures["median_seconds"]
        shown = "-" if median is None else f"{median:.1f} s"
        offs = ", ".join(f"{off:+.2%}" for off in figures["last_val_loss_off"])
        against = "" if precision == reference else f"; last val_loss off {reference}'s: {offs}"
        lines.append(
            f"  {precision}: reached the bar in {figures['reached']} of {seeds} runs, median"
            f" {shown} of epochs; first with {figures['first']} seed(s) of {seeds}{against}"
        )
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality_bar", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--config", default="conv_denoise", help="a denoising config")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument(
        "--precisions", default="float32,mixed_bfloat16", help="the first is the reference"
    )
    parser.add_argument("--bar-db", type=float, default=8.0, help="dB over the noisy input")
    parser.add_argument("--out", help="the JSON report (default: a new file in runs/benchmarks/)")
    args = parser.parse_args(argv)
    try:
        args.seeds = list(dict.fromkeys(int(seed) for seed in args.seeds.split(",")))
    except ValueError:
        parser.error(f"--seeds={args.seeds}: give whole numbers separated by commas")
    args.precisions = list(dict.fromkeys(p for p in args.precisions.split(",") if p))
    unknown = [p for p in args.precisions if p not in config_lib.PRECISIONS]
    if unknown or not args.precisions:
        parser.error(f"--precisions: name one or more of {', '.join(config_lib.PRECISIONS)}")
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    try:
        config = config_lib.load_config(args.config)
    except UsageError as error:
        parser.error(str(error))
    if not config.noise_factor > 0:  # its validation, which the bar is judged on, is noisy
        parser.error(f"--config={args.config} validates without noise: the bar needs a denoiser")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    out = output_path(args.out, "quality_bar")
    command = " ".join(["python -m benchmarks.quality_bar", *sys.argv[1:]])
    # launch.py's process settings here too, so this process's TensorFlow runs oneDNN as the
    # runs' does, and says so
    configure_process()
    onednn = cpu_lib.onednn_enabled()
    started, runs, cpu = time.perf_counter(), {}, cpu_lib.this_cpu(onednn=onednn)
    for index, seed in enumerate(args.seeds):
        order = args.precisions if index % 2 == 0 else args.precisions[::-1]
        by_precision = {}
        for precision in order:
            overrides = [f"--config.precision={precision}", f"--config.seed={seed}"]
            run = launch_run(args.config, args.epochs, overrides, read_workdir=read_run)
            by_precision[precision] = run
            psnrs = " ".join(f"{p:.2f}" for p in run["val_psnr"])
            log(f"seed {seed} {precision}: val PSNR {psnrs} dB ({run['seconds']:.0f} s)")
        runs[seed] = {p: by_precision[p] for p in args.precisions}  # the table's order
        write_json(out, dict(command=command, cpu=cpu.to_json(), runs=runs))
    summary = summarize(runs, args.precisions, args.bar_db)
    print(f"{command}\nCPU: {cpu.describe()} (in launch.py's runs)")
    print(format_report(args.config, args.epochs, runs, summary, args.bar_db))
    wall = time.perf_counter() - started
    print(f"wall time {wall / 60:.1f} min; JSON: {out}")
    write_json(out, dict(command=command, cpu=cpu.to_json(), runs=runs, summary=summary))


if __name__ == "__main__":
    main()
