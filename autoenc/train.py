"""The outer training loop: epochs, evaluation, best model, early stopping, outputs.

`train_and_evaluate(config, workdir)` is the whole run. It builds every piece of state inside
the strategy scope before the first trace (model, built optimizer, counters), restores the
latest checkpoint if the workdir has one (so rerunning a command resumes it), then loops over
epochs in plain Python around the traced steps of `autoenc.steps`. Per epoch it evaluates,
keeps the best model as Keras' `ModelCheckpoint(save_best_only=True)` would (test, save, then
commit), asks early stopping whether to stop, and writes history, summaries and a checkpoint
(`autoenc.checkpoints`). At the end the best weights are restored and scored on the clean test
images, and the figures are drawn.
"""

import contextlib
import hashlib
import json
import math
import pathlib
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from autoenc import callbacks, distribute, models, pipeline, preemption, steps
from autoenc import checkpoints as checkpoints_lib
from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc import plots as plots_lib
from autoenc import summaries as summaries_lib
from autoenc import workdir as workdir_lib
from autoenc.errors import NonFiniteLossError

HISTORY_FIELDS = ("epoch", "loss", "val_loss", "seconds", "images_per_sec")
DEFAULT_LEARNING_RATES = {"adadelta": 1.0, "adam": 0.001}
GRID_IMAGES = 8
# Which way is better for each logged value early stopping may monitor (Keras reads this from
# the compiled metrics; we have none).
METRIC_DIRECTIONS = {
    "val_mse": "down",
    "val_bce": "down",
    "val_psnr": "up",
    "val_ssim": "up",
}  # validation images shown in the TensorBoard grid


def make_optimizer(config) -> keras.optimizers.Optimizer:
    """Adadelta or Adam at `config.learning_rate`, or at the book-faithful default if None;
    wrapped in dynamic loss scaling for mixed_float16."""
    learning_rate = config.learning_rate or DEFAULT_LEARNING_RATES[config.optimizer]
    if config.optimizer == "adadelta":
        optimizer = keras.optimizers.Adadelta(learning_rate=learning_rate)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if config.precision == "mixed_float16":  # float16 gradients underflow without scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_model_and_optimizer(config, strategy, initial_weights: list | None = None):
    """The models a config names and their optimizer, made in `strategy`'s scope, with the
    optimizer built before any step: otherwise MirroredStrategy's first step under a Keras 3
    optimizer fails ("You must feed a value for placeholder tensor 'cond/...'").

    `initial_weights` (the autoencoder's) replace the ones the seed gave. Returns the
    `models.Autoencoder` and the optimizer.
    """
    with strategy.scope():
        nets = models.build(config)
        if initial_weights is not None:
            nets.autoencoder.set_weights(initial_weights)
        optimizer = make_optimizer(config)
        optimizer.build(nets.autoencoder.trainable_variables)
    return nets, optimizer


def _early_stopping(config) -> callbacks.EarlyStopping | None:
    es = config.early_stopping
    if not es.enabled:
        return None
    return callbacks.EarlyStopping(
        monitor=es.monitor,
        min_delta=es.min_delta,
        patience=es.patience,
        mode=es.mode,
        baseline=es.baseline,
        restore_best_weights=es.restore_best_weights,
        start_from_epoch=es.start_from_epoch,
        metric_directions=METRIC_DIRECTIONS,
    )


def _finished_message(metrics: dict, config) -> str | None:
    """Why a run whose metrics.json exists needs no more training, or None to go on."""
    done = metrics["epochs_completed"]
    if metrics["stopped_early"]:
        return f"early stopping ended it after epoch {done}"
    if config.epochs <= done:
        return f"it trained {done} of {config.epochs} epochs; a larger --config.epochs extends it"
    return None


