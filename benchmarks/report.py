"""The throughput benchmark's verdicts and tables: per-round ratios and their medians, the
targets met or not on this CPU (with the measured reason where one is out of reach), and the
text table printed for each config.
"""

import dataclasses
import statistics
from types import SimpleNamespace

GB = 1e9
EPOCH_BOUND = 0.95  # a whole epoch's rate within 5% of the steady state's
# Cores other processes kept busy, at most, for wall-time ratios to be judged as they are.
SHARED_CORES = 0.25


@dataclasses.dataclass(frozen=True)
class Target:
    """A bound on one summary figure: `key` in the summary's ratios (median) or its top level."""

    label: str
    key: str
    bound: float
    at_most: bool = False  # the figure must stay at or below the bound (else at or above)
    bf16: bool = False  # judged only on a CPU with bfloat16 units
    percent: bool = False

    def judge(self, value: float | None, has_bf16_units: bool) -> bool | None:
        """True or False; None when it cannot be judged here (not measured, or bf16 emulated)."""
        if value is None or (self.bf16 and not has_bf16_units):
            return None
        return value <= self.bound if self.at_most else value >= self.bound

    def text(self) -> str:
        bound = f"{self.bound:.0%}" if self.percent else f"{self.bound:g}"
        return f"{self.label} {'<=' if self.at_most else '>='} {bound}"


TARGETS = {
    "dense_compress": [
        Target("ours / fit, float32", "ours_over_fit", 3.0),
        Target("ours / fit at TF defaults, float32", "ours_over_fit_tf_defaults", 3.0),
        Target("ours / fit, mixed_bfloat16", "bf16_over_fit_bf16", 3.0, bf16=True),
        Target("whole epoch / steady state", "epoch_over_steady", EPOCH_BOUND, percent=True),
    ],
    "conv_denoise": [
        Target("ours / fit, float32", "ours_over_fit", 1.5),
        Target("ours / fit at TF defaults, float32", "ours_over_fit_tf_defaults", 1.5),
        Target("ours / fit, mixed_bfloat16", "bf16_over_fit_bf16", 1.5, bf16=True),
        Target("ours mixed_bfloat16 / ours float32", "bf16_over_ours", 1.8, bf16=True),
        Target("whole epoch / steady state", "epoch_over_steady", EPOCH_BOUND, percent=True),
        Target("peak RSS of a launch.py run, GB", "launch_rss_gb", 1.0, at_most=True),
    ],
}


def _ratio(numerator: list, denominator: list) -> dict:
    """Per-round ratios of two arms' timings: by wall time, and by CPU time (steadier when
    other processes share the cores). An arm measured slow has one timing, its warm-up, which
    shares no round with the other's: then the one ratio is of the two arms' medians."""
    if len(numerator) != len(denominator):
        numerator, denominator = [_median_timing(numerator)], [_median_timing(denominator)]
    per_round = [a.rate / b.rate for a, b in zip(numerator, denominator)]
    by_cpu = [a.cpu_rate / b.cpu_rate for a, b in zip(numerator, denominator)]
    return dict(
        median=statistics.median(per_round),
        per_round=per_round,
        cpu_median=statistics.median(by_cpu),
    )


def _median_timing(timings: list):
    """A stand-in timing with the median rates of `timings` (work per second and per CPU
    second)."""
    return SimpleNamespace(
        rate=statistics.median(t.rate for t in timings),
        cpu_rate=statistics.median(t.cpu_rate for t in timings),
    )


