"""launch.py --mode=eval/export/apply as a user runs them, against a finished tiny run.

Every command, successful or not, must leave the run's own files byte-for-byte as they were.
"""

import json

import numpy as np
import pytest
from conftest import HAVE_REAL_DATA, launch
from PIL import Image
from trained_runs import trained_run

from autoenc import config as config_lib
from autoenc import modes
from autoenc.errors import UsageError, UserError

CONV = ["--config=conv_denoise", "--config.batch_size=64"]  # the tiny run's batch


def snapshot(workdir, skip=()):
    return {
        path.relative_to(workdir): path.read_bytes()
        for path in workdir.rglob("*")
        if path.is_file()
        and path.name != ".lock"
        and path.relative_to(workdir).parts[0] not in skip
    }


def error_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("launch.py: error: ")]


@pytest.fixture(scope="module")
def conv_run(tiny_data, tmp_path_factory):
    return trained_run("conv", tiny_data, tmp_path_factory)[1]


@pytest.fixture
def precious(tmp_path):
    """A directory of the user's that no command may change."""
    path = tmp_path / "precious"
    path.mkdir()
    (path / "photo.png").write_bytes(b"years of work")
    return path


@pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs apt-get install dataset-fashion-mnist")
def test_eval_writes_its_own_file(conv_run):
    before = snapshot(conv_run, skip=("eval",))
    result = launch(*CONV, f"--workdir={conv_run}", "--mode=eval", "--noise_factor=0.3",
                    "--eval_seed=2")  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    written = json.loads((conv_run / "eval" / "noise0.3_seed2.json").read_text())
    assert written["noise_factor"] == 0.3 and written["seed"] == 2
    assert set(written["test"]) == set(written["noisy_input"]) == {"bce", "mse", "psnr", "ssim"}
    assert "noise 0.3, seed 2" in result.stderr and "noise0.3_seed2.json" in result.stderr
    assert snapshot(conv_run, skip=("eval",)) == before  # metrics.json untouched


def test_apply_reports_each_bad_file_and_exits_non_zero(conv_run, tmp_path):
    Image.fromarray(np.full((9, 13, 3), 200, np.uint8)).save(tmp_path / "small.jpg")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    before = snapshot(conv_run)
    out = tmp_path / "out"
    result = launch(*CONV, f"--workdir={conv_run}", "--mode=apply", f"--inputs={tmp_path}",
                    f"--output_dir={out}")  # fmt: skip
    assert result.returncode == 1, result.stderr[-2000:]
    skipped = [line for line in result.stderr.splitlines() if "launch.py: skipped" in line]
    assert skipped == [f"launch.py: skipped {tmp_path}/broken.png: not a PNG or JPEG image"]
    assert error_lines(result.stderr) == [
        f"launch.py: error: 1 of 2 input files failed (listed above); 1 results written to {out}"
    ]
    assert Image.open(out / "small.png").size == (13, 9)
    assert snapshot(conv_run) == before


def test_a_failure_is_one_line_and_touches_nothing(conv_run, precious):
    before = snapshot(conv_run)
    result = launch(*CONV, f"--workdir={conv_run}", "--mode=export", f"--export_dir={precious}")
    assert result.returncode == 2, result.stderr[-2000:]
    assert error_lines(result.stderr) == [
        f"launch.py: error: --export_dir={precious} exists and holds something other than an"
        " export; pass a new or empty directory"
    ]
    assert "Traceback" not in result.stderr
    assert snapshot(conv_run) == before
    assert [p.name for p in precious.iterdir()] == ["photo.png"]


# The same refusals in-process (launch.py prints any of them as one line, as above).
@pytest.mark.parametrize(
    "mode, config_name, options, error, message",
    [
        ("eval", "dense_compress", {}, UsageError, "differs in: activity_l1, encoding_dim, model"),
        ("export", "conv_denoise", {"export_dir": "{precious}/photo.png"}, UsageError, "a file"),
        (
            "apply",
            "conv_denoise",
            {"inputs": ["{precious}"], "output_dir": "/proc/x"},
            UserError,
            "not writable",
        ),
    ],  # fmt: skip
    ids=["eval with another model", "export onto a file", "apply to an unwritable dir"],
)
def test_refusals_touch_nothing(mode, config_name, options, error, message, conv_run, precious):
    config = config_lib.load_config(config_name)
    config.batch_size = 64
    options = {
        flag: [p.format(precious=precious) for p in value] if isinstance(value, list)
        else value.format(precious=precious)
        for flag, value in options.items()
    }  # fmt: skip
    before = snapshot(conv_run)
    with pytest.raises(error, match=message):
        modes.run(mode, config, conv_run, strategy_name="mirrored", options=options)
    assert snapshot(conv_run) == before
    assert [p.name for p in precious.iterdir()] == ["photo.png"]


