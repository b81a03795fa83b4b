"""TensorBoard summaries from the host loop (inside `strategy.run` tf.summary has no writer),
laid out as Keras' TensorBoard callback lays them out: `WORKDIR/train` and `WORKDIR/validation`
with `epoch_<name>` tags, plus `batch_loss`, the train step's graph, histograms and an image grid;
`write_hparams` writes the config and test metrics into `WORKDIR` for the HParams dashboard.
"""

import pathlib

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from autoenc import config as config_lib

TEST_METRICS = ("bce", "mse", "psnr", "ssim")
# Ends the names of `write_hparams`' event files (in place of ".v2"), so it replaces only its own.
HPARAMS_SUFFIX = ".hparams"


def image_grid(rows: list[np.ndarray]) -> np.ndarray:
    """Tiles equally long rows of 28x28 images, each (N, 28, 28[, 1]) in [0, 1], into one
    [1, H, W, 1] image for tf.summary."""
    tiles = [np.concatenate(list(np.reshape(row, (-1, 28, 28))), axis=1) for row in rows]
    return np.concatenate(tiles, axis=0)[None, :, :, None]


class Summaries:
    """The train/ and validation/ event files of one run."""

    def __init__(self, workdir: pathlib.Path, config):
        self._config = config
        self._graph_written = False
        self._writers = {
            split: tf.summary.create_file_writer(str(pathlib.Path(workdir) / split))
            for split in ("train", "validation")
        }

    def train_losses(self, first_step: int, losses: np.ndarray) -> None:
        """Writes `batch_loss` at the steps of one `train_steps` call that are multiples of
        `config.loss_every_steps` (0: never); `losses[i]` is the loss of step first_step+1+i,
        counted over the whole run so the curve continues across epochs and resumes."""
        every = self._config.loss_every_steps
        if every < 1:
            return
        first_due = (first_step // every + 1) * every
        with self._writers["train"].as_default():
            for step in range(first_due, first_step + len(losses) + 1, every):
                tf.summary.scalar("batch_loss", float(losses[step - first_step - 1]), step=step)

    def train_graph(self, train_steps: tf.types.experimental.PolymorphicFunction, *args) -> None:
        """Writes the graph of `train_steps` once per process; called just before the first
        `train_steps(*args)`, whose concrete function it traces, so nothing is traced twice."""
        if not self._graph_written:
            graph = train_steps.get_concrete_function(*args).graph
            with self._writers["train"].as_default():
                tf.summary.graph(graph)
            self._graph_written = True

    def epoch_end(self, epoch: int, train: dict, validation: dict, grid_rows, model=None) -> None:
        """Writes everything due once per epoch, at step `epoch` (1-based), and flushes.

        Args:
            epoch: epochs completed.
            train: scalars for the train run (loss, seconds, images_per_sec, learning_rate).
            validation: scalars for the validation run (loss, bce, mse, psnr, ssim).
            grid_rows: (clean, model input, model output) for a fixed set of validation images.
            model: the model whose weights `config.histograms` asks to histogram.
        """
        for split, values in (("train", train), ("validation", validation)):
            with self._writers[split].as_default(step=epoch):
                for name, value in values.items():
                    tf.summary.scalar(f"epoch_{name}", value)
        every = self._config.image_every_epochs
        if every and epoch % every == 0:
            clean, noisy, output = (np.asarray(rows) for rows in grid_rows)
            denoising = self._config.noise_factor > 0
            grid = image_grid([clean, noisy, output] if denoising else [clean, output])
            caption = "clean | noisy | denoised" if denoising else "original | reconstructed"
            with self._writers["validation"].as_default(step=epoch):
                tf.summary.image("reconstructions", grid, description=caption)
        if self._config.histograms and model is not None:
            with self._writers["train"].as_default(step=epoch):  # Keras' tags (histogram_freq=1)
                for weight in model.weights:
                    tf.summary.histogram(f"{weight.path.replace(':', '_')}/histogram", weight)
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def hparams_of(config) -> dict[str, bool | int | float | str]:
    """The config's scalar fields, dotted for nested ones, as HParams values. Fields that are None
    (e.g. `learning_rate`: the optimizer's default) are left out, since a "None" string would
    turn the whole column into strings for every run."""
    values = {}
    for name in config_lib.field_names(config):
        value = config_lib.config_value(config, name)
        if isinstance(value, bool | int | float | str):
            values[name] = value
    return values


def write_hparams(workdir: pathlib.Path, config, metrics: dict | None = None) -> None:
    """Writes the config as hparams, and the test metrics if given, into `WORKDIR` itself.

    Called when a run starts, so that a running or stopped run is already a row of the HParams
    dashboard, and when it ends, with `test_<metric>` and `best_val_loss`. Each call replaces the
    previous call's file and leaves other event files in `WORKDIR` alone. No experiment summary
    (`hp.hparams_config`) is written: TensorBoard would take the first it finds as the hparams of
    all runs (hiding `encoding_dim` when a conv run came first), where without one it takes the
    union.

    Args:
        workdir: the run's work directory.
        config: the run's config.
        metrics: metrics.json's contents (`test`, `best_val_loss`, `epochs_completed`), or None.
    """
    workdir = pathlib.Path(workdir)
    previous = list(workdir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"))
    writer = tf.summary.create_file_writer(str(workdir), filename_suffix=HPARAMS_SUFFIX)
    with writer.as_default(step=metrics["epochs_completed"] if metrics else 0):
        # The path as trial id keeps equal configs in different workdirs apart (the default, a
        # hash of the hparams, would merge them into one dashboard row).
        hp.hparams(hparams_of(config), trial_id=str(workdir.resolve()))
        if metrics:
            for name in TEST_METRICS:
                tf.summary.scalar(f"test_{name}", metrics["test"][name])
            tf.summary.scalar("best_val_loss", metrics["best_val_loss"])
    writer.close()
    for path in previous:  # only after the new file is complete: never a moment without one
        path.unlink(missing_ok=True)
