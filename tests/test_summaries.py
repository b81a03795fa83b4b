"""What a run leaves for TensorBoard and the book's figures, read back as a user's tools read them.

Two short real runs on tiny synthetic data: the conv denoiser (1 replica, loss every 5 steps,
histograms on) and the 768-wide dense model (2 replicas, defaults). Event files are read with
TensorBoard's own `EventAccumulator`; PNGs with matplotlib.
"""

import csv
import pathlib
import shutil
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import tensorflow as tf
from conftest import mirrored
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from autoenc import models, plots, summaries, train
from autoenc.errors import UsageError, UserError
from configs import conv_denoise, dense_compress_768

ROOT = pathlib.Path(__file__).resolve().parent.parent
EPOCH_SCALARS = {
    "train": {"epoch_loss", "epoch_seconds", "epoch_images_per_sec", "epoch_learning_rate"},
    "validation": {"epoch_loss", "epoch_bce", "epoch_mse", "epoch_psnr", "epoch_ssim"},
}


def conv_config():
    config = conv_denoise.get_config()
    config.update(batch_size=64, epochs=2, steps_per_loop=3, loss_every_steps=5, histograms=True)
    return config


def dense_config():
    config = dense_compress_768.get_config()
    config.update(batch_size=64, epochs=2)
    return config


@pytest.fixture(scope="module")
def conv_run(tmp_path_factory, tiny_data):
    """512 images / batch 64 = 8 steps an epoch, 16 in all, in calls of 3, 3, 2 per epoch."""
    workdir = tmp_path_factory.mktemp("conv")
    metrics = train.train_and_evaluate(conv_config(), workdir, data=tiny_data, strategy=mirrored(1))
    return workdir, metrics


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory, tiny_data):
    workdir = tmp_path_factory.mktemp("dense")
    metrics = train.train_and_evaluate(
        dense_config(), workdir, data=tiny_data, strategy=mirrored(2)
    )
    return workdir, metrics


def events(path):
    accumulator = event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return accumulator


def steps_and_values(accumulator, tag):
    found = accumulator.Tensors(tag)
    return [e.step for e in found], [tf.make_ndarray(e.tensor_proto) for e in found]


def history(workdir):
    with open(workdir / "history.csv") as f:
        return list(csv.DictReader(f))


def test_train_run_has_scalars_step_losses_histograms_and_the_step_graph(conv_run):
    workdir, _ = conv_run
    run = events(workdir / "train")
    weights = {f"{w.path}/histogram" for w in models.build(conv_config()).autoencoder.weights}
    assert len(weights) == 10  # kernel and bias of 5 conv layers
    assert set(run.Tags()["tensors"]) == EPOCH_SCALARS["train"] | {"batch_loss"} | weights

    for tag in EPOCH_SCALARS["train"]:
        steps, values = steps_and_values(run, tag)
        assert steps == [1, 2] and all(np.isfinite(values)), tag
    # Every 5th optimizer step, across the boundaries of the 3-step calls and of the epochs.
    steps, values = steps_and_values(run, "batch_loss")
    assert steps == [5, 10, 15]
    assert all(np.isfinite(values)) and all(0 < v < 1 for v in values)
    for tag in weights:
        steps, values = steps_and_values(run, tag)
        assert steps == [1, 2], tag
        assert values[0].ndim == 2 and values[0].shape[1] == 3  # (left, right, count) buckets
        assert np.isfinite(values[0]).all()

    # The traced train step: a loop whose body reads the iterator and runs forward and backward.
    graph = run.Graph()
    assert "While" in {node.op for node in graph.node}
    body_ops = {node.op for f in graph.library.function for node in f.node_def}
    assert {"IteratorGetNext", "Conv2D", "Conv2DBackpropFilter", "Sigmoid"} <= body_ops


def test_validation_run_has_metrics_per_epoch_and_the_image_grid(conv_run):
    workdir, _ = conv_run
    run = events(workdir / "validation")
    assert set(run.Tags()["tensors"]) == EPOCH_SCALARS["validation"] | {"reconstructions"}
    for tag in EPOCH_SCALARS["validation"]:
        steps, values = steps_and_values(run, tag)
        assert steps == [1, 2] and all(np.isfinite(values)), tag
    _, val_losses = steps_and_values(run, "epoch_loss")
    expected = [float(row["val_loss"]) for row in history(workdir)]
    np.testing.assert_allclose(val_losses, expected, rtol=1e-6)

    grids = run.Tensors("reconstructions")
    assert [e.step for e in grids] == [1, 2]
    width, height, png = grids[-1].tensor_proto.string_val
    image = tf.io.decode_png(png).numpy()
    assert (int(width), int(height)) == (8 * 28, 3 * 28)  # clean | noisy | denoised rows
    assert image.shape == (3 * 28, 8 * 28, 1) and image.std() > 0


