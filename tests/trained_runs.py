"""Tiny trained runs shared by the eval, export and apply tests, trained once per session.

Each is a real `train.train_and_evaluate` run (one epoch on 256 of the synthetic training
images, one replica so it is quick); the tests only read them, or copy them before changing
anything.
"""

import shutil

import tensorflow as tf
from conftest import mirrored

from autoenc import run_state, train
from configs import conv_denoise, dense_compress

_runs: dict[str, tuple] = {}


def tiny_config(kind: str):
    """The test config of a 'dense' or 'conv' run (the book's recipe, shrunk)."""
    config = (dense_compress if kind == "dense" else conv_denoise).get_config()
    config.batch_size = 64
    config.epochs = 1
    config.train_examples = 256
    config.image_every_epochs = 0
    config.loss_every_steps = 0
    return config


def trained_run(kind: str, data, tmp_path_factory) -> tuple:
    """(config, workdir, metrics) of the session's tiny `kind` run ('dense' or 'conv').

    Args:
        kind: 'dense' or 'conv'.
        data: the `tiny_data` fixture.
        tmp_path_factory: pytest's session fixture; the run lives in one of its directories.
    """
    if kind not in _runs:
        config = tiny_config(kind)
        workdir = tmp_path_factory.mktemp(f"trained-{kind}")
        metrics = train.train_and_evaluate(config, workdir, data=data, strategy=mirrored(1))
        _runs[kind] = (config, workdir, metrics)
    return _runs[kind]


def copy_run(kind: str, data, tmp_path_factory, destination) -> tuple:
    """(config, workdir) of a copy of the session's tiny `kind` run, for a test to change."""
    config, workdir, _ = trained_run(kind, data, tmp_path_factory)
    shutil.copytree(workdir, destination)
    return config, destination


def poison_latest_checkpoint(config, workdir) -> None:
    """Sets every weight in a workdir's latest checkpoint to NaN, as a run that diverged
    between two checkpoints would leave them; the best checkpoint is not touched. Resuming
    the run then meets a non-finite loss at its first step."""
    nets, optimizer = train.build_model_and_optimizer(config, tf.distribute.get_strategy())
    state = run_state.RunState(config, nets.autoencoder, optimizer, workdir)
    assert state.restore()
    for weight in nets.autoencoder.trainable_variables:
        weight.assign(tf.fill(weight.shape, float("nan")))
    state.save()
