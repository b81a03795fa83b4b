"""Training on a full disk: one line, nothing half-written, and a rerun with room resumes.

A file-size limit (`RLIMIT_FSIZE`, under which a write past the limit fails with EFBIG as a
full disk fails with ENOSPC) below the size of the dense model's latest checkpoint, and above
every other file of the run, makes the second epoch's checkpoint fail. The run must end in one
line naming the checkpoint, leave the first epoch's checkpoint in force with no partial files,
and the same command without the limit must resume from it and train exactly as a run that
never failed.
"""

import errno
import os
import resource
import subprocess
import sys

import pytest
from conftest import HAVE_REAL_DATA, ROOT

from autoenc import run_state
from autoenc import workdir as workdir_lib

needs_real_data = pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs dataset-fashion-mnist")
ARGS = [
    "--config=dense_compress",
    "--config.train_examples=512",
    "--config.batch_size=64",
    "--config.image_every_epochs=0",
]
LIMIT = 400_000  # bytes: the latest checkpoint (weights and Adadelta's slots) is ~615 kB


def launch(workdir, *extra, limit=None):
    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *ARGS, f"--workdir={workdir}", *extra],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        preexec_fn=limit_file_size if limit else None,
    )


def fingerprint(result) -> str:
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr.rsplit("weights fingerprint ", 1)[1].split()[0]


@needs_real_data
def test_a_full_disk_is_one_line_keeps_the_last_checkpoint_and_resumes(tmp_path):
    workdir = tmp_path / "run"
    assert launch(workdir, "--config.epochs=1").returncode == 0
    full = launch(workdir, "--config.epochs=2", limit=LIMIT)
    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    error = full.stderr.strip().splitlines()[-1]
    assert error.startswith("launch.py: error: cannot write ") and "ckpt-16" in error, error
    assert "File too large" in error and "previous checkpoint is intact" in error
    assert run_state.latest_checkpoint(workdir / "checkpoints").endswith("ckpt-8")
    assert not list((workdir / "checkpoints").glob("*_temp*"))
    assert len((workdir / "history.csv").read_text().splitlines()) == 2  # header + epoch 1

    resumed = launch(workdir, "--config.epochs=2")
    assert "Resuming from" in resumed.stderr
    uninterrupted = launch(tmp_path / "straight", "--config.epochs=2")
    assert fingerprint(resumed) == fingerprint(uninterrupted)


def test_a_full_disk_names_the_file_and_keeps_the_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "history.csv"
    path.write_text("the previous version")

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as raised:
        workdir_lib.atomic_write_text(path, "the new version")
    assert (raised.value.filename, raised.value.strerror) == (str(path), "No space left on device")
    assert path.read_text() == "the previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temporary file left