def summarize(results: dict, facts: dict, launch_run: dict | None) -> dict:
    """Medians, per-round ratios and facts of one config's measurements ({arm: [Timing]})."""
    pairs = {
        "ours_over_fit": ("ours", "fit"),
        "ours_over_fit_tf_defaults": ("ours", "fit_tf_defaults"),
        "bf16_over_fit_bf16": ("bf16", "fit_bf16"),
        "bf16_over_ours": ("bf16", "ours"),
        "epoch_over_steady": ("ours_epoch", "ours"),
        "pipeline_over_ours": ("pipeline", "ours"),
        "noise_cost": ("ours", "clean"),
        "noise_cost_bf16": ("bf16", "clean_bf16"),
        "clean_over_fit": ("clean", "fit"),
        "clean_bf16_over_fit_bf16": ("clean_bf16", "fit_bf16"),
    }
    ratios = {
        key: _ratio(results[a], results[b])
        for key, (a, b) in pairs.items()
        if a in results and b in results
    }
    for key in ("noise_cost", "noise_cost_bf16"):  # the share of a noisy step the noise takes
        if key in ratios:
            cost = ratios[key]
            cost["per_round"] = [1 - r for r in cost["per_round"]]
            cost["median"], cost["cpu_median"] = 1 - cost["median"], 1 - cost["cpu_median"]
    arms = {
        arm: dict(
            median_rate=statistics.median(t.rate for t in timings),
            median_cpu_rate=statistics.median(t.cpu_rate for t in timings),
            rates=[t.rate for t in timings],
            median_setup_seconds=statistics.median(t.setup for t in timings),
            losses=[t.loss for t in timings],
            others_cores=[t.others for t in timings],
        )
        for arm, timings in results.items()
    }
    summary = dict(facts, arms=arms, ratios=ratios, launch_run=launch_run)
    summary["others_cores_max"] = max(max(a["others_cores"]) for a in arms.values())
    if launch_run:
        summary["launch_rss_gb"] = launch_run["peak_rss_gb"]
    summary["loss_diff"] = {  # same batches from the same weights: how far a switch's losses move
        variant: max(abs(v.loss / o.loss - 1) for v, o in zip(results[variant], results["ours"]))
        for variant in facts["same_steps_as_ours"]
        if len(results.get(variant, [])) == len(results["ours"])  # not measured slow
    }
    return summary


def gflops(summary: dict, arm: str) -> float | None:
    """An arm's median rate in GFLOP/s (training arms: images/s times FLOP per image)."""
    if arm not in summary["arms"]:
        return None
    rate = summary["arms"][arm]["median_rate"]
    if arm.startswith("matmul"):
        return max(summary["arms"][arm]["rates"]) / 1e9  # the best: the attainable rate
    return rate * _flop_per_image(summary, arm) / 1e9


def _flop_per_image(summary: dict, arm: str) -> float:
    """A training arm's FLOP per image: `fit` arms run the book's layers (reports without
    the key: the same model as ours)."""
    if arm.startswith("fit"):
        return summary.get("fit_flop_per_image", summary["flop_per_image"])
    return summary["flop_per_image"]


def _kernel_reason(summary: dict, ours: str, fit: str, matmul: str, bound: float) -> str:
    mine, theirs, peak = gflops(summary, ours), gflops(summary, fit), gflops(summary, matmul)
    if None in (mine, theirs, peak):
        return ""
    # Our steps at the matmul's rate, in images/s, against fit's images/s: the two may do
    # different arithmetic per image (fit runs the book's layers).
    ours_flop, fit_flop = _flop_per_image(summary, ours), _flop_per_image(summary, fit)
    ceiling = peak * 1e9 / ours_flop / summary["arms"][fit]["median_rate"]
    verdict = "out of reach with these kernels" if ceiling < bound else "within reach"
    return (
        f"ours {mine:.1f} GFLOP/s, fit {theirs:.1f}, {matmul} {peak:.1f} on this CPU:"
        f" ours/fit = {mine / theirs:.2f}x fit's GFLOP/s times {fit_flop / ours_flop:.2f}x"
        f" less arithmetic per image; at the matmul's rate ours would be {ceiling:.2f}x fit"
        f" ({verdict})"
    )


def _noise_reason(summary: dict, cost_key: str, clean_key: str | None, bound: float) -> str:
    """What the noise costs our steps, which `fit` does not pay: the book noises its inputs
    once up front, our pipeline draws it anew for every batch; and whether the target is met
    without it."""
    statistic = _statistic(summary)
    ratios = summary["ratios"]
    if cost_key not in ratios:
        return ""
    text = (
        f"; the noise, drawn anew for every batch (fit's inputs are noised once up front),"
        f" takes {ratios[cost_key][statistic]:.0%} of our step"
    )
    if clean_key in ratios:
        clean = ratios[clean_key][statistic]
        verdict = "met but for the noise" if clean >= bound else "short even without it"
        text += f", and without it ours is {clean:.2f}x fit ({verdict})"
    return text


