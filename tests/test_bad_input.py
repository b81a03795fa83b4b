"""Every bad input ends in one line and a documented exit code, and touches no earlier result.

The session's tiny finished run (the dense model on synthetic images, `trained_runs`) is the
workdir each bad command is pointed at. Each command runs as a user runs it,
`python launch.py ...`, and must exit with its code, print exactly one line on stderr
(`launch.py: error: ...`) and no traceback, and leave every file of the finished run, and of
the user's files the case puts beside it, byte-for-byte as it was. Most cases fail before
TensorFlow loads, which keeps the matrix quick.
"""

import gzip
import os
import shutil
import subprocess
import sys

import pytest
from conftest import HAVE_REAL_DATA, ROOT
from PIL import Image
from trained_runs import copy_run, poison_latest_checkpoint, trained_run

from autoenc import data as data_lib

# The tiny run's config (trained_runs.tiny_config("dense")) on the command line.
TINY = [
    "--config=dense_compress",
    "--config.batch_size=64",
    "--config.epochs=1",
    "--config.train_examples=256",
    "--config.image_every_epochs=0",
    "--config.loss_every_steps=0",
]
# Root reads and writes through any permission bits; without these capabilities it does not.
UNPRIVILEGED = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def launch(args, unprivileged=False) -> subprocess.CompletedProcess:
    prefix = UNPRIVILEGED if unprivileged and os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, str(ROOT / "launch.py"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def snapshot(directory):
    return {
        path.relative_to(directory): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file() and path.name != ".lock"
    }


def assert_one_line(result, code, message, *, after_progress=False):
    """The error is exactly one line on stderr, with no traceback; `after_progress`: a run
    that trained first may have logged its progress before that line."""
    assert result.returncode == code, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("launch.py: error: ")]
    assert errors == lines[-1:] and (after_progress or len(lines) == 1), result.stderr[-3000:]
    assert message in errors[0]


@pytest.fixture(scope="module")
def finished(tiny_data, tmp_path_factory):
    return trained_run("dense", tiny_data, tmp_path_factory)[1]


@pytest.fixture(scope="module")
def places(tiny_data, tmp_path_factory):
    """The user's files and directories the cases aim at, by name."""
    root = tmp_path_factory.mktemp("places")
    foreign = root / "their-saved-model"
    foreign.mkdir()
    (foreign / "saved_model.pb").write_bytes(b"a SavedModel of the user's")
    (foreign / "NOTES.md").write_text("how I trained it")
    (root / "a-file").write_text("not a directory")
    (root / "inputs").mkdir()
    Image.fromarray(tiny_data.x_test[0]).save(root / "inputs" / "photo.jpg")
    (root / "results").mkdir()
    (root / "results" / "photo.png").write_bytes(b"the user's own photo")
    (root / "empty").mkdir()
    _, read_only = copy_run("dense", tiny_data, tmp_path_factory, root / "read-only")
    _, unreadable = copy_run("dense", tiny_data, tmp_path_factory, root / "unreadable")
    read_only.chmod(0o555)
    unreadable.chmod(0o000)
    yield {path.name: path for path in root.iterdir()}
    read_only.chmod(0o755)
    unreadable.chmod(0o755)


# name: (arguments after TINY and --workdir=FINISHED, exit code, part of the message).
# "{name}" is a path from `places`; a --config= or --workdir= here replaces the default one.
CASES = {
    # Refused before TensorFlow loads.
    "unknown config": (["--config=nosuch"], 2, "unknown config 'nosuch'"),
    "missing config file": (["--config=/nonexistent/mine.py"], 2, "does not exist"),
    "unknown field": (["--config.nosuch=1"], 2, "unknown config field 'nosuch'"),
    "wrong type": (["--config.epochs=three"], 2, "expected int"),
    "epochs < 1": (["--config.epochs=0"], 2, "at least 1"),
    "epochs too large": (["--config.epochs=99999999999"], 2, "must be at most 1000000"),
    "batch_size < 1": (["--config.batch_size=0"], 2, "at least 1"),
    "negative noise": (["--config.noise_factor=-0.5"], 2, "0 or more"),
    "nan noise": (["--config.noise_factor=nan"], 2, "must be a finite number"),
    "infinite noise": (["--config.noise_factor=inf"], 2, "must be a finite number"),
    "negative activity_l1": (["--config.activity_l1=-1e-4"], 2, "0 or more"),
    "learning_rate <= 0": (["--config.learning_rate=0"], 2, "greater than 0"),
    "nan learning_rate": (["--config.learning_rate=nan"], 2, "must be a finite number"),
    "negative seed": (["--config.seed=-1"], 2, "0 or more"),
    "too many examples": (["--config.train_examples=60001"], 2, "only 60000"),
    "monitor not logged": (["--config.early_stopping.monitor=val_foo"], 2, "values logged"),
    "mode against monitor": (
        ["--config.early_stopping.monitor=val_psnr", "--config.early_stopping.mode=min"],
        2,
        "val_psnr is better higher",
    ),
    "unknown mode": (["--config.early_stopping.mode=up"], 2, "must be auto, min or max"),
    "dense model, conv config": (
        ["--config=conv_denoise", "--config.model=dense"],
        2,
        "needs the fields encoding_dim, activity_l1",
    ),
    "dense field, conv config": (
        ["--config=conv_denoise", "--config.encoding_dim=16"],
        2,
        "belongs to the dense model",
    ),
    "unexpected argument": (["extra"], 2, "unexpected arguments: extra"),
    "unknown flag": (["--nosuch=1"], 2, "nosuch"),
    # Refused once TensorFlow has loaded, before any file is written.
    "flag of another mode": (["--mode=eval", "--inputs=x"], 2, "is for --mode=apply"),
    "apply without inputs": (["--mode=apply"], 2, "needs --inputs"),
    "another config": (["--config.seed=7", "--config.encoding_dim=16"], 2, "encoding_dim, seed"),
    "missing data": (
        ["--config.epochs=2", "--config.data_dir=/nonexistent/fmnist"],
        3,
        "/nonexistent/fmnist",
    ),
    "eval with another model": (
        ["--config=conv_denoise", "--mode=eval"],
        2,
        "different config (differs in: model",
    ),
    "eval at nan noise": (["--mode=eval", "--noise_factor=nan"], 2, "finite number"),
    "eval of no run": (["--mode=eval", "--workdir={empty}"], 1, "no best checkpoint"),
    "export to .": (["--mode=export", "--export_dir=."], 2, "name a directory of its own"),
    "export over their SavedModel": (
        ["--mode=export", "--export_dir={their-saved-model}"],
        2,
        "holds something other than an export",
    ),
    "export onto a file": (["--mode=export", "--export_dir={a-file}"], 2, "is a file"),
    "apply over their file": (
        ["--mode=apply", "--inputs={inputs}", "--output_dir={results}"],
        2,
        "already holds photo.png",
    ),
    "export from a read-only workdir": (
        ["--mode=export", "--workdir={read-only}"],
        1,
        "cannot write the export",
    ),
    "figures of an unreadable workdir": (
        ["--mode=figures", "--workdir={unreadable}"],
        1,
        "cannot read",
    ),
    "apply from an unreadable workdir": (
        ["--mode=apply", "--workdir={unreadable}", "--inputs={inputs}", "--output_dir={empty}"],
        1,
        "cannot read",
    ),
    "train in a file": (["--workdir={a-file}"], 2, "is a file, not a directory"),
}


