"""TensorBoard summaries, written from the host loop: one writer per split, plus the run's hparams.

The layout matches Keras' TensorBoard callback (`WORKDIR/train`, `WORKDIR/validation`), so
`tensorboard --logdir WORKDIR` overlays training and validation curves under the same tags, and a
parent directory of several workdirs shows them side by side. The train run gets the per-epoch
scalars, the loss every `loss_every_steps` steps, the graph of the traced train step and, if
`config.histograms`, weight histograms; the validation run gets the per-epoch metrics and an image
grid of fixed validation images. `write_hparams` puts the config (when a run starts) and the test
metrics (when it ends) into `WORKDIR` itself (the run TensorBoard names after the workdir) for the
HParams dashboard. Nothing here runs inside `strategy.run`, where tf.summary has no default writer
or step.
"""

import pathlib

import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from autoenc import config as config_lib

TEST_METRICS = ("bce", "mse", "psnr", "ssim")
# Ends the names of the event files `write_hparams` writes, so it replaces only its own files.
HPARAMS_SUFFIX = ".hparams"  # in place of the usual ".v2", after the writer's pid and counter


def image_grid(rows: list[np.ndarray]) -> np.ndarray:
    """Tiles equally long rows of 28x28 images into one [1, H, W, 1] image for tf.summary.

    Args:
        rows: e.g. [clean, noisy, reconstruction], each shape (N, 28, 28[, 1]) in [0, 1].
    """
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

    def scalars(self, split: str, values: dict[str, float], step: int) -> None:
        """Writes each value as `epoch_<name>` (Keras' tag names) at `step` (the epoch)."""
        with self._writers[split].as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"epoch_{name}", value)

    def image(self, name: str, grid: np.ndarray, step: int, description: str = "") -> None:
        """Writes one image (from `image_grid`) to the validation run."""
        with self._writers["validation"].as_default(step=step):
            tf.summary.image(name, grid, step=step, description=description)

    def train_losses(self, first_step: int, losses: np.ndarray) -> None:
        """Writes `batch_loss` at every step of one `train_steps` call that is a multiple of N.

        N is `config.loss_every_steps` (0 = never). Steps are optimizer steps counted over the
        whole run, so the curve continues across epochs and resumed runs.

        Args:
            first_step: optimizer steps done before the call; `losses[i]` is step first_step+1+i.
            losses: the per-step global-batch losses the call returned.
        """
        every = self._config.loss_every_steps
        if every < 1:
            return
        last_step = first_step + len(losses)
        first_due = (first_step // every + 1) * every
        with self._writers["train"].as_default():
            for step in range(first_due, last_step + 1, every):
                tf.summary.scalar("batch_loss", float(losses[step - first_step - 1]), step=step)

    def train_graph(self, train_steps: tf.types.experimental.PolymorphicFunction, *args) -> None:
        """Writes the graph of `train_steps` to the train run (the Graphs tab), once per process.

        Call it just before the first `train_steps(*args)`. `get_concrete_function` with the
        arguments of that call traces exactly the graph the call then reuses, so nothing is
        traced twice; `tf.summary.trace_on` would have to precede the first trace to capture
        anything, and only records the graphs of calls made while it is on.

        Args:
            train_steps: the `tf.function` of a `steps.TrainSteps` (its `function`).
            *args: the arguments of its first call (iterator, number of steps).
        """
        if self._graph_written:
            return
        graph = train_steps.get_concrete_function(*args).graph
        with self._writers["train"].as_default():
            tf.summary.graph(graph)
        self._graph_written = True

    def histograms(self, model, epoch: int) -> None:
        """Writes a histogram of every weight to the train run, tagged `<layer>/<name>/histogram`.

        The tags are those of Keras' TensorBoard callback with `histogram_freq=1`.
        """
        with self._writers["train"].as_default(step=epoch):
            for weight in model.weights:
                tf.summary.histogram(f"{weight.path.replace(':', '_')}/histogram", weight)

    def epoch_end(self, epoch: int, train: dict, validation: dict, grid_rows, model=None) -> None:
        """Everything written once per epoch (`epoch` is 1-based, the step of these summaries).

        Args:
            epoch: epochs completed.
            train: scalars for the train run (loss, seconds, images_per_sec, learning_rate).
            validation: scalars for the validation run (loss, bce, mse, psnr, ssim).
            grid_rows: (clean, model input, model output) for a fixed set of validation images.
            model: the model whose weights `config.histograms` asks to histogram.
        """
        self.scalars("train", train, epoch)
        self.scalars("validation", validation, epoch)
        every = self._config.image_every_epochs
        if every and epoch % every == 0:
            clean, noisy, output = (np.asarray(rows) for rows in grid_rows)
            denoising = self._config.noise_factor > 0
            rows = [clean, noisy, output] if denoising else [clean, output]
            caption = "clean | noisy | denoised" if denoising else "original | reconstructed"
            self.image("reconstructions", image_grid(rows), epoch, caption)
        if self._config.histograms and model is not None:
            self.histograms(model, epoch)
        self.flush()

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()


def hparams_of(config) -> dict[str, bool | int | float | str]:
    """The config's scalar fields, dotted for nested ones, as HParams plugin values.

    Fields that are None (`learning_rate` meaning the optimizer's default,
    `early_stopping.baseline`) are left out: an hparam must be a bool, number or string, and
    a "None" string would turn the whole column into strings for every run.
    """
    values = {}
    for name in config_lib.field_names(config):
        value = config_lib.config_value(config, name)
        if isinstance(value, bool | int | float | str):
            values[name] = value
    return values


def write_hparams(workdir: pathlib.Path, config, metrics: dict | None = None) -> None:
    """Writes the config as hparams, and the test metrics if given, into `WORKDIR` itself.

    Called when a run starts (no metrics yet: a running, stopped or preempted run is already a
    row of the HParams dashboard, its metric columns filled from the per-epoch scalars) and
    again when it ends (with metrics.json's test metrics). The dashboard makes every run
    holding hparams one session (a row) and takes the last value of each scalar tag in it, and
    in the runs under it, as that session's metrics: `test_bce`, `test_mse`, `test_psnr`,
    `test_ssim` and `best_val_loss` here, next to `train/epoch_loss` and the other per-epoch
    scalars. No experiment summary (`hp.hparams_config`) is written: TensorBoard would take the
    first it finds as the list of hparams for all runs, hiding `encoding_dim` when a conv run
    came first; without one it takes the union over runs. Each call replaces the file of the
    previous one, so the row always shows the latest config and results; other event files in
    `WORKDIR` are left alone (their names do not end in `HPARAMS_SUFFIX`).

    Args:
        workdir: the run's work directory.
        config: the run's config.
        metrics: the contents of metrics.json (`test`, `best_val_loss`, `epochs_completed`), or
            None at the start of a run.
    """
    workdir = pathlib.Path(workdir)
    previous = list(workdir.glob(f"events.out.tfevents.*{HPARAMS_SUFFIX}"))
    writer = tf.summary.create_file_writer(str(workdir), filename_suffix=HPARAMS_SUFFIX)
    # The trial id groups sessions in the dashboard; the path keeps equal configs in different
    # workdirs apart (the default, a hash of the hparams, would merge them into one row).
    step = metrics["epochs_completed"] if metrics else 0
    with writer.as_default(step=step):
        hp.hparams(hparams_of(config), trial_id=str(workdir.resolve()))
        if metrics:
            for name in TEST_METRICS:
                tf.summary.scalar(f"test_{name}", metrics["test"][name])
            tf.summary.scalar("best_val_loss", metrics["best_val_loss"])
    writer.close()
    for path in previous:  # only after the new file is complete: never a moment without one
        path.unlink(missing_ok=True)
