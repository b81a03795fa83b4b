"""Every file a mode reads from a workdir, damaged in every way, ends in one line naming the file
and changes no file.

The matrix: a finished tiny run (the dense model on synthetic images, `trained_runs`), copied,
with one of its files emptied, truncated, overwritten with bytes that are no JSON, CSV or proto,
or (a JSON file) replaced by a JSON value of the wrong type; then each mode that reads that file
runs on it, in this process as `launch.py` runs it: training resumed for one more epoch, eval,
export, apply and figures. Each must raise a one-line `UserError` naming the file and leave
every file of the workdir as it was.
"""

import pytest
from conftest import mirrored
from PIL import Image
from trained_runs import copy_run, tiny_config

from autoenc import command_line, modes, train
from autoenc.errors import UserError

DAMAGES = {
    "empty": lambda data: b"",
    "truncated": lambda data: data[: (data.find(b"\n") if b"\n" in data else len(data)) // 2],
    "garbage": lambda data: bytes(range(256)) * 3,
}
JSON_DAMAGES = {**DAMAGES, "a list": lambda data: b"[]", "an empty object": lambda data: b"{}"}
READING_MODES = ["train", "eval", "export", "apply", "figures"]
# file -> (its damages, the modes that read it, what the one line must name)
FILES = {
    "config.json": (JSON_DAMAGES, READING_MODES, "config.json"),
    "metrics.json": (JSON_DAMAGES, ["train"], "metrics.json"),
    "history.csv": (DAMAGES, ["figures"], "history.csv"),
    "checkpoints/checkpoint": (DAMAGES, ["train"], "checkpoint"),
    "best/checkpoint": (DAMAGES, READING_MODES, "checkpoint"),
    "best/ckpt-1.index": (DAMAGES, ["eval", "figures"], "ckpt-1"),
    "checkpoints/ckpt-4.index": (DAMAGES, ["train"], "ckpt-4"),
}
CASES = [
    (name, damage, mode)
    for name, (damages, readers, _) in FILES.items()
    for damage in damages
    for mode in readers
]


def snapshot(directory):
    return {
        path.relative_to(directory): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file() and path.name != ".lock"
    }


def run_mode(mode, workdir, tiny_data, tmp_path):
    """`mode` on `workdir` as launch.py runs it (training: one epoch more than the run has)."""
    if mode == "train":
        config = tiny_config("dense")
        config.epochs = 2
        train.train_and_evaluate(config, workdir, data=tiny_data, strategy=mirrored(1))
        return
    config, _ = command_line.resolve_config(None, mode, str(workdir), {})
    options = {}
    if mode == "apply":
        (tmp_path / "inputs").mkdir()
        Image.fromarray(tiny_data.x_test[0]).save(tmp_path / "inputs" / "photo.png")
        options = dict(inputs=[str(tmp_path / "inputs")], output_dir=str(tmp_path / "out"))
    modes.run(mode, config, str(workdir), strategy_name="mirrored", options=options)


@pytest.mark.parametrize("name, damage, mode", CASES, ids=["-".join(case) for case in CASES])
def test_a_damaged_file_is_one_line_and_changes_nothing(
    name, damage, mode, tiny_data, tmp_path_factory, tmp_path
):
    _, workdir = copy_run("dense", tiny_data, tmp_path_factory, tmp_path / "run")
    assert (workdir / name).exists(), sorted(str(p) for p in workdir.rglob("*"))
    damages, _, named = FILES[name]
    (workdir / name).write_bytes(damages[damage]((workdir / name).read_bytes()))
    before = snapshot(workdir)
    with pytest.raises(UserError) as raised:
        run_mode(mode, workdir, tiny_data, tmp_path)
    message = str(raised.value)
    assert "\n" not in message and named in message, message
    assert snapshot(workdir) == before


def test_the_matrix_covers_every_mode_and_damage():
    assert {mode for _, _, mode in CASES} == set(READING_MODES)
    assert len(CASES) >= 50
