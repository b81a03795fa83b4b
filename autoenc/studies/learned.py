"""The learned denoisers the denoising study scores: configs it trains itself, and runs trained
elsewhere (`launch.py`) that it scores as they are.

A config named on the command line is trained in `STUDY_WORKDIR/<name>` for the study's epochs
(or resumed, or reused when finished, as `launch.py` would); a workdir named on the command line
is read: its `config.json` says what model it holds, its best checkpoint is what gets scored.
Either way the model denoises the study's noisy test images, reshaped to its own input, and the
cache keys of its points carry a digest of its best checkpoint, so a run that improved since is
scored anew.
"""

import dataclasses
import pathlib
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf
from ml_collections import config_dict

from autoenc import checkpoints, models
from autoenc import config as config_lib
from autoenc import train as train_lib
from autoenc.errors import UsageError
from autoenc.studies import points as study_points

PREDICT_BATCH = 1000  # images per model call: bounds the activations' memory


@dataclasses.dataclass
class Denoiser:
    """One learned denoiser in a study.

    Attributes:
        label: its column in the tables and line in the figure: a config's name, or the
            workdir as given.
        config: the config it was (or will be) trained with.
        workdir: its run directory.
        trained_here: whether the study trains it (a config) or only reads it (a workdir).
    """

    label: str
    config: config_dict.ConfigDict
    workdir: pathlib.Path
    trained_here: bool

    def title(self) -> str:
        """The label and the noise it was trained on, e.g. "conv_denoise (trained at 0.5)", or
        "blind_denoise (trained at 0-0.8)" for a level drawn per image."""
        noise, most = self.config.noise_factor, self.config.noise_factor_max
        if not isinstance(noise, float):
            return self.label
        return f"{self.label} (trained at {f'0-{most:g}' if most else f'{noise:g}'})"


def from_config(name: str, study_root, epochs: int, overrides: dict | None = None) -> Denoiser:
    """The denoiser the study trains from config `name` (a name in configs/ or a .py path).

    Args:
        name: the config.
        study_root: the study's workdir; the model trains in `STUDY_ROOT/<config name>`.
        epochs: training epochs; 0 = the config's own.
        overrides: other `{field: text}` overrides (tests).

    Raises:
        UsageError: an unknown config or a bad override.
    """
    config = config_lib.load_config(name)
    if epochs:
        overrides = {"epochs": str(epochs), **(overrides or {})}
    config_lib.apply_overrides(config, overrides or {})
    config_lib.validate(config)
    label = pathlib.Path(name).stem
    return Denoiser(label, config, pathlib.Path(study_root) / label, trained_here=True)


def from_workdir(path) -> Denoiser:
    """The denoiser of a run trained elsewhere, from its `config.json`.

    Raises:
        UserError: the directory holds no run, or no best checkpoint yet.
    """
    workdir = pathlib.Path(path)
    if not (workdir / "config.json").is_file():
        raise UsageError(f"--workdirs: {path} holds no run (no config.json)")
    config = config_lib.load_run_config(workdir)
    checkpoints.best_checkpoint_path(workdir)  # fail now rather than after hours of scoring
    return Denoiser(str(path), config, workdir, trained_here=False)


def train(
    denoiser: Denoiser,
    data,
    make_strategy: Callable[[], tf.distribute.Strategy] | None = None,
) -> dict:
    """Trains a study's own denoiser to its epochs (resuming, or returning a finished run).

    Returns:
        The test point of its metrics.json, with its epochs and best epoch.
    """
    metrics = train_lib.train_and_evaluate(
        denoiser.config,
        denoiser.workdir,
        data=data,
        strategy=make_strategy and make_strategy(),
    )
    return dict(metrics["test"], epochs=metrics["epochs_completed"], best=metrics["best_epoch"])


def identity(denoiser: Denoiser) -> str:
    """The part of a point's cache key that names this model: its config's name and settings
    for a study's own model, its workdir for another run; and the best weights' digest."""
    name = (
        study_points.config_key(denoiser.label, denoiser.config)
        if denoiser.trained_here
        else str(denoiser.workdir.resolve())
    )
    return f"{name}/{study_points.checkpoint_fingerprint(denoiser.workdir)}"


def load(denoiser: Denoiser) -> keras.Model:
    """The autoencoder with the run's best weights."""
    with checkpoints.open_trained_run(denoiser.config, denoiser.workdir) as (nets, _):
        return nets.autoencoder


def denoise(model: keras.Model, config, noisy: np.ndarray) -> np.ndarray:
    """The model's outputs for noisy images (N, 28, 28, 1), in that shape.

    Each batch is reshaped to the model's own input (flat for a dense model), so every model
    sees the very same noisy pixels.
    """
    shape = models.input_shape(config)
    outputs = [
        np.asarray(model(noisy[i : i + PREDICT_BATCH].reshape(-1, *shape), training=False))
        for i in range(0, len(noisy), PREDICT_BATCH)
    ]
    return np.concatenate(outputs).reshape(noisy.shape)
