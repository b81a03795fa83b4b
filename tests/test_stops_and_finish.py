"""Where a run can be stopped, what it keeps, and which weights it ends with.

Signals are sent from hooks on the run's own checkpoint saves (the process signals itself), so
they land at a chosen point of the loop every time:
- a SIGTERM at an epoch's end still writes that epoch's summaries, and the resumed run writes
  every epoch (and every `batch_loss` step) exactly once;
- a signal after the last epoch, while the test images are scored, stops at once (exit 75,
  `Preempted`) and rerunning the command writes metrics.json;
- the hparams are in the workdir from the start, so a stopped run is a dashboard row too;
- `early_stopping.restore_best_weights` decides the final weights, as in Keras' `fit`.
"""

import collections
import os
import signal

import numpy as np
import pytest
import tensorflow as tf
from conftest import mirrored
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from autoenc import models, run_state, train
from autoenc.preemption import Preempted
from configs import dense_compress


def dense_config(**overrides):
    config = dense_compress.get_config()
    config.update(dict(batch_size=64, epochs=3, loss_every_steps=1, steps_per_loop=3))
    config.update(overrides)
    return config


def steps_of(workdir, run, tag):
    """Every step at which `tag` was written in `workdir/run`, duplicates kept."""
    accumulator = event_accumulator.EventAccumulator(
        str(workdir / run), size_guidance={event_accumulator.TENSORS: 0}
    )
    accumulator.Reload()
    return [event.step for event in accumulator.Tensors(tag)]


