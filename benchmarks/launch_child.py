"""`python launch.py` in a child process, as a user runs it: its history.csv epoch rates, its
wall time and its peak RSS. Imports no TensorFlow, so a caller that must stay at TensorFlow's
defaults can use it.
"""

import csv
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.report import GB

REPO = Path(__file__).resolve().parents[1]


def launch_run(
    config: str,
    epochs: int,
    overrides: list[str] | tuple = (),
    env: dict | None = None,
    read_workdir: Callable[[Path], dict] | None = None,
) -> dict:
    """`python launch.py --config=CONFIG --config.epochs=EPOCHS [OVERRIDES]` into a temporary
    workdir, removed afterwards: {command, images_per_sec (per epoch), seconds, peak_rss_kib,
    peak_rss_gb}, and the keys `read_workdir(workdir)` returns from the finished run (other
    keys than these). A failed run ends the caller with launch.py's last lines of stderr."""
    command = [f"--config={config}", f"--config.epochs={epochs}", *overrides]
    with tempfile.TemporaryDirectory(prefix="benchmark-launch-") as scratch:
        workdir, rss = Path(scratch, "run"), Path(scratch, "rss")
        with tempfile.TemporaryFile() as stderr:
            started = time.perf_counter()
            # benchmarks.peak_rss in between: the child's peak RSS is then its own.
            subprocess.run(
                [sys.executable, "-m", "benchmarks.peak_rss", str(rss), sys.executable,
                 str(REPO / "launch.py"), *command, f"--workdir={workdir}"],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )  # fmt: skip
            seconds = time.perf_counter() - started
            code, peak_kib = map(int, rss.read_text().split())
            if code:
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace").strip().splitlines()[-5:]
                raise SystemExit(
                    f"benchmarks: the launch.py run failed (exit {code}):\n" + "\n".join(tail)
                )
        with open(workdir / "history.csv", newline="") as history:
            rates = [float(row["images_per_sec"]) for row in csv.DictReader(history)]
        read = read_workdir(workdir) if read_workdir else {}
    run = dict(
        command=" ".join(["python launch.py", *command]),
        images_per_sec=rates,
        seconds=seconds,
        peak_rss_kib=peak_kib,
        peak_rss_gb=peak_kib * 1024 / GB,
    )
    if clash := run.keys() & read.keys():
        raise ValueError(f"read_workdir returned keys launch_run sets: {sorted(clash)}")
    return run | read