def command(extra, finished, places):
    extra = [arg.format(**places) for arg in extra]
    given = {arg.split("=")[0] for arg in extra}
    base = [arg for arg in [*TINY, f"--workdir={finished}"] if arg.split("=")[0] not in given]
    return [*base, *extra]


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_line_and_changes_nothing(case, finished, places):
    extra, code, message = CASES[case]
    before = {path: snapshot(path) for path in [finished, *places.values()] if path.is_dir()}
    unprivileged = any("{read-only}" in arg or "{unreadable}" in arg for arg in extra)
    result = launch(command(extra, finished, places), unprivileged=unprivileged)
    assert_one_line(result, code, message)
    assert {path: snapshot(path) for path in before} == before


@pytest.mark.parametrize("name", ["lr[0.1]", "lr*", "lr?"])
def test_a_workdir_path_tensorflow_would_read_as_a_glob_is_refused_before_anything(name, tmp_path):
    workdir = tmp_path / "sweep" / name
    result = launch([*TINY, f"--workdir={workdir}"])
    assert_one_line(result, 2, "which TensorFlow's checkpoint lookup reads as a glob pattern")
    assert not (tmp_path / "sweep").exists()


def test_the_matrix_is_large_enough():
    assert len(CASES) + len(REAL_DATA_CASES) >= 25


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


# Cases that get as far as the real data (extending the finished run with --config.epochs=2).
REAL_DATA_CASES = {
    "uneven replicas": (["--config.epochs=2", "--cpu_devices=3"], 2, "does not split"),
    "truncated gz": (["--config.epochs=2", "--config.data_dir={truncated}"], 3, "labels"),
    "corrupt gz": (["--config.epochs=2", "--config.data_dir={garbage}"], 3, "labels"),
    "wrong magic": (["--config.epochs=2", "--config.data_dir={magic}"], 3, "labels"),
}


@pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs dataset-fashion-mnist")
@pytest.mark.parametrize("case", REAL_DATA_CASES, ids=list(REAL_DATA_CASES))
def test_bad_input_with_real_data(case, finished, bad_data_dirs):
    extra, code, message = REAL_DATA_CASES[case]
    before = snapshot(finished)
    assert_one_line(launch(command(extra, finished, bad_data_dirs)), code, message)
    assert snapshot(finished) == before


@pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs dataset-fashion-mnist")
def test_non_finite_loss_names_epoch_and_step_and_keeps_the_best(tiny_data, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("diverged") / "run"
    config, workdir = copy_run("dense", tiny_data, tmp_path_factory, workdir)
    poison_latest_checkpoint(config, workdir)  # the run diverged after its best epoch
    best, metrics = snapshot(workdir / "best"), (workdir / "metrics.json").read_bytes()
    assert any(name.suffix == ".index" for name in best)  # there is a best to lose
    result = launch(command(["--config.epochs=2"], workdir, {}))
    assert_one_line(result, 4, "at epoch 2, step", after_progress=True)
    assert f"the best checkpoint in {workdir / 'best'} is intact" in result.stderr
    assert snapshot(workdir / "best") == best
    assert (workdir / "metrics.json").read_bytes() == metrics


def test_rerunning_a_finished_run_says_so(finished):
    before = snapshot(finished)
    result = launch([*TINY, f"--workdir={finished}"])
    assert result.returncode == 0
    assert "already finished" in result.stderr and "--config.epochs" in result.stderr
    assert snapshot(finished) == before