def train_and_evaluate(
    config, workdir, *, data=None, strategy=None, strategy_name: str = "mirrored"
) -> dict:
    """Trains the model `config` describes in `workdir` (resuming it if started) and tests it.

    Args:
        config: a config from `configs/` (see `autoenc.config`), overrides applied.
        workdir: where checkpoints, summaries, history.csv and metrics.json go. In a
            multi-worker run every worker gets the same path, which must be on a filesystem
            they share: only the chief writes there, the others resume from it.
        data: a `data.FashionMNIST` to use instead of loading the real files (tests).
        strategy: a distribution strategy to use (tests); default: made from `strategy_name`.
        strategy_name: 'mirrored' (local devices) or 'multi_worker' (see `autoenc.distribute`).

    Returns:
        The contents of metrics.json.

    Raises:
        UserError: bad config, data or workdir, or a non-finite loss (one-line messages).
    """
    config_lib.validate(config)
    resolver = None if strategy else distribute.cluster_resolver(strategy_name)
    chief = distribute.is_chief(resolver)
    workdir = workdir_lib.prepare(workdir) if chief else pathlib.Path(workdir)
    with contextlib.ExitStack() as stack:
        if chief:
            stack.enter_context(workdir_lib.WorkdirLock(workdir))
            output_dir = workdir
        else:  # takes part in every save, as TensorFlow requires, but somewhere temporary
            output_dir = pathlib.Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="autoenc-worker-"))
            )
        resuming = workdir_lib.check_resumable(workdir, config)
        metrics_path = workdir / "metrics.json"
        if resuming and metrics_path.exists():
            metrics = json.loads(metrics_path.read_text())
            reason = _finished_message(metrics, config)
            if reason:
                logging.info("%s is already finished: %s.", workdir, reason)
                return metrics
        if data is None:  # before the strategy, whose start-up log would precede a data error
            data = data_lib.load_fashion_mnist(config.data_dir or None)
        config_lib.validate(config, num_train_images=len(data.x_train))
        strategy = strategy or distribute.make_strategy(resolver)  # before any other TF op
        stop_signals = stack.enter_context(preemption.StopSignals())
        # Tensors copy the images; not keeping the numpy arrays too saves 55 MB for the run.
        images = (
            tf.constant(data.x_train[: config.train_examples or None]),
            tf.constant(data.x_test),
        )
        del data
        return _train(config, workdir, output_dir, images, strategy, stop_signals)


