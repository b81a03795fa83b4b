"""A whole training run in a child process, as `python launch.py --config=NAME --config.epochs=N`
runs it (launch.py's process settings, then `autoenc.train.train_and_evaluate`): its
history.csv epoch rates, its wall time and its own peak resident memory, which a child of its
own keeps apart from the benchmark's.

`python -m benchmarks.whole_run NAME EPOCHS SCRATCH [--config.FIELD=VALUE ...]` is the child's
end, started by `whole_run`; users run `python -m benchmarks`.
"""

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def whole_run(name: str, epochs: int, overrides: dict[str, str]) -> dict:
    """{images_per_sec: [per epoch], peak_rss_gb, seconds} of a run in a temporary workdir.
    A failed run ends the benchmark with the run's last line of stderr."""
    with tempfile.TemporaryDirectory(prefix="benchmark-run-") as scratch:
        command = [sys.executable, "-m", "benchmarks.whole_run", name, str(epochs), scratch]
        command += [f"--config.{field}={value}" for field, value in overrides.items()]
        started = time.perf_counter()
        child = subprocess.run(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        seconds = time.perf_counter() - started
        if child.returncode:
            last = (child.stderr.strip().splitlines() or ["no output"])[-1]
            raise SystemExit(f"benchmarks: the whole run failed (exit {child.returncode}): {last}")
        return dict(json.loads(Path(scratch, "result.json").read_text()), seconds=seconds)


def main(name: str, epochs: str, scratch: str, rest: list[str]) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from autoenc.command_line import configure_process, split_overrides

    configure_process()  # before TensorFlow loads, as launch.py does

    from autoenc import config as config_lib

    config = config_lib.load_config(name)
    config_lib.apply_overrides(config, split_overrides(rest)[1])
    config.epochs = int(epochs)

    from autoenc import train  # TensorFlow loads here, after a bad config had its say
    from benchmarks.machine import peak_rss_gb

    workdir = Path(scratch, "run")
    train.train_and_evaluate(config, workdir)
    with open(workdir / "history.csv", newline="") as history:
        rates = [float(row["images_per_sec"]) for row in csv.DictReader(history)]
    result = dict(images_per_sec=rates, peak_rss_gb=peak_rss_gb())
    Path(scratch, "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:4], sys.argv[4:])
