"""Runs that survive: SIGKILL at random moments, SIGTERM, a second process on the workdir.

These start launch.py as users do, on the real Fashion-MNIST (a 2,048-image slice of it, the
dense model, checkpoints every 2 steps so kills land in and around saves), and compare every
interrupted-then-resumed run with an uninterrupted run of the same command.
"""

import csv
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from autoenc import data as data_lib

ROOT = pathlib.Path(__file__).resolve().parent.parent
HAVE_REAL_DATA = all((data_lib.DEBIAN_DIR / name).exists() for name in data_lib.FILES)
pytestmark = pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs dataset-fashion-mnist")

ARGS = [
    "--config=dense_compress",
    "--config.train_examples=2048",
    "--config.batch_size=64",
    "--config.epochs=3",
    "--config.steps_per_loop=1",
    "--config.checkpoint_every_steps=2",
]


def start(workdir, *extra):
    return subprocess.Popen(
        [sys.executable, str(ROOT / "launch.py"), *ARGS, f"--workdir={workdir}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def run(workdir, *extra):
    process = start(workdir, *extra)
    out, err = process.communicate(timeout=300)
    return process.returncode, err


def wait_for(condition, timeout=120.0):
    """Polls `condition` until true (returns True) or the deadline passes (returns False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def outcome(workdir):
    """What must not depend on interruptions: metrics, history without timings, weights."""
    with open(workdir / "history.csv") as f:
        history = [(r["epoch"], r["loss"], r["val_loss"]) for r in csv.DictReader(f)]
    checkpoint = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
    reader = tf.train.load_checkpoint(checkpoint)
    weights = {
        name: reader.get_tensor(name)
        for name in reader.get_variable_to_shape_map()
        # The host state holds wall-clock seconds; save_counter counts saves, which a
        # preempted run makes one more of.
        if "host" not in name and "save_counter" not in name
    }
    metrics = json.loads((workdir / "metrics.json").read_text())
    return metrics, history, os.path.basename(checkpoint), weights


def assert_same_outcome(a, b):
    assert a[:3] == b[:3]
    assert a[3].keys() == b[3].keys()
    for name in a[3]:
        np.testing.assert_array_equal(a[3][name], b[3][name], err_msg=name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    code, err = run(workdir)
    assert code == 0, err[-2000:]
    return outcome(workdir)


def test_sigkill_at_random_moments_then_resume_equals_uninterrupted(tmp_path, reference):
    rng = random.Random(1234)
    workdir = tmp_path / "killed"
    kills = 0
    pointer = workdir / "checkpoints" / "checkpoint"
    for _attempt in range(5):
        process = start(workdir)
        # Wait until this process has written a checkpoint of its own, then kill it after a
        # random delay: inside a step, a save, an evaluation or a history write.
        before = pointer.stat().st_mtime_ns if pointer.exists() else 0
        started = wait_for(
            lambda p=process, b=before: (
                p.poll() is not None or (pointer.exists() and pointer.stat().st_mtime_ns != b)
            )
        )
        assert started
        time.sleep(rng.uniform(0.0, 0.6))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=60)
    assert kills >= 3  # most attempts must really have been interrupted
    code, err = run(workdir)
    assert code == 0, err[-2000:]
    assert_same_outcome(outcome(workdir), reference)


def test_sigterm_saves_exits_75_and_resumes(tmp_path, reference):
    workdir = tmp_path / "terminated"
    process = start(workdir)
    pointer = workdir / "checkpoints" / "checkpoint"
    assert wait_for(lambda: pointer.exists())
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived")
    assert process.returncode == 75, err[-2000:]
    assert "stopped by SIGTERM" in err and "rerun the same command to resume" in err
    assert not (workdir / "metrics.json").exists()
    code, err = run(workdir)
    assert code == 0, err[-2000:]
    assert_same_outcome(outcome(workdir), reference)


def test_second_process_on_a_live_workdir_is_refused(tmp_path):
    workdir = tmp_path / "busy"
    first = start(workdir, "--config.epochs=50")
    try:
        assert wait_for(lambda: (workdir / "checkpoints" / "checkpoint").exists())
        code, err = run(workdir, "--config.epochs=50")
        assert code == 1
        assert f"is using workdir {workdir}" in err.strip().splitlines()[-1]
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=120)
    assert first.returncode == 75  # the refused process did not disturb the live one