def test_a_flag_of_another_mode_is_refused():
    with pytest.raises(UsageError, match="--inputs is for --mode=apply, not --mode=eval"):
        modes.run("eval", None, "unused", strategy_name="mirrored", options={"inputs": ["x"]})
    with pytest.raises(UsageError, match="needs --inputs=PATH"):
        modes.run("apply", None, "unused", strategy_name="mirrored", options={"inputs": None,
                  "output_dir": None})  # fmt: skip


def test_modes_read_the_runs_config_when_no_config_is_given(conv_run, tmp_path):
    before = snapshot(conv_run)
    export_dir = tmp_path / "exported"
    result = launch(f"--workdir={conv_run}", "--mode=export", f"--export_dir={export_dir}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((export_dir / "export.json").read_text())["model"] == "conv"
    assert snapshot(conv_run) == before


@pytest.mark.skipif(not HAVE_REAL_DATA, reason="needs apt-get install dataset-fashion-mnist")
def test_eval_without_config_scores_like_eval_with_it(conv_run):
    results = []
    for config_args in (CONV, []):
        result = launch(*config_args, f"--workdir={conv_run}", "--mode=eval", "--eval_seed=5")
        assert result.returncode == 0, result.stderr[-2000:]
        results.append(json.loads((conv_run / "eval" / "noise0.5_seed5.json").read_text()))
    assert results[0] == results[1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode=eval"], "--mode=eval needs --workdir=DIR"),
        (["--mode=train"], "--config=NAME is required to train"),
        (["--mode=figures", "--workdir=/nonexistent/run"], "config.json does not exist"),
        (["--config=conv_denoise", "--config.epochs"], "expected a value"),
        (["--config=conv_denoise", "--config.epochs", "ten"], "--config.epochs=ten: expected int"),
    ],
)
def test_commands_without_a_usable_config_are_one_line(args, message):
    result = launch(*args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr


def test_space_separated_overrides_mean_the_same_as_equals():
    from autoenc.command_line import split_overrides

    argv = ["launch.py", "--config.epochs", "3", "--config.early_stopping.patience=5", "--mode=x"]
    assert split_overrides(argv) == (
        ["launch.py", "--mode=x"],
        {"epochs": "3", "early_stopping.patience": "5"},
    )


def test_help_names_the_modes_the_configs_and_examples():
    result = launch("--help")
    for text in ("Usage:", "Examples:", "--mode=eval", "Modes:", *config_lib.available_configs()):
        assert text in result.stdout, text


def test_final_weights_are_scored_and_exported_on_request(conv_run, tiny_data, tmp_path):
    from autoenc import evaluate

    config = config_lib.load_run_config(conv_run)
    metrics = json.loads((conv_run / "metrics.json").read_text())
    result = evaluate.evaluate_workdir(config, conv_run, data=tiny_data, weights="final")
    assert result["checkpoint"] == f"final/ckpt-{metrics['final']['epoch']}"
    for name, value in metrics["final"]["test"].items():
        assert result["test"][name] == pytest.approx(value, rel=1e-5), name
    assert evaluate.evaluation_path(conv_run, 0.5, 0, "final").name == "noise0.5_seed0_final.json"

    export_dir = tmp_path / "final-export"
    exported = launch(f"--workdir={conv_run}", "--mode=export", f"--export_dir={export_dir}",
                      "--weights=final")  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    checkpoint = json.loads((export_dir / "export.json").read_text())["checkpoint"]
    assert "/final/ckpt-" in checkpoint


def test_weights_is_refused_when_training(tmp_path):
    result = launch("--config=conv_denoise", f"--workdir={tmp_path}", "--weights=final")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--weights is for --mode=eval|export|apply, not --mode=train" in result.stderr
