"""The real training loop on tiny synthetic data in a temp dir: outputs, resume, refusals."""

import csv
import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import mirrored
from tensorboard.backend.event_processing import event_accumulator
from trained_runs import poison_latest_checkpoint

from autoenc import checkpoints, pipeline, train
from autoenc import workdir as workdir_lib
from autoenc.errors import NonFiniteLossError, UsageError, UserError
from configs import conv_denoise, dense_compress


def conv_config(**overrides):
    config = conv_denoise.get_config()
    config.batch_size = 64
    config.epochs = 3
    config.steps_per_loop = 3
    config.update(overrides)
    return config


def dense_config(**overrides):
    config = dense_compress.get_config()
    config.batch_size = 64
    config.epochs = 3
    config.update(overrides)
    return config


def read_history(workdir):
    with open(workdir / "history.csv") as f:
        return list(csv.DictReader(f))


def event_tags(path):
    accumulator = event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return accumulator


def test_conv_run_writes_every_output_and_learns(tmp_path, tiny_data):
    metrics = train.train_and_evaluate(
        conv_config(), tmp_path, data=tiny_data, strategy=mirrored(2)
    )

    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert json.loads((tmp_path / "config.json").read_text())["noise_factor"] == 0.5
    assert metrics["epochs_completed"] == 3 and not metrics["stopped_early"]
    assert metrics["replicas"] == 2
    history = read_history(tmp_path)
    assert [row["epoch"] for row in history] == ["1", "2", "3"]
    val_losses = [float(row["val_loss"]) for row in history]
    assert val_losses[-1] < val_losses[0]
    assert metrics["best_val_loss"] == pytest.approx(min(val_losses))
    assert metrics["best_epoch"] == 1 + int(np.argmin(val_losses))
    assert set(metrics["test"]) == {"bce", "mse", "psnr", "ssim"}
    assert metrics["test"]["psnr"] > metrics["noisy_input"]["psnr"]
    assert (tmp_path / "best" / "checkpoint").exists()
    assert (tmp_path / "checkpoints" / "checkpoint").exists()

    validation = event_tags(tmp_path / "validation")
    assert {"epoch_loss", "epoch_psnr", "epoch_ssim", "reconstructions"} <= set(
        validation.Tags()["tensors"]
    )
    assert [e.step for e in validation.Tensors("epoch_loss")] == [1, 2, 3]
    grid = validation.Tensors("reconstructions")[-1].tensor_proto
    assert grid.tensor_shape.dim[0].size == 3  # width, height, PNG (one image)
    train_events = event_tags(tmp_path / "train")
    assert {"epoch_loss", "epoch_learning_rate"} <= set(train_events.Tags()["tensors"])


def test_resumed_run_equals_uninterrupted_run(tmp_path, tiny_data):
    whole = train.train_and_evaluate(
        conv_config(epochs=4), tmp_path / "whole", data=tiny_data, strategy=mirrored(2)
    )
    # Two epochs, then the same command with more epochs picks up from the checkpoint.
    part = tmp_path / "part"
    train.train_and_evaluate(conv_config(epochs=2), part, data=tiny_data, strategy=mirrored(2))
    resumed = train.train_and_evaluate(
        conv_config(epochs=4), part, data=tiny_data, strategy=mirrored(2)
    )
    assert resumed == whole
    drop_time = lambda rows: [(r["epoch"], r["loss"], r["val_loss"]) for r in rows]  # noqa: E731
    assert drop_time(read_history(part)) == drop_time(read_history(tmp_path / "whole"))


def test_mid_epoch_checkpoints_resume_exactly(tmp_path, tiny_data):
    config = dense_config(checkpoint_every_steps=3, epochs=2)
    whole = train.train_and_evaluate(config, tmp_path / "whole", data=tiny_data)
    # Simulate a crash at step 6 of epoch 1 (8 steps/epoch): roll the checkpoint pointer back
    # to the mid-epoch checkpoint and drop everything written after it.
    crashed = tmp_path / "crashed"
    first = dense_config(checkpoint_every_steps=3, epochs=1)
    train.train_and_evaluate(first, crashed, data=tiny_data)
    checkpoints = crashed / "checkpoints"
    assert (checkpoints / "ckpt-6.index").exists() and (checkpoints / "ckpt-8.index").exists()
    for path in checkpoints.glob("ckpt-8.*"):
        path.unlink()
    (checkpoints / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-6"\nall_model_checkpoint_paths: "ckpt-6"\n'
    )
    (crashed / "metrics.json").unlink()
    resumed = train.train_and_evaluate(config, crashed, data=tiny_data)
    assert resumed == whole


