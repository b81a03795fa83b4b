"""What `python -m benchmarks` concludes and prints for one config: its arms' rates, the ratios
of arms measured in the same rounds, and the targets met or not on this CPU.

Arms are named by kind and precision: `ours f32` (our loop in steady state), `fit f32` (Keras
`fit` on the book's layers), `epoch f32` (our loop over whole epochs), and `... bf16` for
mixed_bfloat16. No TensorFlow here.
"""

import dataclasses
import statistics

from benchmarks.rounds import Ratio, Target, Timing, ratio, shared

SHORT = {"float32": "f32", "mixed_bfloat16": "bf16", "mixed_float16": "f16"}
# The targets: ours / fit in each precision; ours in mixed_bfloat16 / ours in float32 (judged
# on CPUs with bfloat16 units only); whole epochs / steady state; a whole run's peak RSS.
OVER_FIT = {"dense_compress": 3.0, "conv_denoise": 1.5}
BF16_OVER_F32 = {"conv_denoise": 1.8}
EPOCH_OVER_STEADY = 0.95
PEAK_RSS_GB = {"conv_denoise": 1.0}


@dataclasses.dataclass
class ConfigResult:
    """One config's measurements: {arm: timings by round}, and the whole run's figures."""

    name: str
    facts: str  # the line that says how it is measured
    results: dict[str, list[Timing]]
    run: dict | None = None  # whole_run's {images_per_sec, peak_rss_gb, seconds}

    @property
    def shared(self) -> bool:
        return shared(self.results)

    def ratios(self) -> dict[str, Ratio]:
        """Per precision ours/fit and epoch/ours, and ours bf16/f32 where both ran."""
        pairs = {}
        for short in SHORT.values():
            pairs[f"ours/fit {short}"] = (f"ours {short}", f"fit {short}")
            pairs[f"epoch/ours {short}"] = (f"epoch {short}", f"ours {short}")
        pairs["ours bf16/f32"] = ("ours bf16", "ours f32")
        return {
            label: ratio(self.results[a], self.results[b])
            for label, (a, b) in pairs.items()
            if a in self.results and b in self.results
        }

    def targets(self, has_bf16_units: bool) -> list[tuple[Target, float | None]]:
        """This config's targets with the figure each is judged by (None: not measured;
        bfloat16 is judged only where the CPU has bfloat16 units)."""
        ratios, by_cpu = self.ratios(), self.shared

        def value(label: str, bf16: bool = False) -> float | None:
            if label not in ratios or (bf16 and not has_bf16_units):
                return None
            return round(ratios[label].value(by_cpu), 2)  # judged as printed

        judged = []
        if self.name in OVER_FIT:
            bound = OVER_FIT[self.name]
            judged.append((Target("ours / fit, float32", bound), value("ours/fit f32")))
            judged.append(
                (Target("ours / fit, mixed_bfloat16", bound), value("ours/fit bf16", True))
            )
        if self.name in BF16_OVER_F32:
            gain = Target("ours mixed_bfloat16 / float32", BF16_OVER_F32[self.name])
            judged.append((gain, value("ours bf16/f32", True)))
        judged.append(
            (Target("whole epoch / steady state", EPOCH_OVER_STEADY), value("epoch/ours f32"))
        )
        if self.name in PEAK_RSS_GB:
            rss = round(self.run["peak_rss_gb"], 2) if self.run else None
            judged.append(
                (Target("peak RSS of a whole run, GB", PEAK_RSS_GB[self.name], True), rss)
            )
        return judged

    def lines(self, has_bf16_units: bool) -> list[str]:
        """The printed table: arms, ratios, the whole run, then the targets."""
        lines = [f"{self.name}: {self.facts}"]
        lines.append(
            f"  {'arm':<12}{'median':>10}{'min':>10}{'max':>10}{'per CPU-s':>11}  images/s"
        )
        for arm, timings in self.results.items():
            rates = [t.rate for t in timings]
            cpu = statistics.median(t.cpu_rate for t in timings)
            lines.append(
                f"  {arm:<12}{statistics.median(rates):10,.0f}{min(rates):10,.0f}"
                f"{max(rates):10,.0f}{cpu:11,.0f}"
            )
        lines.append(f"  {'ratio':<16}{'median':>8}{'by CPU':>8}   by round")
        for label, r in self.ratios().items():
            rounds = " ".join(f"{v:.2f}" for v in r.per_round)
            lines.append(f"  {label:<16}{r.median:7.2f}x{r.cpu_median:7.2f}x   {rounds}")
        if self.run:
            rates = ", ".join(f"{rate:,.0f}" for rate in self.run["images_per_sec"])
            lines.append(
                f"  whole run of {len(self.run['images_per_sec'])} epoch(s): history.csv"
                f" images/s {rates}; peak RSS {self.run['peak_rss_gb']:.2f} GB;"
                f" {self.run['seconds']:.0f} s"
            )
        others = max(t.others for timings in self.results.values() for t in timings)
        basis = (
            f"by CPU time (others kept {others:.2f} cores busy)" if self.shared else "by wall time"
        )
        lines.append(f"  targets, {basis}:")
        for target, value in self.targets(has_bf16_units):
            shown = "-" if value is None else f"{value:.2f}"
            lines.append(f"    {target.text():<42}{shown:>7}  {target.verdict(value)}")
        if not has_bf16_units and any("bfloat16" in t.label for t, _ in self.targets(False)):
            lines.append(
                "    (bfloat16 is not judged on a CPU without AVX512-BF16 or AMX: it is emulated)"
            )
        return lines
