"""The outer training loop: a plain Python loop over epochs around the traced steps.

`train_and_evaluate(config, workdir)` is the whole run, and reads top to bottom: build the
run's state in the strategy's scope and restore the latest checkpoint (`_build_run`: rerunning a
command resumes it); plan the rest of the run's step calls (`_plan_calls`); for each epoch,
train its calls (`_train_epoch`) and end it (`_end_epoch`: evaluate, keep the best model as
Keras' `ModelCheckpoint(save_best_only=True)` would, ask early stopping, then history,
checkpoint, summaries and the log line); finally score and draw (`autoenc.finish`).
"""

import contextlib
import dataclasses
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

from autoenc import checkpoints as checkpoints_lib
from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc import distribute, finish, models, pipeline, preemption, steps
from autoenc import plots as plots_lib
from autoenc import summaries as summaries_lib
from autoenc import workdir as workdir_lib
from autoenc.errors import NonFiniteLossError
from autoenc.loop_state import HISTORY_FIELDS, LoopState

DEFAULT_LEARNING_RATES = {"adadelta": 1.0, "adam": 0.001}
GRID_IMAGES = 8  # validation images shown in the TensorBoard grid


def make_optimizer(config, steps_per_epoch: int | None = None) -> keras.optimizers.Optimizer:
    """Adadelta or Adam at `config.learning_rate`, or at the book-faithful default if None,
    decayed to 0 over `config.epochs` of `steps_per_epoch` steps with `lr_schedule="cosine"`;
    wrapped in dynamic loss scaling for mixed_float16."""
    learning_rate = config.learning_rate or DEFAULT_LEARNING_RATES[config.optimizer]
    if config.lr_schedule == "cosine":
        if not steps_per_epoch:
            raise ValueError("a cosine learning-rate schedule needs the steps per epoch")
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=config.epochs * steps_per_epoch
        )
    if config.optimizer == "adadelta":
        optimizer = keras.optimizers.Adadelta(learning_rate=learning_rate)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    if config.precision == "mixed_float16":  # float16 gradients underflow without scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_model_and_optimizer(
    config, strategy, initial_weights: list | None = None, steps_per_epoch: int | None = None
):
    """The models a config names and their optimizer, made in `strategy`'s scope, with the
    optimizer built before any step: otherwise MirroredStrategy's first step under a Keras 3
    optimizer fails ("You must feed a value for placeholder tensor 'cond/...'").

    `initial_weights` (the autoencoder's) replace the ones the seed gave; `steps_per_epoch`
    sizes a learning-rate schedule. Returns the `models.Autoencoder` and the optimizer.
    """
    with strategy.scope():
        nets = models.build(config)
        if initial_weights is not None:
            nets.autoencoder.set_weights(initial_weights)
        optimizer = make_optimizer(config, steps_per_epoch)
        optimizer.build(nets.autoencoder.trainable_variables)
    return nets, optimizer


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


@dataclasses.dataclass
class _Run:
    """Everything one training run works with, built once before the first epoch."""

    config: object
    workdir: pathlib.Path  # where the run is read from
    output_dir: pathlib.Path  # where it writes: the workdir, or a non-chief worker's temp dir
    strategy: tf.distribute.Strategy
    nets: models.Autoencoder
    optimizer: keras.optimizers.Optimizer
    counters: checkpoints_lib.RunState  # step, epoch, epoch loss: TensorFlow variables
    loop: LoopState  # history, best, early stopping: the host side
    checkpoints: checkpoints_lib.RunCheckpoints
    train_steps: steps.TrainSteps
    batches: pipeline.TrainBatches
    eval_data: tf.data.Dataset  # before distribution, for the figures
    eval_data_distributed: object
    eval_sums: object
    grid: tuple  # (inputs, clean targets) of the validation images shown in TensorBoard
    summaries: summaries_lib.Summaries
    stop_signals: preemption.StopSignals
    stop_requested: object  # any_worker(flag) -> bool

    @property
    def model(self) -> keras.Model:
        return self.nets.autoencoder

    @property
    def epoch(self) -> int:
        """Epochs completed."""
        return int(self.counters.epoch)

    @property
    def step(self) -> int:
        """Optimizer steps done."""
        return int(self.counters.step)


def _train(config, workdir, output_dir, images, strategy, stop_signals) -> dict:
    """The run itself: build its state, train epoch after epoch, then finish (test, figures).

    Reads the run so far from `workdir`, writes to `output_dir` (the same directory, except on
    a non-chief worker of a multi-worker run). `images` are the uint8 (train, test) tensors.
    """
    run = _build_run(config, workdir, output_dir, images, strategy, stop_signals)
    plan = _plan_calls(run)  # [(epoch, steps per train_steps call)] for the rest of the run
    if plan:
        skip = _done_in_epoch(run)
        iterator = run.train_steps.run_iterator(run.batches, plan, skip_batches=skip)
    for _, calls in plan:
        if run.loop.stopped_early:
            break
        epoch_started = time.perf_counter()
        train_seconds = _train_epoch(run, iterator, calls)
        _end_epoch(run, sum(calls), train_seconds, epoch_started)
    return finish.finish(run)