def signal_on_save(monkeypatch, method, when):
    """Makes `RunState.<method>` send this process a SIGTERM after the save for which
    `when(step, epoch)` is true."""
    original = getattr(run_state.RunState, method)

    def save_then_signal(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if when(int(self.step), int(self.epoch)):
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(run_state.RunState, method, save_then_signal)


@pytest.mark.parametrize("where", ["epoch_end", "mid_epoch"])
def test_a_stopped_and_resumed_run_writes_every_epoch_and_step_once(
    tmp_path, tiny_data, monkeypatch, where
):
    config = dense_config(checkpoint_every_steps=5 if where == "mid_epoch" else 0)
    # 8 steps an epoch: the epoch-1 checkpoint at step 8, or the mid-epoch one at step 5.
    stop_at = {"epoch_end": lambda step, epoch: epoch == 1, "mid_epoch": lambda step, _: step == 5}
    with monkeypatch.context() as patch:
        signal_on_save(patch, "save", stop_at[where])
        with pytest.raises(Preempted):
            train.train_and_evaluate(config, tmp_path, data=tiny_data, strategy=mirrored(1))
    if where == "epoch_end":  # the stopped epoch's summaries were written before the stop
        assert steps_of(tmp_path, "validation", "epoch_loss") == [1]
    train.train_and_evaluate(config, tmp_path, data=tiny_data, strategy=mirrored(1))

    for run in ("train", "validation"):
        assert sorted(steps_of(tmp_path, run, "epoch_loss")) == [1, 2, 3], run
    batch_steps = steps_of(tmp_path, "train", "batch_loss")
    assert sorted(batch_steps) == list(range(1, 25))
    assert not [s for s, n in collections.Counter(batch_steps).items() if n > 1]


def test_a_signal_while_scoring_stops_at_once_and_a_rerun_finishes(
    tmp_path, tiny_data, monkeypatch
):
    config = dense_config(epochs=2)
    with monkeypatch.context() as patch:
        signal_on_save(patch, "save_final", lambda step, epoch: True)
        with pytest.raises(Preempted, match="after the last epoch") as stopped:
            train.train_and_evaluate(config, tmp_path, data=tiny_data, strategy=mirrored(1))
    assert stopped.value.exit_code == 75
    assert not (tmp_path / "metrics.json").exists()
    assert not (tmp_path / "figures").exists()  # it stopped at once, not after the figures
    metrics = train.train_and_evaluate(config, tmp_path, data=tiny_data, strategy=mirrored(1))
    assert metrics["epochs_completed"] == 2 and (tmp_path / "metrics.json").exists()
    assert (tmp_path / "figures" / "loss_curves.png").exists()


def test_hparams_are_written_when_the_run_starts(tmp_path, tiny_data, monkeypatch):
    with monkeypatch.context() as patch:
        signal_on_save(patch, "save", lambda step, epoch: epoch == 1)
        with pytest.raises(Preempted):
            train.train_and_evaluate(dense_config(), tmp_path, data=tiny_data)
    accumulator = event_accumulator.EventAccumulator(str(tmp_path))
    accumulator.Reload()
    content = accumulator.PluginTagToContent("hparams")[hparams_metadata.SESSION_START_INFO_TAG]
    hparams = hparams_metadata.parse_session_start_info_plugin_data(content).hparams
    assert hparams["model"].string_value == "dense"
    assert not [tag for tag in accumulator.Tags()["tensors"] if tag.startswith("test_")]


def final_and_best(workdir, config):
    """The weights in WORKDIR/final and WORKDIR/best, and the final checkpoint's epoch."""
    nets = {}
    for name in ("final", "best"):
        net = models.build(config).autoencoder
        path = tf.train.latest_checkpoint(str(workdir / name))
        tf.train.Checkpoint(model=net).restore(path).assert_existing_objects_matched()
        nets[name] = (net.get_weights(), int(path.rsplit("-", 1)[1]))
    return nets


@pytest.mark.parametrize("restore_best_weights", [False, True])
def test_restore_best_weights_decides_the_final_weights(tmp_path, tiny_data, restore_best_weights):
    # Early stopping on val_psnr with a min_delta no epoch reaches: its best stays epoch 1,
    # while the best checkpoint (val_loss, strict improvement) moves on with every epoch.
    config = dense_config(epochs=4, optimizer="adam")
    config.early_stopping.update(dict(monitor="val_psnr", min_delta=100.0, patience=10))
    config.early_stopping.restore_best_weights = restore_best_weights
    metrics = train.train_and_evaluate(config, tmp_path, data=tiny_data, strategy=mirrored(1))
    saved = final_and_best(tmp_path, config)
    final_weights, final_epoch = saved["final"]
    best_weights, best_epoch = saved["best"]
    assert best_epoch == metrics["best_epoch"] > 1  # val_loss improved after epoch 1
    assert final_epoch == metrics["final"]["epoch"] == (1 if restore_best_weights else 4)
    assert not metrics["stopped_early"]
    same = all(np.array_equal(a, b) for a, b in zip(final_weights, best_weights))
    assert same == (not restore_best_weights)
    if restore_best_weights:  # scored separately: epoch 1's weights reconstruct worse
        assert metrics["final"]["test"]["psnr"] < metrics["test"]["psnr"]
    else:
        assert metrics["final"]["test"] == metrics["test"]


def test_a_worker_that_saved_no_weights_since_resuming_reads_the_chiefs(tmp_path, tiny_data):
    """A non-chief worker of a multi-worker run saves into a temporary directory and resumes
    from the chief's workdir. Resumed after the last epoch, it trains nothing and has no best
    or final weights of its own: it must load the chief's, the weights every worker holds."""
    config = dense_config(epochs=2, optimizer="adam")
    train.train_and_evaluate(config, tmp_path / "run", data=tiny_data, strategy=mirrored(1))
    saved = final_and_best(tmp_path / "run", config)
    nets, optimizer = train.build_model_and_optimizer(config, tf.distribute.get_strategy())
    worker = run_state.RunState(
        config, nets.autoencoder, optimizer, tmp_path / "worker-tmp", resume_from=tmp_path / "run"
    )
    assert worker.restore() and int(worker.epoch) == 2
    for kind in ("best", "final"):
        weights, epoch = saved[kind]
        for variable in nets.autoencoder.weights:
            variable.assign(tf.zeros_like(variable))
        assert worker.restore_weights(kind) == epoch
        for restored, expected in zip(nets.autoencoder.get_weights(), weights, strict=True):
            np.testing.assert_array_equal(restored, expected)