def test_hparams_session_holds_the_config_and_test_metrics(conv_run):
    workdir, metrics = conv_run
    run = events(workdir)  # the workdir itself, not train/ or validation/
    content = run.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    session = hparams_metadata.parse_session_start_info_plugin_data(content)
    hparams = {name: getattr(v, v.WhichOneof("kind")) for name, v in session.hparams.items()}
    assert hparams == summaries.hparams_of(conv_config())
    assert hparams["model"] == "conv" and hparams["noise_factor"] == 0.5
    assert hparams["batch_size"] == 64 and hparams["histograms"] is True
    assert hparams["early_stopping.patience"] == 0
    assert "learning_rate" not in hparams  # None: the optimizer's default

    for name in summaries.TEST_METRICS:
        steps, values = steps_and_values(run, f"test_{name}")
        assert steps == [2]
        assert values[0] == pytest.approx(metrics["test"][name], rel=1e-6), name
    _, values = steps_and_values(run, "best_val_loss")
    assert values[0] == pytest.approx(metrics["best_val_loss"], rel=1e-6)


def test_rewriting_hparams_keeps_one_session(conv_run, tmp_path):
    workdir, metrics = conv_run
    config = conv_config()
    config.epochs = 5  # as when a finished run is extended
    summaries.write_hparams(tmp_path, conv_config(), metrics)
    summaries.write_hparams(tmp_path, config, {**metrics, "epochs_completed": 5})
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1
    run = events(tmp_path)
    content = run.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    assert hparams_metadata.parse_session_start_info_plugin_data(content).hparams[
        "epochs"
    ].number_value == pytest.approx(5)
    assert [e.step for e in run.Tensors("test_psnr")] == [5]


def test_defaults_write_no_histograms_and_loss_only_every_100_steps(dense_run):
    workdir, _ = dense_run
    assert set(events(workdir / "train").Tags()["tensors"]) == EPOCH_SCALARS["train"]
    grid = events(workdir / "validation").Tensors("reconstructions")[-1].tensor_proto
    assert [int(v) for v in grid.string_val[:2]] == [8 * 28, 2 * 28]  # original | reconstructed


def png_pixels(path):
    return matplotlib.image.imread(path)


@pytest.mark.parametrize(
    "run, expected",
    [
        (
            "conv_run",
            {"noisy_inputs.png": 1, "denoised_outputs.png": 1, "clean_noisy_denoised.png": 3},
        ),
        ("dense_run", {"reconstructions_dim768.png": 2}),  # Fig 5-3: the file names the code
    ],
)
def test_figures_exist_have_their_size_and_are_not_blank(run, expected, request):
    workdir, _ = request.getfixturevalue(run)
    figures = workdir / "figures"
    code_figures = {"code_map.png", "code_walks.png"} if run == "dense_run" else set()
    assert {p.name for p in figures.iterdir()} == set(expected) | {"loss_curves.png"} | code_figures
    for name, rows in expected.items():
        pixels = png_pixels(figures / name)
        assert pixels.shape[:2] == (100 * rows + 40, 1200), name  # 12 tiles of 100 px + title
        tiles = pixels[40:, :, :3]
        assert tiles.std() > 0, name
        # Each of the 12 tiles holds an image, not the white background.
        for i in range(12):
            assert tiles[:, 100 * i + 10 : 100 * i + 90].mean() < 0.9, (name, i)
    curves = png_pixels(figures / "loss_curves.png")
    assert curves.shape[:2] == (400, 640) and curves.std() > 0


@pytest.mark.parametrize("run, config", [("conv_run", conv_config), ("dense_run", dense_config)])
def test_figures_from_the_workdir_match_the_end_of_training_ones(run, config, request, tiny_data):
    workdir, _ = request.getfixturevalue(run)
    before = {p.name: png_pixels(p) for p in (workdir / "figures").iterdir()}
    shutil.rmtree(workdir / "figures")
    # The dense run trained on 2 replicas and drew from the distributed dataset; redrawing
    # reads the plain one, so this also checks the replica parts were put back in order.
    paths = plots.figures_from_workdir(config(), workdir, data=tiny_data)
    # The code figures are --mode=embeddings' to redraw (with the Projector files).
    assert {p.name for p in paths} == set(before) - {"code_map.png", "code_walks.png"}
    for path in paths:
        np.testing.assert_array_equal(png_pixels(path), before[path.name], err_msg=path.name)


def test_figures_mode_refuses_a_missing_checkpoint_or_another_config(conv_run, tmp_path):
    workdir, _ = conv_run
    with pytest.raises(UserError, match="no best checkpoint in .*best: train first"):
        plots.figures_from_workdir(conv_config(), tmp_path)
    other = conv_config()
    other.noise_factor = 0.3
    with pytest.raises(UsageError, match=r"differs in: noise_factor\)"):
        plots.figures_from_workdir(other, workdir)


def test_launch_figures_mode_without_a_run_is_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "launch.py", "--config=conv_denoise", f"--workdir={tmp_path}"]
        + ["--mode=figures"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"launch.py: error: no best checkpoint in {tmp_path / 'best'}: train first"
        " (--mode=train, the default)"
    ]
    assert not (tmp_path / "figures").exists()
