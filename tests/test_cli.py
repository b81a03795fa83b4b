"""launch.py as a user runs it: real Fashion-MNIST end to end, and one-line errors."""

import csv
import json
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import HAVE_REAL_DATA, ROOT
from conftest import launch as run_launch

from autoenc import data as data_lib


def launch(*args):
    return run_launch(*args, timeout=600)  # real-data training runs


def assert_one_line_error(result, code, pattern):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("launch.py: error: "), result.stderr
    assert pattern in lines[0]
    assert "Traceback" not in result.stderr


def test_unknown_config_name():
    assert_one_line_error(launch("--config=nosuch"), 2, "unknown config 'nosuch'; valid names:")


def test_unknown_field_lists_valid_fields():
    result = launch("--config=conv_denoise", "--config.nosuch=1")
    assert_one_line_error(result, 2, "unknown config field 'nosuch'; valid fields: batch_size")


@pytest.mark.parametrize(
    "override, message",
    [("--config.epochs=ten", "expected int"), ("--config.noise_factor=-1", "0 or more")],
)
def test_bad_values(override, message):
    assert_one_line_error(launch("--config=conv_denoise", override), 2, message)


def test_a_huge_number_of_epochs_is_refused_before_anything_is_planned(tmp_path):
    workdir = tmp_path / "run"
    epochs = "--config.epochs=2000000000"  # the loop would plan every epoch up front
    result = run_launch("--config=dense_compress", f"--workdir={workdir}", epochs, timeout=120)
    assert_one_line_error(result, 2, f"{epochs}: must be at most 1000000")
    assert not workdir.exists()


def loads_tensorflow(process: subprocess.Popen) -> bool:
    """Whether the process has mapped one of TensorFlow's shared libraries: it is importing
    TensorFlow, which launch.py does only after parsing its flags and config."""
    try:
        with open(f"/proc/{process.pid}/maps") as maps:
            return "/tensorflow/" in maps.read()
    except OSError:
        return False


def test_ctrl_c_while_tensorflow_loads_is_one_line_and_exit_130(tmp_path):
    command = [sys.executable, str(ROOT / "launch.py"), "--config=dense_compress"]
    process = subprocess.Popen(
        [*command, f"--workdir={tmp_path}"], stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 120
        while not loads_tensorflow(process) and process.poll() is None:
            assert time.monotonic() < deadline, "TensorFlow never started loading"
            time.sleep(0.01)  # polls the condition; the import that follows takes seconds
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["launch.py: error: interrupted (SIGINT)"], stderr


@pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs apt-get install dataset-fashion-mnist")
def test_the_console_shows_the_runs_lines_without_tensorflows_info_notes(tmp_path):
    tiny = ["--config=dense_compress", "--config.epochs=2", "--config.train_examples=512"]
    result = launch(*tiny, f"--workdir={tmp_path / 'quiet'}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "] epoch 1/2  loss" in result.stderr and "] epoch 2/2  loss" in result.stderr
    assert "Sharding callback" not in result.stderr, result.stderr
    result = launch(*tiny, f"--workdir={tmp_path / 'chatty'}", "--tf_log_level=info")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "] epoch 2/2  loss" in result.stderr and "Sharding callback" in result.stderr


@pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs apt-get install dataset-fashion-mnist")
def test_conv_denoise_on_real_data_then_bad_data_leaves_it_intact(tmp_path):
    workdir = tmp_path / "run"
    result = launch(
        "--config=conv_denoise", f"--workdir={workdir}", "--cpu_devices=2",
        "--config.epochs=2", "--config.train_examples=3000",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert metrics["replicas"] == 2 and metrics["epochs_completed"] == 2
    assert metrics["test"]["psnr"] > metrics["noisy_input"]["psnr"] + 2
    assert metrics["test"]["ssim"] > metrics["noisy_input"]["ssim"]
    with open(workdir / "history.csv") as f:
        val_losses = [float(row["val_loss"]) for row in csv.DictReader(f)]
    assert len(val_losses) == 2 and val_losses[1] < val_losses[0]
    assert {"config.json", "checkpoints", "best", "train", "validation"} <= {
        p.name for p in workdir.iterdir()
    }

    # The same workdir with a truncated data file: one line, exit 3, nothing touched.
    broken = tmp_path / "broken-data"
    shutil.copytree(data_lib.DEBIAN_DIR, broken)
    images = broken / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:100_000])
    before = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and p.name != ".lock"}
    result = launch(
        "--config=conv_denoise", f"--workdir={workdir}", "--config.epochs=3",
        "--config.train_examples=3000", f"--config.data_dir={broken}", "--cpu_devices=2",
    )  # fmt: skip
    assert_one_line_error(result, 3, "t10k-images-idx3-ubyte.gz")
    after = {p: p.read_bytes() for p in workdir.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


@pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs apt-get install dataset-fashion-mnist")
def test_dense_compress_on_real_data(tmp_path):
    result = launch(
        "--config=dense_compress", f"--workdir={tmp_path}", "--config.epochs=3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "noisy_input" not in metrics
    assert metrics["test"]["psnr"] > 12.5  # a flat grey guess scores about 10 dB; measured 13.5