def _train(config, workdir, output_dir, images, strategy, stop_signals) -> dict:
    """The run itself. Reads the run so far from `workdir`, writes to `output_dir` (the same
    directory, except on a non-chief worker of a multi-worker run). `images` are the uint8
    (train, test) image tensors."""
    per_replica_batch = distribute.per_replica_batch(strategy, config.batch_size)
    workdir_lib.atomic_write_text(output_dir / "config.json", config_lib.to_json(config))
    set_op_determinism(config.deterministic)

    train_images, test_images = images
    steps_per_epoch = train_images.shape[0] // config.batch_size
    input_shape = models.input_shape(config)
    logging.info(
        "%d replica(s) (%s); global batch %d = %d per replica; %d training images, %d steps/epoch",
        strategy.num_replicas_in_sync,
        ", ".join(strategy.extended.worker_devices),
        config.batch_size,
        per_replica_batch,
        train_images.shape[0],
        steps_per_epoch,
    )

    keras.utils.set_random_seed(config.seed)
    state = checkpoints_lib.RunState()  # plain variables, outside the strategy scope
    nets, optimizer = build_model_and_optimizer(config, strategy)
    model = nets.autoencoder
    with strategy.scope():
        checkpoints = checkpoints_lib.RunCheckpoints(
            output_dir, model, optimizer, state, resume_from=workdir
        )
        checkpoints.restore_latest()
    distribute.check_workers_agree(strategy, int(state.step))
    stop_requested = distribute.make_any_worker(strategy)  # a signal to one stops all

    host = state.load_host()
    history = host.get("history", [])
    best = callbacks.BestCheckpoint(monitor="val_loss", mode="auto")
    if "best" in host:
        best.load_state_dict(host["best"])
    early_stopping = _early_stopping(config)
    if early_stopping and "early_stopping" in host:
        early_stopping.load_state_dict(host["early_stopping"])
    stopped_early = host.get("stopped_early", False)
    if history:  # a crash may have come between the checkpoint and the history.csv write
        workdir_lib.write_csv(output_dir / "history.csv", history, HISTORY_FIELDS)

    train_steps = steps.make_train_steps(
        strategy, model, optimizer, config.batch_size, jit_compile=config.xla
    )
    blocks = steps.trains_on_blocks(strategy, model, jit_compile=config.xla)
    eval_model = steps.make_eval_sums(strategy, model)
    eval_data = pipeline.eval_dataset(
        test_images,
        batch_size=config.batch_size,
        seed=config.seed,
        noise_factor=config.noise_factor,
        input_shape=input_shape,
    )
    dist_eval_data = distribute.distribute_dataset(strategy, eval_data)
    grid_inputs, grid_targets = plots_lib.first_examples(eval_data, GRID_IMAGES)
    summaries = summaries_lib.Summaries(output_dir, config)

    epoch = int(state.epoch)
    while epoch < config.epochs and not stopped_early:
        started = time.perf_counter()
        done_in_epoch = int(state.step) - epoch * steps_per_epoch
        calls = call_sizes(
            done_in_epoch,
            steps_per_epoch,
            config.steps_per_loop,
            config.checkpoint_every_steps,
            step=int(state.step),
        )
        dataset = pipeline.train_dataset(
            train_images,
            batch_size=config.batch_size,
            epoch=epoch,
            seed=config.seed,
            noise_factor=config.noise_factor,
            input_shape=input_shape,
            skip_batches=done_in_epoch,
            block_sizes=calls if blocks else None,
        )
        iterator = iter(distribute.distribute_dataset(strategy, dataset))
        progress = (
            keras.utils.Progbar(steps_per_epoch, unit_name="step") if sys.stdout.isatty() else None
        )
        trained_here = 0
        every = config.checkpoint_every_steps
        for count in calls:
            summaries.train_graph(train_steps, iterator, tf.constant(count))  # first call only
            losses = train_steps(iterator, tf.constant(count)).numpy()
            _check_finite(losses, epoch, int(state.step), workdir)
            summaries.train_losses(int(state.step), losses)
            state.step.assign_add(count)
            state.epoch_loss_sum.assign_add(float(np.sum(losses, dtype=np.float64)))
            done_in_epoch += count
            trained_here += count
            if progress:
                progress.update(done_in_epoch, [("loss", float(losses[-1]))])
            if every and int(state.step) % every == 0 and done_in_epoch < steps_per_epoch:
                checkpoints.save_latest(host)
            if stop_requested(stop_signals.received) and done_in_epoch < steps_per_epoch:
                checkpoints.save_latest(host)
                raise _preempted(stop_signals, epoch, int(state.step))
        train_seconds = time.perf_counter() - started

        val = steps.sums_to_means(eval_model(dist_eval_data))
        loss = float(state.epoch_loss_sum) / steps_per_epoch
        logs = {"loss": loss, **{f"val_{name}": value for name, value in val.items()}}
        if not math.isfinite(val["loss"]):
            raise NonFiniteLossError(
                f"val_loss is {val['loss']} after epoch {epoch + 1}; the best checkpoint in"
                f" {workdir / 'best'} is intact; try a lower --config.learning_rate"
            )
        if best.is_improvement(logs):
            checkpoints.save_best(epoch + 1)
            best.commit(epoch, logs)  # only after the save succeeded
        if early_stopping:
            stopped_early = early_stopping.update(epoch, logs)
        seconds = time.perf_counter() - started
        images_per_sec = trained_here * config.batch_size / max(train_seconds, 1e-9)
        history.append(
            dict(
                epoch=epoch + 1,
                loss=loss,
                val_loss=val["loss"],
                seconds=round(seconds, 3),
                images_per_sec=round(images_per_sec, 1),
            )
        )
        epoch += 1
        state.epoch.assign(epoch)
        state.epoch_loss_sum.assign(0.0)
        host = dict(history=history, best=best.state_dict(), stopped_early=stopped_early)
        if early_stopping:
            host["early_stopping"] = early_stopping.state_dict()
        checkpoints.save_latest(host)
        workdir_lib.write_csv(output_dir / "history.csv", history, HISTORY_FIELDS)
        if stop_requested(stop_signals.received):
            raise _preempted(stop_signals, epoch - 1, int(state.step))
        summaries.epoch_end(
            epoch,
            train=dict(
                loss=loss,
                seconds=seconds,
                images_per_sec=images_per_sec,
                learning_rate=float(np.asarray(optimizer.learning_rate.value)),
            ),
            validation=val,
            grid_rows=(grid_targets, grid_inputs, model(grid_inputs, training=False)),
            model=model,
        )
        logging.info(
            "epoch %d/%d  loss %.4f  val_loss %.4f  val_psnr %.2f dB  %.1f s  %.0f img/s  "
            "best %.4f (epoch %d)%s",
            epoch,
            config.epochs,
            loss,
            val["loss"],
            val["psnr"],
            seconds,
            images_per_sec,
            best.best,
            best.best_epoch + 1,
            "  early stop" if stopped_early else "",
        )

    summaries.close()
    checkpoints.restore_best()
    metrics = dict(
        best_epoch=best.best_epoch + 1,
        best_val_loss=best.best,
        epochs_completed=epoch,
        stopped_early=stopped_early,
        **test_metrics(strategy, model, dist_eval_data, config.noise_factor),
        replicas=strategy.num_replicas_in_sync,
    )
    workdir_lib.write_json(output_dir / "metrics.json", metrics)
    logging.info("test (best model, epoch %d): %s", metrics["best_epoch"], metrics["test"])
    if "noisy_input" in metrics:
        logging.info("test (noisy input): %s", metrics["noisy_input"])
    logging.info("weights fingerprint %s", weights_fingerprint(model))
    summaries_lib.write_hparams(output_dir, config, metrics)
    if output_dir == workdir:  # a non-chief worker's figures would be thrown away
        plots_lib.write_figures(config, workdir, model, eval_data)
    return metrics