def _reason(summary: dict, target: Target) -> str:
    """Why a target is missed, from this run's measurements."""
    if target.key in ("ours_over_fit", "ours_over_fit_tf_defaults"):
        same_process = target.key == "ours_over_fit"
        fit = "fit" if same_process else "fit_tf_defaults"
        kernels = _kernel_reason(summary, "ours", fit, "matmul", target.bound)
        clean = "clean_over_fit" if same_process else None  # measured against fit only
        return kernels + _noise_reason(summary, "noise_cost", clean, target.bound)
    if target.key == "bf16_over_fit_bf16":
        kernels = _kernel_reason(summary, "bf16", "fit_bf16", "matmul_bf16", target.bound)
        clean = "clean_bf16_over_fit_bf16"
        return kernels + _noise_reason(summary, "noise_cost_bf16", clean, target.bound)
    if target.key == "bf16_over_ours":
        f32, b16 = gflops(summary, "matmul"), gflops(summary, "matmul_bf16")
        ours, ours_b16 = gflops(summary, "ours"), gflops(summary, "bf16")
        if None in (f32, b16, ours, ours_b16):
            return ""
        # The CPU's own measure of what bfloat16 can give: a step whose kernels all ran at the
        # matmul's rate in each precision would gain b16 / f32 (docs/speed.md says when a
        # step can gain more).
        verdict = (
            "out of reach on this CPU: even the matmul gains less"
            if b16 / f32 < target.bound
            else "within reach of the matmul"
        )
        return (
            f"matmul bfloat16 {b16:.1f} against float32 {f32:.1f} GFLOP/s ({b16 / f32:.2f}x,"
            f" {verdict}); our steps {ours_b16:.1f} GFLOP/s in bfloat16 ({ours_b16 / b16:.0%}"
            f" of its matmul), {ours:.1f} in float32 ({ours / f32:.0%})"
        )
    if target.key == "epoch_over_steady" and "ours_epoch" in summary["arms"]:
        images = summary["steps_per_epoch"] * summary["global_batch"]
        steady = images / summary["arms"]["ours"]["median_rate"]
        epoch = images / summary["arms"]["ours_epoch"]["median_rate"]
        ratio = summary["ratios"]["epoch_over_steady"]
        return (
            f"an epoch takes {epoch:.2f} s against {steady:.2f} s for its steps at the steady"
            f" rate (medians); by CPU time the ratio is {ratio['cpu_median']:.0%}"
        )
    return ""


def shared(summary: dict) -> bool:
    """Whether other processes kept the cores busy enough to judge by CPU time."""
    return summary["others_cores_max"] > SHARED_CORES


def _statistic(summary: dict) -> str:
    """The ratios' statistic the targets are judged by: by wall time, or by CPU time where
    other processes shared the cores."""
    return "cpu_median" if shared(summary) else "median"


def judge(name: str, summary: dict, has_bf16_units: bool) -> list[dict]:
    """Every target of config `name`: its value, met (True/False/None) and the reason.
    Ratios are medians by wall time, or by CPU time where other processes shared the cores."""
    verdicts = []
    statistic = _statistic(summary)
    for target in TARGETS[name]:
        if target.key in summary["ratios"]:
            value = summary["ratios"][target.key][statistic]
        else:
            value = summary.get(target.key)
        met = target.judge(value, has_bf16_units)
        if met is None and value is not None:
            reason = "not judged: no AVX512-BF16 or AMX, so bfloat16 is emulated on this CPU"
        elif met is None:
            reason = summary.get("not_measured", {}).get(target.key, "not measured in this run")
        else:
            reason = "" if met else _reason(summary, target)
        shown = "-" if value is None else f"{value:.1%}" if target.percent else f"{value:.2f}"
        verdicts.append(
            dict(target=target.text(), value=value, shown=shown, met=met, reason=reason)
        )
    return verdicts