def _plan_calls(run: _Run) -> list[tuple[int, list[int]]]:
    """Each remaining epoch with its `train_steps` calls (`steps.call_sizes`), planned up
    front so that one input iterator serves the rest of the run; none once early stopping
    has ended it."""
    if run.loop.stopped_early:
        return []
    config, steps_per_epoch = run.config, run.batches.steps_per_epoch
    plan, done, step = [], _done_in_epoch(run), run.step
    every = config.checkpoint_every_steps
    for epoch in range(run.epoch, config.epochs):
        calls = steps.call_sizes(done, steps_per_epoch, config.steps_per_loop, every, step=step)
        plan.append((epoch, calls))
        step, done = step + sum(calls), 0
    return plan


def _done_in_epoch(run: _Run) -> int:
    """Steps of the current epoch already trained (non-zero after a mid-epoch resume)."""
    return run.step - run.epoch * run.batches.steps_per_epoch


def make_train_batches(config, train_images: tf.Tensor) -> pipeline.TrainBatches:
    """The config's training batches. A mixed precision draws the noise from 16 bits per
    number: its model's first layer rounds the input to a 16-bit float anyway."""
    return pipeline.TrainBatches(
        train_images,
        config.batch_size,
        config.seed,
        config.noise_factor,
        models.input_shape(config),
        noise_factor_max=config.noise_factor_max,  # > 0: a noise level drawn per image
        noise_from_16_bits=config.precision != "float32",
    )


def _build_run(config, workdir, output_dir, images, strategy, stop_signals) -> _Run:
    """Builds every piece of state in the strategy's scope and restores the latest checkpoint,
    before anything is traced (a Keras 3 optimizer must be built before the first step, and
    before a restore, or its slots are silently not restored)."""
    distribute.per_replica_batch(strategy, config.batch_size)  # refuses an uneven split
    workdir_lib.atomic_write_text(output_dir / "config.json", config_lib.to_json(config))
    summaries_lib.write_hparams(output_dir, config)  # the run is a dashboard row from now on
    set_op_determinism(config.deterministic)
    train_images, test_images = images
    input_shape = models.input_shape(config)
    batches = make_train_batches(config, train_images)
    _log_layout(strategy, config.batch_size, train_images.shape[0], batches.steps_per_epoch)

    keras.utils.set_random_seed(config.seed)
    counters = checkpoints_lib.RunState()  # plain variables, outside the strategy scope
    nets, optimizer = build_model_and_optimizer(
        config, strategy, steps_per_epoch=batches.steps_per_epoch
    )
    with strategy.scope():
        checkpoints = checkpoints_lib.RunCheckpoints(
            output_dir, nets.autoencoder, optimizer, counters, resume_from=workdir
        )
        checkpoints.restore_latest()
    distribute.check_workers_agree(strategy, int(counters.step))
    loop = LoopState.from_checkpoint(counters.load_host(), config)
    if loop.history:  # a crash may have come between the checkpoint and the history.csv write
        workdir_lib.write_csv(output_dir / "history.csv", loop.history, HISTORY_FIELDS)

    eval_data = pipeline.eval_dataset(
        test_images,
        batch_size=config.batch_size,
        seed=config.seed,
        noise_factor=config.noise_factor,
        input_shape=input_shape,
    )
    return _Run(
        config=config,
        workdir=workdir,
        output_dir=output_dir,
        strategy=strategy,
        nets=nets,
        optimizer=optimizer,
        counters=counters,
        loop=loop,
        checkpoints=checkpoints,
        train_steps=steps.TrainSteps(
            strategy, nets.autoencoder, optimizer, config.batch_size, jit_compile=config.xla
        ),
        batches=batches,
        eval_data=eval_data,
        eval_data_distributed=distribute.distribute_dataset(strategy, eval_data),
        eval_sums=steps.make_eval_sums(strategy, nets.autoencoder),
        grid=plots_lib.first_examples(eval_data, GRID_IMAGES),
        summaries=summaries_lib.Summaries(output_dir, config),
        stop_signals=stop_signals,
        stop_requested=distribute.make_any_worker(strategy),  # a signal to one stops all
    )


def _log_layout(strategy, global_batch: int, train_count: int, steps_per_epoch: int) -> None:
    logging.info(
        "%d replica(s) (%s); global batch %d = %d per replica; %d training images, %d steps/epoch",
        strategy.num_replicas_in_sync,
        ", ".join(strategy.extended.worker_devices),
        global_batch,
        global_batch // strategy.num_replicas_in_sync,
        train_count,
        steps_per_epoch,
    )