def call_sizes(
    done_in_epoch: int, steps_per_epoch: int, steps_per_loop: int, every: int, *, step: int
) -> list[int]:
    """How many steps each `train_steps` call of the rest of an epoch runs: `steps_per_loop`,
    cut short at the epoch's end and, with `every` (checkpoint_every_steps) > 0, at each global
    step that is a multiple of it. `step` is the global step before the first call."""
    sizes = []
    while done_in_epoch < steps_per_epoch:
        count = min(steps_per_loop, steps_per_epoch - done_in_epoch)
        if every:
            count = min(count, every - step % every)
        sizes.append(count)
        done_in_epoch += count
        step += count
    return sizes


def test_metrics(strategy, model, dist_eval_data, noise_factor: float) -> dict:
    """metrics.json's `test` (the model's output vs the clean test images) and, for a denoiser,
    `noisy_input` (the noisy input itself vs the clean images: the baseline to beat)."""
    names = ("bce", "mse", "psnr", "ssim")
    test = steps.sums_to_means(steps.make_eval_sums(strategy, model)(dist_eval_data))
    metrics = {"test": {name: test[name] for name in names}}
    if noise_factor:
        noisy = steps.sums_to_means(steps.make_eval_sums(strategy, None)(dist_eval_data))
        metrics["noisy_input"] = {name: noisy[name] for name in names}
    return metrics


def weights_fingerprint(model: keras.Model) -> str:
    """A short hash of every weight's bytes: equal on every worker of a multi-worker run, and
    in two runs exactly when they trained bit-identically."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def set_op_determinism(enabled: bool) -> None:
    """Turns TensorFlow's op determinism on or off for this process, as the config says.

    TensorFlow only exports the switch to turn it on; the off switch is its internal twin. It
    matters when one process runs several configs (tests, studies): once on, determinism would
    otherwise stay on and refuse XLA's non-deterministic MaxPool gradient.
    """
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        from tensorflow.python.framework import config as tf_framework_config

        tf_framework_config.disable_op_determinism()


def _preempted(stop_signals, epoch: int, step: int) -> preemption.Preempted:
    return preemption.Preempted(
        f"stopped by {stop_signals.name() or 'a signal to another worker'} in epoch"
        f" {epoch + 1} at step {step}; checkpoint saved; rerun the same command to resume"
    )


def _check_finite(losses: np.ndarray, epoch: int, step_before: int, workdir) -> None:
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise NonFiniteLossError(
            f"loss is {losses[bad[0]]} at epoch {epoch + 1}, step {step_before + bad[0] + 1};"
            f" stopped without saving (the best checkpoint in {workdir / 'best'} is intact);"
            " try a lower --config.learning_rate"
        )