def format_config(name: str, s: dict) -> str:
    """The text table of one config's summary."""
    arms = s["arms"]
    lines = [
        f"{name}: global batch {s['global_batch']}, {s['timed_steps']} timed steps per"
        f" measurement, {len(arms['ours']['rates'])} rounds, {s['replicas']} replica(s),"
        f" steps_per_loop {s['steps_per_loop']}, op determinism"
        f" {'on' if s['deterministic'] else 'off'}, xla {s['xla']}, {s['precision']}",
        f"  {'arm':<18}{'median':>10}{'min':>10}{'max':>10}{'per CPU s':>11}"
        f"  {'setup s':>7}  {'others':>6}  unit",
    ]
    for arm, a in arms.items():
        unit, scale = ("GFLOP/s", 1e9) if arm.startswith("matmul") else ("images/s", 1.0)
        low, high = min(a["rates"]) / scale, max(a["rates"]) / scale
        lines.append(
            f"  {arm:<18}{a['median_rate'] / scale:10,.0f}{low:10,.0f}{high:10,.0f}"
            f"{a['median_cpu_rate'] / scale:11,.0f}"
            f"  {a['median_setup_seconds']:7.2f}  {max(a['others_cores']):6.2f}  {unit}"
        )
    lines.append(f"  {'ratio':<26}{'median':>8}{'by CPU':>8}   per round")
    for key, r in s["ratios"].items():
        if key.startswith("noise_cost"):
            shown = f"{r['median']:7.1%}{r['cpu_median']:8.1%}"
            rounds = " ".join(f"{v:.1%}" for v in r["per_round"])
        else:
            shown = f"{r['median']:7.2f}x{r['cpu_median']:7.2f}x"
            rounds = " ".join(f"{v:.2f}" for v in r["per_round"])
        lines.append(f"  {key:<26}{shown:>16}   {rounds}")
    for variant, diff in s["loss_diff"].items():
        lines.append(
            f"  {variant}: same batches from the same weights as ours; largest relative"
            f" difference of a round's mean loss {diff:.1e}"
        )
    for variant, overrides in s["variants"].items():
        rounds = len(arms[variant]["rates"]) if variant in arms else 0
        note = "" if rounds == len(arms["ours"]["rates"]) else f", measured slow: {rounds} round(s)"
        lines.append(f"  {variant} = {overrides}{note}")
    lines += _kernel_lines(s) + _launch_lines(s)
    lines.append(
        f"  peak RSS of fit at TF defaults {s['rss_fit_tf_defaults_gb']:.2f} GiB;"
        f" fit jit_compile={s['fit_jit_compile']}, oneDNN at TF defaults:"
        f" {s['fit_tf_defaults_onednn']}"
    )
    if shared(s):
        lines.append(
            f"  shared machine: other processes kept up to {s['others_cores_max']:.2f} cores busy"
            " during some measurements (column 'others'): targets are judged by CPU time"
        )
    return "\n".join(lines)


def _kernel_lines(s: dict) -> list[str]:
    lines = []
    for ours, matmul in (("ours", "matmul"), ("bf16", "matmul_bf16")):
        mine, peak = gflops(s, ours), gflops(s, matmul)
        if mine is not None and peak is not None:
            lines.append(
                f"  {ours} steps: {mine:.1f} GFLOP/s ({s['flop_per_image'] / 1e6:.2f} MFLOP per"
                f" training image), {mine / peak:.0%} of the best {matmul}, {peak:.1f} GFLOP/s"
            )
    return lines


def after_first_epoch(rates: list[float]) -> list[float]:
    """A launch.py run's epoch rates without its first epoch, which traces the steps (all of
    them if there is only one)."""
    return rates[1:] or rates


def _launch_lines(s: dict) -> list[str]:
    run = s.get("launch_run")
    if not run:
        return []
    rates = ", ".join(f"{rate:,.0f}" for rate in run["images_per_sec"])
    after_first = after_first_epoch(run["images_per_sec"])
    ratio = statistics.median(after_first) / s["arms"]["ours"]["median_rate"]
    return [
        f"  {run['command']}: history.csv images_per_sec by epoch {rates} (the median after"
        f" the first is {ratio:.2f}x ours' steady median, a separate process, not interleaved);"
        f" peak RSS {run['peak_rss_kib']:,} KiB = {run['peak_rss_gb']:.2f} GB,"
        f" {run['seconds']:.0f} s"
    ]


def format_targets(name: str, summary: dict, cpu_line: str) -> str:
    """The targets' verdicts, under the CPU they were judged on."""
    basis = "by CPU time, the cores were shared" if shared(summary) else "by wall time"
    lines = [f"{name} targets ({basis}) on {cpu_line}"]
    verdicts = summary["targets"]
    for v in verdicts:
        met = {True: "met", False: "NOT met", None: "-"}[v["met"]]
        lines.append(f"  {v['target']:<44}{v['shown']:>8}  {met}")
        if v["reason"]:
            lines.append(f"      {v['reason']}")
    return "\n".join(lines)
