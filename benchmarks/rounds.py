"""Measuring on a shared, drifting machine: one measurement (`Timing`: wall and CPU time, and
the cores other processes kept busy meanwhile), interleaved rounds of arms (`run_rounds`), the
ratio of two arms round by round (`ratio`), and the bounds a figure is judged by (`Target`).

Speed on these machines drifts by tens of percent between stretches of seconds, and the cores
may be shared, so arms are compared only within a round: every arm runs once per round, in
reverse order on odd rounds (A B, B A, ...), and a ratio is the median of its rounds' ratios.
Where other processes kept the cores busy, the ratio of work per CPU-second is the steadier
figure (time-sharing stretches wall time far more than CPU time), and targets are judged by it.
"""

import dataclasses
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Cores other processes may keep busy, at most, for targets to be judged by wall time.
SHARED_CORES = 0.25


@dataclasses.dataclass
class Timing:
    """One measurement: `work` images trained in `seconds` (`cpu_seconds` of this process)."""

    work: float
    seconds: float
    cpu_seconds: float
    others: float = 0.0  # cores other processes (or the hypervisor) kept busy meanwhile

    @property
    def rate(self) -> float:
        return self.work / self.seconds

    @property
    def cpu_rate(self) -> float:
        return self.work / self.cpu_seconds if self.cpu_seconds else float("nan")


def _busy_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine has been busy (steal included), and this process's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    own = usage.ru_utime + usage.ru_stime
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    except OSError:
        return own, own  # no view of the machine: as if this process were alone
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields)
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK"), own


class Stopwatch:
    """Started on creation; `stop(work)` gives the stretch's `Timing`."""

    def __init__(self):
        self.started = time.perf_counter()
        self.busy = _busy_seconds()

    def stop(self, work: float) -> Timing:
        seconds = time.perf_counter() - self.started
        machine, own = (after - before for before, after in zip(self.busy, _busy_seconds()))
        return Timing(work, seconds, own, max(0.0, machine - own) / seconds)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_rounds(arms: dict[str, Callable[[], Timing]], rounds: int) -> dict[str, list[Timing]]:
    """`rounds` rounds of every arm, in the given order on even rounds and reversed on odd
    ones, so each arm's neighbours run as often before it as after it. {arm: timings}."""
    results = {name: [] for name in arms}
    for index in range(rounds):
        for name in list(arms) if index % 2 == 0 else reversed(arms):
            timing = arms[name]()
            results[name].append(timing)
            log(
                f"  round {index + 1}/{rounds}  {name:<12}{timing.rate:12,.0f} images/s"
                f"  (others busy: {timing.others:.2f} cores)"
            )
    return results


@dataclasses.dataclass(frozen=True)
class Ratio:
    """Two arms' rates round by round: `per_round` by wall time; medians by wall and CPU time."""

    per_round: list[float]
    median: float
    cpu_median: float

    def value(self, shared: bool) -> float:
        """The figure targets are judged by: by CPU time on a shared machine."""
        return self.cpu_median if shared else self.median


def ratio(numerator: list[Timing], denominator: list[Timing]) -> Ratio:
    """The ratio of two arms measured in the same rounds."""
    if len(numerator) != len(denominator):
        raise ValueError("a ratio needs two arms measured in the same rounds")
    per_round = [a.rate / b.rate for a, b in zip(numerator, denominator)]
    by_cpu = [a.cpu_rate / b.cpu_rate for a, b in zip(numerator, denominator)]
    return Ratio(per_round, statistics.median(per_round), statistics.median(by_cpu))


def shared(results: dict[str, list[Timing]]) -> bool:
    """Whether other processes kept the cores busy enough to judge by CPU time."""
    return max(t.others for timings in results.values() for t in timings) > SHARED_CORES


@dataclasses.dataclass(frozen=True)
class Target:
    """A bound on one figure: at least `bound`, or at most with `at_most`."""

    label: str
    bound: float
    at_most: bool = False

    def verdict(self, value: float | None) -> str:
        """Returns "met", "NOT met", or "-" where there is no figure."""
        if value is None:
            return "-"
        met = value <= self.bound if self.at_most else value >= self.bound
        return "met" if met else "NOT met"

    def text(self) -> str:
        return f"{self.label} {'<=' if self.at_most else '>='} {self.bound:g}"
