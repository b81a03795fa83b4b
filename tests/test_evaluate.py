"""`evaluate_workdir`: scoring a trained run's best checkpoint without training."""

import json

import numpy as np
import pytest
from trained_runs import tiny_config, trained_run

from autoenc import evaluate
from autoenc.errors import UsageError, UserError


def snapshot(workdir):
    return {
        path.relative_to(workdir): path.read_bytes()
        for path in workdir.rglob("*")
        if path.is_file() and path.name != ".lock"
    }


def assert_same_quality(actual: dict, expected: dict):
    assert set(actual) == set(expected) == {"bce", "mse", "psnr", "ssim"}
    for name in expected:
        np.testing.assert_allclose(actual[name], expected[name], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_own_noise_and_seed_reproduce_metrics_json(kind, tiny_data, tmp_path_factory):
    config, workdir, _ = trained_run(kind, tiny_data, tmp_path_factory)
    before = snapshot(workdir)
    result = evaluate.evaluate_workdir(config, workdir, data=tiny_data)
    metrics = json.loads((workdir / "metrics.json").read_text())
    assert_same_quality(result["test"], metrics["test"])
    if kind == "conv":
        assert_same_quality(result["noisy_input"], metrics["noisy_input"])
    else:
        assert "noisy_input" not in result
    assert result["noise_factor"] == config.noise_factor and result["seed"] == config.seed
    assert result["checkpoint"] == f"best/ckpt-{metrics['best_epoch']}"
    assert snapshot(workdir) == before  # it only reads


def test_other_noise_levels_and_seeds(tiny_data, tmp_path_factory):
    config, workdir, metrics = trained_run("conv", tiny_data, tmp_path_factory)

    def evaluate_at(noise_factor, seed=None):
        return evaluate.evaluate_workdir(
            config, workdir, noise_factor=noise_factor, seed=seed, data=tiny_data
        )

    clean = evaluate_at(0.0)
    assert "noisy_input" not in clean and clean["noise_factor"] == 0.0
    heavy = evaluate_at(0.9)
    assert metrics["noisy_input"]["psnr"] > heavy["noisy_input"]["psnr"] + 1
    assert clean["test"] != heavy["test"]  # the model sees the chosen noise

    other_seed = evaluate_at(None, seed=7)
    assert other_seed["seed"] == 7 and other_seed["noise_factor"] == config.noise_factor
    # Other noise of the same level: different numbers, but close (256 images).
    assert other_seed["noisy_input"]["mse"] != metrics["noisy_input"]["mse"]
    np.testing.assert_allclose(
        other_seed["noisy_input"]["psnr"], metrics["noisy_input"]["psnr"], rtol=0.02
    )


def test_refusals_touch_nothing(tiny_data, tmp_path_factory, tmp_path):
    config, workdir, _ = trained_run("conv", tiny_data, tmp_path_factory)
    before = snapshot(workdir)

    with pytest.raises(UsageError, match=r"differs in: noise_factor, seed\).*--eval_seed"):
        evaluate.evaluate_workdir(_with(config, noise_factor=0.3, seed=4), workdir, data=tiny_data)
    with pytest.raises(
        UsageError, match="differs in: activity_l1, encoding_dim, model, noise_factor"
    ):
        evaluate.evaluate_workdir(tiny_config("dense"), workdir, data=tiny_data)
    with pytest.raises(UsageError, match="--noise_factor=-0.1: must be 0 or more"):
        evaluate.evaluate_workdir(config, workdir, noise_factor=-0.1, data=tiny_data)
    for noise_factor in (float("nan"), float("inf")):
        with pytest.raises(UsageError, match="must be a finite number"):
            evaluate.evaluate_workdir(config, workdir, noise_factor=noise_factor, data=tiny_data)
    with pytest.raises(UsageError, match="--eval_seed=-1: must be 0 or more"):
        evaluate.evaluate_workdir(config, workdir, seed=-1, data=tiny_data)
    with pytest.raises(UsageError, match="--eval_seed=18446744073709551616: must be at most"):
        evaluate.evaluate_workdir(config, workdir, seed=2**64, data=tiny_data)
    with pytest.raises(UserError, match="no best checkpoint"):
        evaluate.evaluate_workdir(config, tmp_path, data=tiny_data)
    assert snapshot(workdir) == before
    assert list(tmp_path.iterdir()) == []


def _with(config, **fields):
    changed = config.copy_and_resolve_references()
    changed.update(fields)
    return changed


def test_evaluation_path_is_apart_from_metrics_json(tmp_path):
    assert evaluate.evaluation_path(tmp_path, 0.3, 0) == tmp_path / "eval" / "noise0.3_seed0.json"
    assert evaluate.evaluation_path(tmp_path, 0.0, 12).name == "noise0_seed12.json"
