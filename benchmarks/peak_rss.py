"""`python -m benchmarks.peak_rss REPORT COMMAND...`: runs COMMAND and writes its exit code and
peak RSS (KiB) to the file REPORT.

Why a process in between: Linux carries a process's peak RSS across `exec`, so a child started
straight from a benchmark that holds gigabytes would report the benchmark's peak as its own.
Started from this small process, COMMAND's peak is its own.
"""

import os
import subprocess
import sys


def main(report: str, command: list[str]) -> None:
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    with open(report, "w") as f:
        f.write(f"{process.returncode} {usage.ru_maxrss}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
