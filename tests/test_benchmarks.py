"""The benchmark's own logic: reading the CPU line, rounds in alternating order, ratios and the
targets' verdicts, a failed whole run in one line, and `python -m benchmarks` end to end on a
few hundred real images (its usage errors in one line before TensorFlow loads)."""

import subprocess
import sys

import pytest

from benchmarks import machine, report, rounds
from benchmarks.rounds import Target, Timing
from benchmarks.whole_run import whole_run

CPUINFO = """\
processor\t: 0
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu avx2 fma avx512f avx512_bf16

processor\t: 1
cpu family\t: 25
model name\t: Other
flags\t\t: fpu
"""


def test_cpu_line_from_the_first_processor():
    model, family, flags = machine.parse_cpuinfo(CPUINFO)
    cpu = machine.Cpu(model, family, 2, flags, onednn=True)
    assert cpu.describe() == (
        "AMD EPYC (family 26, model 2), 2 logical CPUs: AVX2 yes, AVX-512 yes, AVX512-BF16 yes,"
        " AMX no; oneDNN on"
    )
    assert cpu.has_bf16_units
    assert machine.Cpu("x", None, 8, frozenset({"amx_bf16"})).has_bf16_units
    avx2 = machine.Cpu("x", None, 2, frozenset({"avx2"}))
    assert not avx2.has_bf16_units and avx2.describe().endswith("oneDNN unknown")
    assert machine.parse_cpuinfo("model name\t: X\nflags\t: avx2\n") == ("X", None, {"avx2"})


def test_missing_proc_files_give_an_unknown_cpu_and_no_peak(tmp_path):
    cpu = machine.this_cpu(cpuinfo=tmp_path / "missing")
    assert cpu.family is None and cpu.flags == frozenset() and cpu.model
    assert machine.peak_rss_gb(tmp_path / "missing") is None
    (tmp_path / "status").write_text("VmPeak:\t 9 kB\nVmHWM:\t  976562 kB\n")
    assert machine.peak_rss_gb(tmp_path / "status") == pytest.approx(1.0)


def test_rounds_alternate_the_order_of_the_arms():
    order = []

    def arm(name):
        return lambda: order.append(name) or Timing(1.0, 1.0, 1.0)

    results = rounds.run_rounds({"a": arm("a"), "b": arm("b"), "c": arm("c")}, 3)
    assert order == list("abccbaabc")
    assert {name: len(timings) for name, timings in results.items()} == {"a": 3, "b": 3, "c": 3}


def test_ratios_are_medians_of_rounds_by_wall_and_by_cpu_time():
    ours = [Timing(300, 1.0, 2.0), Timing(300, 2.0, 2.0), Timing(300, 1.0, 1.0)]
    fit = [Timing(100, 1.0, 1.0), Timing(100, 1.0, 1.0), Timing(100, 1.0, 1.0)]
    r = rounds.ratio(ours, fit)
    assert r.per_round == [3.0, 1.5, 3.0] and r.median == 3.0 and r.cpu_median == 1.5
    assert r.value(shared=False) == 3.0 and r.value(shared=True) == 1.5
    with pytest.raises(ValueError):
        rounds.ratio(ours, fit[:2])


def test_target_verdicts():
    assert Target("x", 1.5).verdict(1.5) == "met"
    assert Target("x", 1.5).verdict(1.49) == "NOT met"
    assert Target("rss", 1.0, at_most=True).verdict(1.1) == "NOT met"
    assert Target("x", 1.5).verdict(None) == "-"


def _conv_result(others: float) -> report.ConfigResult:
    """conv_denoise measured in both precisions: ours 1.6x fit, 1.5x in bfloat16."""
    rates = {"ours f32": 160, "fit f32": 100, "epoch f32": 150, "ours bf16": 240, "fit bf16": 100}
    results = {arm: [Timing(rate, 1.0, 2.0, others)] * 3 for arm, rate in rates.items()}
    run = dict(images_per_sec=[140.0], peak_rss_gb=1.2, seconds=60.0)
    return report.ConfigResult("conv_denoise", "facts", results, run)


def test_targets_judge_bfloat16_only_with_bf16_units():
    judged = {t.label: (value, t.verdict(value)) for t, value in _conv_result(0.0).targets(True)}
    assert judged["ours / fit, float32"] == (1.6, "met")
    assert judged["ours / fit, mixed_bfloat16"] == (2.4, "met")
    assert judged["ours mixed_bfloat16 / float32"] == (1.5, "NOT met")
    assert judged["whole epoch / steady state"] == (0.94, "NOT met")  # 0.9375 as printed
    assert judged["peak RSS of a whole run, GB"] == (1.2, "NOT met")
    emulated = {t.label: value for t, value in _conv_result(0.0).targets(False)}
    assert emulated["ours / fit, mixed_bfloat16"] is None
    assert emulated["ours mixed_bfloat16 / float32"] is None
    text = "\n".join(_conv_result(0.0).lines(False))
    assert "by wall time" in text and "not judged on a CPU without" in text


def test_on_a_shared_machine_targets_are_judged_by_cpu_time():
    result = _conv_result(others=1.0)
    ours = [Timing(160, 1.0, 4.0, 1.0)] * 3  # by CPU time only 0.8x fit
    result.results["ours f32"] = ours
    assert result.shared and "by CPU time" in "\n".join(result.lines(True))
    judged = {t.label: value for t, value in result.targets(True)}
    assert judged["ours / fit, float32"] == pytest.approx(0.8)


def test_a_failed_whole_run_ends_the_benchmark_with_its_last_line():
    with pytest.raises(SystemExit, match="the whole run failed.*unknown config 'no_such'"):
        whole_run("no_such", 1, {})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--precisions=float8"], "'float8' is not one of"),
        (["--rounds=0"], "--rounds must be at least 1"),
        (["--config=no_such"], "unknown config 'no_such'"),
        (["--config.batch_size=0"], "batch_size"),
    ],
)
def test_usage_errors_are_one_line(argv, message):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0 and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_benchmark_end_to_end_on_a_few_hundred_images():
    argv = ["--config=dense_compress", "--config.train_examples=1536"]
    argv += ["--config.steps_per_loop=2", "--rounds=2", "--seconds=0.001", "--run-epochs=0"]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *argv], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "python -m benchmarks " + " ".join(argv)
    assert "CPU: " in lines[1] and "logical CPUs" in lines[1] and "oneDNN on" in lines[1]
    assert "2 timed steps per measurement, 2 rounds, 6 steps per epoch" in done.stdout
    for row in ("ours f32", "fit f32", "epoch f32", "ours/fit f32", "epoch/ours f32"):
        assert any(line.strip().startswith(row) for line in lines), row
    assert "ours / fit, float32 >= 3" in done.stdout
