"""Every bad input ends in one line and a documented exit code, and touches no earlier result.

A finished run (dense model, a 512-image slice of the real Fashion-MNIST, one epoch) is made
once; each bad command is then pointed at it, and afterwards its metrics.json, best checkpoint
and every other file must be byte-for-byte what they were.
"""

import gzip
import shutil

import pytest
from conftest import HAVE_REAL_DATA, launch

from autoenc import data as data_lib

pytestmark = pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs dataset-fashion-mnist")
BASE = ["--config=dense_compress", "--config.train_examples=512", "--config.epochs=1"]


def snapshot(workdir):
    return {
        path.relative_to(workdir): path.read_bytes()
        for path in workdir.rglob("*")
        if path.is_file() and path.name != ".lock"
    }


def assert_one_error_line(stderr, message):
    """The error is one line, the last, with no traceback (progress logs may come before)."""
    errors = [line for line in stderr.splitlines() if line.startswith("launch.py: error: ")]
    assert len(errors) == 1 and stderr.strip().splitlines()[-1] == errors[0], stderr[-2000:]
    assert message in errors[0]
    assert "Traceback" not in stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("finished")
    result = launch(*BASE, f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert (workdir / "metrics.json").exists() and (workdir / "best" / "checkpoint").exists()
    return workdir


@pytest.fixture(scope="module")
def bad_data_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    dirs = {}
    for kind in ("truncated", "garbage", "magic"):
        target = root / kind
        shutil.copytree(data_lib.DEBIAN_DIR, target)
        victim = target / "train-labels-idx1-ubyte.gz"
        if kind == "truncated":
            victim.write_bytes(victim.read_bytes()[:1000])
        elif kind == "garbage":
            victim.write_bytes(b"this is not gzip at all")
        else:  # a well-formed gzip whose IDX header has the images' magic number
            victim.write_bytes(
                gzip.compress(b"\x00\x00\x08\x03" + gzip.decompress(victim.read_bytes())[4:])
            )
        dirs[kind] = target
    return dirs


CASES = {
    "unknown config": (["--config=nosuch"], 2, "unknown config 'nosuch'"),
    "unknown field": (["--config.nosuch=1"], 2, "unknown config field 'nosuch'"),
    "wrong type": (["--config.epochs=three"], 2, "expected int"),
    "epochs < 1": (["--config.epochs=0"], 2, "at least 1"),
    "batch_size < 1": (["--config.batch_size=0"], 2, "at least 1"),
    "negative noise": (["--config.noise_factor=-0.5"], 2, "0 or more"),
    "learning_rate <= 0": (["--config.learning_rate=0"], 2, "greater than 0"),
    "too many examples": (["--config.train_examples=60001"], 2, "only 60000"),
    # Extending the finished run (--config.epochs=2) is allowed, so these get as far as the
    # devices and the data before failing.
    "uneven replicas": (["--config.epochs=2", "--cpu_devices=3"], 2, "does not split"),
    "missing data": (
        ["--config.epochs=2", "--config.data_dir=/nonexistent/fmnist"],
        3,
        "/nonexistent/fmnist",
    ),
    "truncated gz": (["--config.epochs=2", "--config.data_dir={truncated}"], 3, "labels"),
    "corrupt gz": (["--config.epochs=2", "--config.data_dir={garbage}"], 3, "labels"),
    "wrong magic": (["--config.epochs=2", "--config.data_dir={magic}"], 3, "labels"),
    "another config": (["--config.seed=7", "--config.encoding_dim=16"], 2, "encoding_dim, seed"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_on_a_finished_run(case, finished, bad_data_dirs):
    extra, code, message = CASES[case]
    extra = [arg.format(**bad_data_dirs) for arg in extra]
    args = [*BASE, f"--workdir={finished}", *extra]
    if case == "unknown config":
        args.remove("--config=dense_compress")
    before = snapshot(finished)
    result = launch(*args)
    assert result.returncode == code, result.stderr[-2000:]
    assert_one_error_line(result.stderr, message)
    assert snapshot(finished) == before


@pytest.mark.parametrize(
    "workdir, code, message",
    [("{file}", 2, "is a file, not a directory"), ("/proc/autoenc-run", 1, "is not writable")],
)
def test_unusable_workdir(workdir, code, message, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    result = launch(*BASE, f"--workdir={workdir.format(file=a_file)}")
    assert result.returncode == code
    assert_one_error_line(result.stderr, message)
    assert a_file.read_text() == "not a directory"


def test_non_finite_loss_names_epoch_and_step(tmp_path, finished):
    before = snapshot(finished)
    result = launch(
        *BASE, f"--workdir={tmp_path}", "--config.optimizer=adam", "--config.learning_rate=1e38"
    )
    assert result.returncode == 4, result.stderr[-2000:]
    assert_one_error_line(result.stderr, "at epoch 1, step")
    assert "best checkpoint" in result.stderr
    assert not (tmp_path / "metrics.json").exists()
    assert snapshot(finished) == before


def test_rerunning_a_finished_run_says_so(finished):
    before = snapshot(finished)
    result = launch(*BASE, f"--workdir={finished}")
    assert result.returncode == 0
    assert "already finished" in result.stderr and "--config.epochs" in result.stderr
    assert snapshot(finished) == before