def _train_epoch(run: _Run, iterator, calls: list[int]) -> float:
    """Trains the rest of the current epoch, one `train_steps` call of `calls` at a time,
    checkpointing where `checkpoint_every_steps` says and stopping (with a checkpoint) when
    asked to. Returns the seconds it took."""
    started, steps_per_epoch = time.perf_counter(), run.batches.steps_per_epoch
    every, done = run.config.checkpoint_every_steps, _done_in_epoch(run)
    progress = keras.utils.Progbar(steps_per_epoch, unit_name="step") if _interactive() else None
    for count in calls:
        run.summaries.train_graph(run.train_steps.function, iterator, tf.constant(count))
        losses = run.train_steps(iterator, count).numpy()
        _check_finite(losses, run.epoch, run.step, run.workdir)
        run.summaries.train_losses(run.step, losses)
        run.counters.step.assign_add(count)
        run.counters.epoch_loss_sum.assign_add(float(np.sum(losses, dtype=np.float64)))
        done += count
        if progress:
            progress.update(done, [("loss", float(losses[-1]))])
        mid_epoch = done < steps_per_epoch
        if every and run.step % every == 0 and mid_epoch:
            run.checkpoints.save_latest(run.loop.to_checkpoint())
        if mid_epoch and run.stop_requested(run.stop_signals.received):
            run.checkpoints.save_latest(run.loop.to_checkpoint())
            raise _preempted(run.stop_signals, run.epoch, run.step)
    return time.perf_counter() - started


def _end_epoch(run: _Run, trained_steps: int, train_seconds: float, started: float) -> None:
    """Evaluates, keeps the best model, asks early stopping, records the epoch (history,
    checkpoint, summaries, log), then stops with a checkpoint if a signal asked for it."""
    config, epoch = run.config, run.epoch  # `epoch`: 0-based index of the epoch just trained
    val = steps.sums_to_means(run.eval_sums(run.eval_data_distributed))
    loss = float(run.counters.epoch_loss_sum) / run.batches.steps_per_epoch
    logs = {"loss": loss, **{f"val_{name}": value for name, value in val.items()}}
    if not math.isfinite(val["loss"]):
        raise NonFiniteLossError(
            f"val_loss is {val['loss']} after epoch {epoch + 1}; the best checkpoint in"
            f" {run.workdir / 'best'} is intact; try a lower --config.learning_rate"
        )
    if run.loop.best.is_improvement(logs):
        run.checkpoints.save_best(epoch + 1)
        run.loop.best.commit(epoch, logs)  # only after the save succeeded
    if run.loop.early_stopping:
        run.loop.early_stopping.update(epoch, logs)  # stops the run by its stopped_epoch
        if run.loop.early_stopping.restored_epoch() == epoch:  # Keras snapshots these weights
            run.checkpoints.save_final(epoch + 1)
    images_per_sec = trained_steps * config.batch_size / max(train_seconds, 1e-9)
    seconds = time.perf_counter() - started
    row = dict(
        epoch=epoch + 1,
        loss=loss,
        val_loss=val["loss"],
        seconds=round(seconds, 3),
        images_per_sec=round(images_per_sec, 1),
    )
    run.loop.history.append(row)
    run.counters.epoch.assign(epoch + 1)
    run.counters.epoch_loss_sum.assign(0.0)
    run.checkpoints.save_latest(run.loop.to_checkpoint())
    workdir_lib.write_csv(run.output_dir / "history.csv", run.loop.history, HISTORY_FIELDS)
    # Summaries and the log line come after the checkpoint and before a requested stop, so a
    # resumed run neither misses nor repeats this epoch in TensorBoard.
    train_scalars = dict(loss=loss, seconds=seconds, images_per_sec=images_per_sec)
    _write_epoch_summaries(run, train_scalars, val)
    _log_epoch(run, row, val)
    if run.stop_requested(run.stop_signals.received):
        raise _preempted(run.stop_signals, epoch, run.step)


def _write_epoch_summaries(run: _Run, train_scalars: dict, val: dict) -> None:
    grid_inputs, grid_targets = run.grid
    learning_rate = float(keras.ops.convert_to_numpy(run.optimizer.learning_rate))
    run.summaries.epoch_end(
        run.epoch,
        train=dict(train_scalars, learning_rate=learning_rate),
        validation=val,
        grid_rows=(grid_targets, grid_inputs, run.model(grid_inputs, training=False)),
        model=run.model,
    )


def _log_epoch(run: _Run, row: dict, val: dict) -> None:
    best = run.loop.best
    logging.info(
        "epoch %d/%d  loss %.4f  val_loss %.4f  val_psnr %.2f dB  %.1f s  %.0f img/s  "
        "best %.4f (epoch %d)%s",
        row["epoch"],
        run.config.epochs,
        row["loss"],
        row["val_loss"],
        val["psnr"],
        row["seconds"],
        row["images_per_sec"],
        best.best,
        best.best_epoch + 1,
        "  early stop" if run.loop.stopped_early else "",
    )


def _interactive() -> bool:
    return sys.stdout.isatty()


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
