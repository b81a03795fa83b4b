"""The work directory as a user's filesystem presents it: directories no run wrote, event files
of the user's own, paths with `~` and dangling links, shared and exclusive locks, and
filesystems without `flock`."""

import errno
import fcntl
import os
import subprocess
import sys

import pytest
import tensorflow as tf
from conftest import ROOT, launch

from autoenc import command_line, summaries
from autoenc import workdir as workdir_lib
from autoenc.errors import UsageError, UserError
from configs import dense_compress


def snapshot(directory):
    return {path: path.read_bytes() for path in directory.rglob("*") if path.is_file()}


def assert_one_line_error(result, code, pattern):
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("launch.py: error: "), result.stderr
    assert pattern in lines[0], lines[0]


def users_event_file(directory):
    """An event file the user wrote with TensorFlow, as `tf.summary` names it."""
    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default(step=0):
        tf.summary.scalar("mine", 1.0)
    writer.close()
    (found,) = directory.glob("events.out.tfevents.*")
    return found


def test_a_directory_no_run_wrote_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n1,0.5\n")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "mine.png").write_bytes(b"not ours")
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=r"holds figures/ but no run \(no config.json\)"):
        workdir_lib.check_resumable(tmp_path, dense_compress.get_config())
    result = launch("--config=dense_compress", f"--workdir={tmp_path}")
    assert_one_line_error(result, 2, "holds figures/ but no run")
    assert snapshot(tmp_path) == before and not (tmp_path / ".lock").exists()


@pytest.mark.parametrize("contents", [[], [".lock"], [".lock", ".config.json.123.tmp"]])
def test_an_empty_directory_or_one_a_run_just_began_is_accepted(tmp_path, contents):
    for name in contents:
        (tmp_path / name).write_text("")
    workdir_lib.check_run_dir(tmp_path)
    workdir_lib.check_run_dir(tmp_path / "missing")
    assert workdir_lib.check_resumable(tmp_path, dense_compress.get_config()) is False


def test_rewriting_hparams_leaves_the_users_event_files_alone(tmp_path):
    mine = users_event_file(tmp_path)
    content = mine.read_bytes()
    config = dense_compress.get_config()
    summaries.write_hparams(tmp_path, config)
    summaries.write_hparams(tmp_path, config)
    assert mine.read_bytes() == content
    ours = list(tmp_path.glob(f"events.out.tfevents.*{summaries.HPARAMS_SUFFIX}"))
    assert len(ours) == 1 and len(list(tmp_path.glob("events.out.tfevents.*"))) == 2
    assert ours[0].name.split(".")[-3] == str(os.getpid())  # where tools read a writer's pid


def test_readers_share_the_lock_and_training_excludes_them_both_ways(tmp_path):
    with workdir_lib.WorkdirLock(tmp_path, shared=True):
        with workdir_lib.WorkdirLock(tmp_path, shared=True):  # two evals of one run
            with pytest.raises(UserError, match="another process is reading workdir"):
                with workdir_lib.WorkdirLock(tmp_path):
                    pass
    with workdir_lib.WorkdirLock(tmp_path):
        with pytest.raises(UserError, match=rf"another run \(pid {os.getpid()}\) is using"):
            with workdir_lib.WorkdirLock(tmp_path, shared=True):
                pass
    with workdir_lib.WorkdirLock(tmp_path, shared=True):  # all released
        pass


@pytest.mark.parametrize("shared", [False, True])
def test_a_filesystem_without_flock_names_the_variable_that_goes_on_without(
    tmp_path, monkeypatch, shared
):
    def no_flock(file, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_flock)
    monkeypatch.delenv(workdir_lib.NO_LOCK_VARIABLE, raising=False)
    with pytest.raises(UserError, match=f"has no flock .*{workdir_lib.NO_LOCK_VARIABLE}=1"):
        with workdir_lib.WorkdirLock(tmp_path, shared=shared):
            pass
    monkeypatch.setenv(workdir_lib.NO_LOCK_VARIABLE, "1")
    with workdir_lib.WorkdirLock(tmp_path, shared=shared):
        entered = True
    assert entered


def launch_at_home(home, *args):
    """launch.py with HOME=home, so that `~` means that directory."""
    env = {**os.environ, "HOME": str(home)}
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=home, env=env,
    )  # fmt: skip


def test_a_tilde_in_a_path_flag_means_the_home_directory(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("")
    result = launch_at_home(tmp_path, "--config=dense_compress", "--workdir=~/notes")
    assert_one_line_error(result, 2, f"--workdir={tmp_path}/notes holds mine.txt")
    result = launch_at_home(tmp_path, "--mode=eval", "--workdir=~/missing")
    assert_one_line_error(result, 2, f"{tmp_path}/missing/config.json does not exist")
    (tmp_path / "short.py").write_text(
        "from configs import dense_compress\n\n\ndef get_config():\n"
        "    config = dense_compress.get_config()\n    config.epochs = 0\n    return config\n"
    )
    result = launch_at_home(tmp_path, "--config=~/short.py", "--workdir=~/run")
    assert_one_line_error(result, 2, "--config.epochs=0: must be at least 1")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes", "short.py"]


def test_mode_flags_that_name_paths_are_expanded(monkeypatch):
    monkeypatch.setenv("HOME", "/home/someone")
    options = {"export_dir": "~/model", "inputs": ["~/a.png", "b/"], "output_dir": None}
    assert command_line.expand_user_paths(options) == {
        "export_dir": "/home/someone/model",
        "inputs": ["/home/someone/a.png", "b/"],
        "output_dir": None,
    }


@pytest.mark.parametrize("below", ["", "run"])
def test_a_dangling_link_as_workdir_is_named_with_its_target(tmp_path, below):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(UsageError, match=rf"{link} is a dangling symbolic link to {tmp_path}/gone"):
        workdir_lib.prepare(link / below)
    assert not (tmp_path / "gone").exists()
