"""Whole epochs as a user sees them: `python launch.py` against the book's Keras `fit`, each in
a fresh process, in turn.

    python -m benchmarks.launch_vs_fit [--config=conv_denoise] [--precision=float32]
                                       [--epochs=6] [--pairs=3]

Each pair runs `python launch.py --config=NAME --config.epochs=N --config.precision=P` into a
temporary workdir (its history.csv `images_per_sec`) and a process that trains the book's
model (`benchmarks.fit.book_model`, on the book's data: noisy inputs made once) with `fit` for
N epochs at TensorFlow's defaults, each epoch timed from its start to its end; the order swaps
every pair, so drift hits both alike. Both trace in their first epoch, which is left out.
Six epochs by default: some of `fit`'s epochs run a third under the others (conv in bfloat16
on an AVX-512 EPYC, one run's epochs 2-7: 5,774, 8,357, 8,358, 8,274, 5,982 and 5,670
images/s), so the median of two or three lands wherever those fall. Reported: each side's
epoch rates, the medians over epochs 2 to N, and launch.py / fit per pair (the medians of the
pair's two processes) with their median.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks import cpu as cpu_lib
from benchmarks.launch_child import REPO, launch_run


def fit_rates(config: str, precision: str, epochs: int) -> dict:
    """{"rates": images/s of each epoch, "onednn": whether its TensorFlow ran oneDNN} of the
    book's `fit` in a process at TensorFlow's defaults."""
    command = [sys.executable, "-m", "benchmarks.launch_vs_fit", "--fit-child"]
    command += [config, precision, str(epochs)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise SystemExit(f"launch_vs_fit: the fit run failed (exit {result.returncode}):\n{tail}")
    return json.loads(result.stdout.splitlines()[-1])


def fit_child(config_name: str, precision: str, epochs: int) -> None:
    """The fit process: trains and prints `fit_rates`' answer as one JSON line."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from autoenc import config as config_lib
    from autoenc import data as data_lib
    from benchmarks.cpu import onednn_enabled
    from benchmarks.fit import book_data, book_model

    config = config_lib.load_config(config_name)
    config.precision = precision
    inputs, clean = book_data(config, data_lib.load_fashion_mnist(config.data_dir or None).x_train)
    keras.utils.set_random_seed(config.seed)
    model = book_model(config)
    rates = []

    class EpochClock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            rates.append(len(inputs) / (time.perf_counter() - self.started))

    model.fit(
        inputs,
        clean,
        batch_size=config.batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=0,
        callbacks=[EpochClock()],
    )
    print(json.dumps({"rates": rates, "onednn": onednn_enabled()}))


def summarize(pairs: list[dict]) -> dict:
    """Per pair {"launch": rates, "fit": rates} -> medians over the epochs after the first and
    launch.py / fit per pair and overall."""
    ratios = [
        statistics.median(pair["launch"][1:]) / statistics.median(pair["fit"][1:]) for pair in pairs
    ]
    return {
        "launch": statistics.median(rate for pair in pairs for rate in pair["launch"][1:]),
        "fit": statistics.median(rate for pair in pairs for rate in pair["fit"][1:]),
        "ratios": ratios,
        "ratio": statistics.median(ratios),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.launch_vs_fit", description=__doc__.split("\n", 1)[0]
    )
    parser.add_argument("--config", default="conv_denoise")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run, at least 2")
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args(argv)
    if args.epochs < 2 or args.pairs < 1:
        parser.error("--epochs must be at least 2 (the first is left out), --pairs at least 1")
    pairs, onednn = [], None
    for index in range(args.pairs):
        pair = {}
        for side in ("launch", "fit") if index % 2 == 0 else ("fit", "launch"):
            if side == "launch":
                precision = [f"--config.precision={args.precision}"]
                rates = launch_run(args.config, args.epochs, precision)["images_per_sec"]
            else:
                fit = fit_rates(args.config, args.precision, args.epochs)
                rates, onednn = fit["rates"], fit["onednn"]
            pair[side] = rates
            shown = ", ".join(f"{rate:,.0f}" for rate in rates)
            print(f"pair {index + 1}/{args.pairs} {side}: {shown} images/s", file=sys.stderr)
        pairs.append(pair)
    summary = summarize(pairs)
    cpu_line = cpu_lib.this_cpu(onednn=onednn).describe()
    print(f"CPU: {cpu_line} (in fit's process; launch.py turns oneDNN on)")
    print(f"{args.config} in {args.precision}: {args.pairs} pairs of processes,"
          f" {args.epochs} epochs each (medians of epochs 2 to {args.epochs})")  # fmt: skip
    print(f"  python launch.py  {summary['launch']:10,.0f} images/s")
    print(f"  fit (book)        {summary['fit']:10,.0f} images/s")
    print(f"  launch.py / fit   {summary['ratio']:.2f}x, pairs "
          + " ".join(f"{ratio:.2f}" for ratio in summary["ratios"]))  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fit-child"]:
        fit_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
