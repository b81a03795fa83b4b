"""Runs that survive: SIGKILL at random moments, SIGTERM, a second process on the workdir.

These start launch.py as users do, on the real Fashion-MNIST (a 2,048-image slice of it, the
dense model on its default path: one replica, XLA, blocks of `steps_per_loop` batches per call,
with checkpoints every 6 steps so that they split epochs and calls), and compare every
interrupted-then-resumed run with an uninterrupted run of the same command, bit for bit.

Signals that must land at a given point come from inside the run: `HOOKED_LAUNCH` runs launch.py
with `RunState.save` wrapped so that the process signals itself at a chosen save,
which no race with a fast run can miss. The module also checks the suite's own rule that under
CI=true a test needing the real data fails rather than skips when the data are missing.
"""

import csv
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import HAVE_REAL_DATA

ROOT = pathlib.Path(__file__).resolve().parent.parent
needs_real_data = pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs dataset-fashion-mnist")

ARGS = [
    "--config=dense_compress",
    "--config.train_examples=2048",
    "--config.batch_size=64",  # 32 steps per epoch
    "--config.epochs=3",
    "--config.steps_per_loop=4",
    "--config.checkpoint_every_steps=6",
]
# launch.py as users run it, except that its N-th latest-checkpoint save (1-based, counted in
# this process) sends SIGNAL to the process itself, BEFORE or AFTER the save. AUTOENC_TEST_HOOK
# is "SIGNAL:before|after:N". The process settings are made before TensorFlow loads, as
# launch.py makes them, so the run computes exactly what an unhooked one does.
HOOKED_LAUNCH = textwrap.dedent(
    """
    import os, runpy, signal, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from autoenc.command_line import configure_process
    configure_process()
    from autoenc import run_state

    name, when, nth = os.environ["AUTOENC_TEST_HOOK"].split(":")
    save_latest = run_state.RunState.save
    saves = []

    def save_and_signal(self):
        saves.append(1)
        if when == "before" and len(saves) == int(nth):
            os.kill(os.getpid(), getattr(signal, name))
        save_latest(self)
        if when == "after" and len(saves) == int(nth):
            os.kill(os.getpid(), getattr(signal, name))

    run_state.RunState.save = save_and_signal
    sys.argv[0] = os.path.join(os.getcwd(), "launch.py")
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)


def start(workdir, *extra, hook=None):
    """launch.py with ARGS on `workdir`; with `hook` ("SIGNAL:before|after:N"), HOOKED_LAUNCH."""
    program = ["-c", HOOKED_LAUNCH] if hook else [str(ROOT / "launch.py")]
    return subprocess.Popen(
        [sys.executable, *program, *ARGS, f"--workdir={workdir}", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "AUTOENC_TEST_HOOK": hook or ""},
    )


def run(workdir, *extra, hook=None):
    process = start(workdir, *extra, hook=hook)
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


@needs_real_data
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


def latest_step(workdir) -> int:
    return int(tf.train.latest_checkpoint(str(workdir / "checkpoints")).rsplit("-", 1)[1])


@needs_real_data
def test_sigterm_saves_exits_75_and_resumes(tmp_path, reference):
    workdir = tmp_path / "terminated"
    # SIGTERM right after the first checkpoint (step 6 of 32): the run must stop there.
    code, err = run(workdir, hook="SIGTERM:after:1")
    assert code == 75, err[-2000:]
    assert "stopped by SIGTERM" in err and "rerun the same command to resume" in err
    assert not (workdir / "metrics.json").exists()
    assert latest_step(workdir) < 32  # it stopped within the first epoch
    code, err = run(workdir)
    assert code == 0, err[-2000:]
    assert_same_outcome(outcome(workdir), reference)


@needs_real_data
def test_kill_mid_epoch_on_one_replica_then_resume_is_bit_identical(tmp_path, reference):
    workdir = tmp_path / "killed-mid-epoch"
    # SIGKILL just before the third checkpoint (step 18): steps 13-18 are lost, and the rerun
    # resumes from step 12, mid-epoch and mid-call (calls of 4 steps, cut at checkpoints).
    code, err = run(workdir, hook="SIGKILL:before:3")
    assert code == -signal.SIGKILL, err[-2000:]
    assert latest_step(workdir) == 12
    code, err = run(workdir)
    assert code == 0, err[-2000:]
    assert "Resuming from" in err and "(epoch 0, step 12)" in err
    assert "1 replica(s)" in err
    assert_same_outcome(outcome(workdir), reference)


@needs_real_data
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


CI_RULE_TESTS = textwrap.dedent(
    """
    import pytest

    @pytest.mark.skipif(True, reason="needs dataset-fashion-mnist")
    def test_needs_the_data():
        pass

    def test_skips_for_another_reason():
        pytest.skip("needs 8 GPUs")
    """
)


@pytest.mark.parametrize("ci, expected", [("true", "1 error"), ("", "2 skipped")])
def test_ci_fails_a_test_that_skips_for_want_of_the_data(ci, expected, tmp_path):
    (tmp_path / "test_rule.py").write_text(CI_RULE_TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-p", "conftest",
         "--rootdir", str(tmp_path), "-q", str(tmp_path / "test_rule.py")],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "CI": ci, "PYTHONPATH": str(ROOT / "tests")},
    )  # fmt: skip
    summary = result.stdout.strip().splitlines()[-1]
    assert expected in summary, result.stdout[-2000:]
    if ci:
        assert "1 skipped" in summary and "real Fashion-MNIST is missing" in result.stdout