def test_finished_run_is_not_retrained(tmp_path, tiny_data):
    first = train.train_and_evaluate(dense_config(epochs=1), tmp_path, data=tiny_data)
    before = (tmp_path / "history.csv").stat().st_mtime_ns
    again = train.train_and_evaluate(dense_config(epochs=1), tmp_path, data=tiny_data)
    assert again == first
    assert (tmp_path / "history.csv").stat().st_mtime_ns == before


def test_workdir_with_another_config_is_refused(tmp_path, tiny_data):
    train.train_and_evaluate(dense_config(epochs=1), tmp_path, data=tiny_data)
    metrics_before = (tmp_path / "metrics.json").read_bytes()
    with pytest.raises(UsageError, match="differs in: batch_size, seed"):
        train.train_and_evaluate(dense_config(batch_size=32, seed=5), tmp_path, data=tiny_data)
    assert (tmp_path / "metrics.json").read_bytes() == metrics_before


def test_busy_workdir_is_refused(tmp_path, tiny_data):
    with workdir_lib.WorkdirLock(tmp_path):
        with pytest.raises(UserError, match="another run .* is using workdir"):
            train.train_and_evaluate(dense_config(epochs=1), tmp_path, data=tiny_data)
    # Released: the same directory now works.
    train.train_and_evaluate(dense_config(epochs=1), tmp_path, data=tiny_data)


def test_early_stopping_ends_the_run(tmp_path, tiny_data):
    config = dense_config(epochs=10)
    config.early_stopping.min_delta = 10.0  # no epoch can improve by this much
    config.early_stopping.patience = 1
    metrics = train.train_and_evaluate(config, tmp_path, data=tiny_data)
    # Keras: epoch 0 sets best; epoch 1 waits 1 >= patience (and epoch > 0) -> stop.
    assert metrics["stopped_early"] and metrics["epochs_completed"] == 2
    assert len(read_history(tmp_path)) == 2


def test_non_finite_loss_names_epoch_and_step_and_keeps_best(tmp_path, tiny_data):
    bad = dense_config(epochs=1, optimizer="adam", learning_rate=1e38)
    with pytest.raises(NonFiniteLossError, match=r"at epoch 1, step \d+"):
        train.train_and_evaluate(bad, tmp_path / "bad", data=tiny_data)

    # A run that diverges after its best epoch, in that run's own workdir.
    config = dense_config(epochs=1)
    train.train_and_evaluate(config, tmp_path / "run", data=tiny_data)
    poison_latest_checkpoint(config, tmp_path / "run")
    best_dir = tmp_path / "run" / "best"
    best_files = {p.name: p.read_bytes() for p in best_dir.iterdir()}
    assert any(name.endswith(".index") for name in best_files)  # there is a best to lose
    with pytest.raises(NonFiniteLossError, match=rf"at epoch 2, step 9;.* {best_dir} is intact"):
        train.train_and_evaluate(dense_config(epochs=2), tmp_path / "run", data=tiny_data)
    assert {p.name: p.read_bytes() for p in best_dir.iterdir()} == best_files
    restored = checkpoints.load_best_model(config, tmp_path / "run").autoencoder
    assert all(np.isfinite(weight).all() for weight in restored.get_weights())


def test_the_loop_draws_the_configs_per_image_noise_levels(tmp_path, tiny_data, monkeypatch):
    made = []
    original = pipeline.TrainBatches

    def recording(*args, **kwargs):
        made.append(original(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(pipeline, "TrainBatches", recording)
    config = conv_config(epochs=1, noise_factor_max=0.8)
    train.train_and_evaluate(config, tmp_path, data=tiny_data, strategy=mirrored(1))
    assert [batches.noise_factor_max for batches in made] == [0.8]


def test_cosine_schedule_decays_the_learning_rate_to_zero_over_the_epochs(tmp_path, tiny_data):
    config = dense_config(epochs=2, optimizer="adam", lr_schedule="cosine")
    train.train_and_evaluate(config, tmp_path, data=tiny_data, strategy=mirrored(1))
    accumulator = event_tags(tmp_path / "train")
    rates = [
        float(tf.make_ndarray(event.tensor_proto))
        for event in accumulator.Tensors("epoch_learning_rate")
    ]
    # After epoch e of 2 the rate is 0.001 * (1 + cos(pi * e / 2)) / 2: half, then zero.
    np.testing.assert_allclose(rates, [0.0005, 0.0], atol=1e-7)


def test_unknown_learning_rate_schedule_is_refused(tmp_path):
    config = dense_config(lr_schedule="linear")
    with pytest.raises(UsageError, match="lr_schedule=linear: must be one of constant, cosine"):
        train.train_and_evaluate(config, tmp_path / "run", data=None)
