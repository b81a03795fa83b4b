"""Timing on a shared, drifting machine: one measurement (`Timing`), how busy other processes
kept the cores meanwhile (`Stopwatch`), and interleaved rounds of arms (`run_rounds`).

Speed here drifts by tens of percent between stretches of seconds, and other processes share
the cores, so arms are compared only within a round: every arm runs once per round, in reverse
order on odd rounds (A B ... B A), and ratios are taken per round.
"""

import dataclasses
import datetime
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

# An arm whose warm-up rate is below this fraction of its reference arm's is measured slow and
# left out of the rounds: an emulated bfloat16 on a CPU without bf16 units, say (a switch
# that is merely slower, like the dense model without XLA, stays above it).
SLOW_FRACTION = 0.25


@dataclasses.dataclass
class Timing:
    """One measurement: `work` (images or FLOP) done in `seconds` of steady state."""

    work: float
    seconds: float
    setup: float = 0.0  # the call's time before the clock started, less its steps' share
    loss: float | None = None  # mean training loss over the timed steps (a sanity check)
    others: float = 0.0  # cores that other processes (or the hypervisor) kept busy meanwhile
    cpu_seconds: float = 0.0  # CPU time this process spent in `seconds`

    @property
    def rate(self) -> float:
        return self.work / self.seconds

    @property
    def cpu_rate(self) -> float:
        """Work per CPU-second of this process: steadier than `rate` when other processes
        take turns on the cores (time-sharing stretches wall time, not CPU time, much)."""
        return self.work / self.cpu_seconds if self.cpu_seconds else float("nan")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_gb() -> float:
    """This process's peak resident set so far, in GiB: VmHWM, which starts afresh at `exec`
    (`ru_maxrss`, the fallback, keeps the peak of the process that started this one)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy (steal included), and this process's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return float("nan"), 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return busy, usage.ru_utime + usage.ru_stime


class Stopwatch:
    """Wall time of a stretch, how many cores others kept busy meanwhile, and this process's
    CPU time (`own_cpu_seconds`, set by `stop`)."""

    def __init__(self):
        self.started = time.perf_counter()
        self.cpu = _cpu_seconds()
        self.own_cpu_seconds = 0.0

    def stop(self) -> tuple[float, float]:
        """Returns (seconds, cores kept busy by other processes on average)."""
        seconds = time.perf_counter() - self.started
        machine_busy, own = (after - before for before, after in zip(self.cpu, _cpu_seconds()))
        self.own_cpu_seconds = own
        return seconds, max(0.0, machine_busy - own) / seconds


def run_rounds(
    arms: dict[str, Callable[[], Timing]], rounds: int, slow_against: dict[str, str]
) -> dict[str, list[Timing]]:
    """Warms every arm up once, then runs `rounds` rounds of all arms, reversed on odd rounds.

    `slow_against` maps an arm to its reference arm: if the arm's warm-up ran below
    `SLOW_FRACTION` of the reference's, it is measured slow, and its warm-up (a steady-state
    measurement after its first traced call) stands as its only measurement.

    Returns:
        {arm: its timings, round by round}.
    """
    warm = {}
    for name, run in arms.items():
        warm[name] = run()
        log(f"  warm-up {name:<16}{warm[name].rate:14,.0f} per s")
    slow = {
        name
        for name, reference in slow_against.items()
        if name in warm and warm[name].rate < SLOW_FRACTION * warm[reference].rate
    }
    for name in sorted(slow):
        log(f"  {name}: measured slow, its warm-up stands as its only measurement")
    results = {name: [warm[name]] if name in slow else [] for name in arms}
    names = [name for name in arms if name not in slow]
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            timing = arms[name]()
            results[name].append(timing)
            log(
                f"  round {round_index + 1}/{rounds}  {name:<16}{timing.rate:14,.0f} per s"
                f"  (others busy: {timing.others:.2f} cores)"
            )
    return results


def output_path(out: str | None, name: str) -> Path:
    """Where a benchmark writes its JSON: `out` if given (never an existing file), else a new
    file under runs/benchmarks/ named by the benchmark and the time."""
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs", "benchmarks", f"{name}-{stamp}.json")
    path = Path(out)
    if path.exists():
        raise SystemExit(f"{name}: --out={out} exists; name a new file")
    return path


def write_json(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
