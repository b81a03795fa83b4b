"""The outer training loop: a plain Python loop over epochs around the traced steps.

`train_and_evaluate(config, workdir)` reads top to bottom: build the run and restore its state
(rerunning a command resumes it); per epoch, train (`_train_epoch`), then evaluate, keep the best
model, ask early stopping and record the epoch (`_end_epoch`); finally score the best and final
weights and write metrics.json and the figures (`_finish`).
"""

import contextlib
import dataclasses
import hashlib
import json
import math
import pathlib
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc import distribute, latent, models, pipeline, preemption, steps
from autoenc import plots as plots_lib
from autoenc import summaries as summaries_lib
from autoenc import workdir as workdir_lib
from autoenc.errors import NonFiniteLossError, UsageError, UserError
from autoenc.progress import EpochProgress
from autoenc.run_state import HISTORY_FIELDS, RunState, checkpoint_path_problem

# config.optimizer -> (its class, the rate when none is given: the book's, or Keras' for Adam)
OPTIMIZERS = {"adadelta": (keras.optimizers.Adadelta, 1.0), "adam": (keras.optimizers.Adam, 0.001)}
GRID_IMAGES = 8  # validation images shown in the TensorBoard grid


def make_optimizer(config, steps_per_epoch: int | None = None) -> keras.optimizers.Optimizer:
    """Adadelta or Adam at `config.learning_rate` (None: `OPTIMIZERS`' rate), cosine-decayed over
    the run with `lr_schedule="cosine"`, with dynamic loss scaling for mixed_float16."""
    optimizer_class, default_rate = OPTIMIZERS[config.optimizer]
    learning_rate = config.learning_rate or default_rate
    if config.lr_schedule == "cosine":
        if not steps_per_epoch:
            raise ValueError("a cosine learning-rate schedule needs the steps per epoch")
        learning_rate = keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=config.epochs * steps_per_epoch
        )
    optimizer = optimizer_class(learning_rate=learning_rate)
    if config.precision == "mixed_float16":  # float16 gradients underflow without scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def build_model_and_optimizer(
    config, strategy, initial_weights: list | None = None, steps_per_epoch: int | None = None
):
    """The config's `models.Autoencoder` and optimizer, made in `strategy`'s scope with the
    optimizer built before any step (else MirroredStrategy's first step under a Keras 3
    optimizer fails); `initial_weights` replace the seeded ones, `steps_per_epoch` sizes a
    schedule."""
    with strategy.scope():
        nets = models.build(config)
        if initial_weights is not None:
            nets.autoencoder.set_weights(initial_weights)
        optimizer = make_optimizer(config, steps_per_epoch)
        optimizer.build(nets.autoencoder.trainable_variables)
    return nets, optimizer


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


def train_and_evaluate(
    config, workdir, *, data=None, strategy=None, strategy_name: str = "mirrored"
) -> dict:
    """Trains the model `config` describes in `workdir` (resuming it if started) and tests it.

    Args:
        config: a config from `configs/`, overrides applied.
        workdir: the run's directory; in a multi-worker run on a filesystem all workers share
            (only the chief writes there, every worker resumes from it).
        data: a `data.FashionMNIST` to use instead of the real files (tests).
        strategy: a strategy to use (tests); default: made from `strategy_name`, 'mirrored'
            or 'multi_worker' (see `autoenc.distribute`).

    Returns the contents of metrics.json; raises `UserError` (one line) for a bad config, data or
    workdir, a full disk or a non-finite loss.
    """
    problem = checkpoint_path_problem(workdir)
    if problem:
        raise UsageError(problem)
    resolver = None if strategy else distribute.cluster_resolver(strategy_name)
    chief = distribute.is_chief(resolver)
    if chief:
        workdir_lib.check_run_dir(workdir)  # before the lock or anything else lands in it
    workdir = workdir_lib.prepare(workdir) if chief else pathlib.Path(workdir)
    with contextlib.ExitStack() as stack:
        if chief:
            stack.enter_context(workdir_lib.WorkdirLock(workdir))
            output_dir = workdir
        else:  # takes part in every save, as TensorFlow requires, but somewhere temporary
            output_dir = pathlib.Path(
                stack.enter_context(tempfile.TemporaryDirectory(prefix="autoenc-worker-"))
            )
        finished = workdir_lib.check_resumable(workdir, config) and _finished(workdir, config)
        if finished:
            return finished
        if data is None:  # before the strategy, whose start-up log would precede a data error
            data = data_lib.load_fashion_mnist(config.data_dir or None)
        config_lib.validate(config, num_train_images=len(data.x_train))
        strategy = strategy or distribute.make_strategy(resolver)  # before any other TF op
        stop_signals = stack.enter_context(preemption.StopSignals())
        # Tensors copy the images; not keeping the numpy arrays too saves 55 MB for the run.
        count = config.train_examples or None
        images = (tf.constant(data.x_train[:count]), tf.constant(data.x_test))
        labels = (data.y_train[:count], data.y_test)  # for the probe of a model's code
        del data
        run = _build_run(config, workdir, output_dir, images, strategy, stop_signals)
        run.labels = labels
        try:
            return _train(run)
        except OSError as e:  # history.csv, metrics.json or a figure on a full disk
            raise UserError(f"cannot write {e.filename}: {e.strerror}") from None


def _finished(workdir: pathlib.Path, config) -> dict | None:
    """metrics.json of a run that needs no more training (logging why), else None."""
    path = workdir / "metrics.json"
    if not path.exists():
        return None
    try:
        metrics = json.loads(path.read_text())
        done, stopped_early = metrics["epochs_completed"], metrics["stopped_early"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UserError(
            f"cannot read {path} ({type(e).__name__}: {e}); delete it to score the run again"
        ) from None
    if stopped_early:
        reason = f"early stopping ended it after epoch {done}"
    elif config.epochs <= done:
        reason = f"it trained {done} of {config.epochs} epochs; a larger --config.epochs extends it"
    else:
        return None
    logging.info("%s is already finished: %s.", workdir, reason)
    return metrics


@dataclasses.dataclass
class _Run:
    """What the loop works with, built once: the run's state and the pieces that act on it."""

    config: object
    workdir: pathlib.Path  # where the run is read from
    output_dir: pathlib.Path  # where it writes: the workdir, or a non-chief worker's temp dir
    strategy: tf.distribute.Strategy
    nets: models.Autoencoder
    state: RunState  # the model, its optimizer and the loop's counters and decisions
    train_steps: steps.TrainSteps
    batches: pipeline.TrainBatches
    test_images: tf.Tensor
    eval_data: tf.data.Dataset  # before distribution, for the figures
    eval_data_distributed: object
    eval_sums: object
    grid: tuple  # (inputs, clean targets) of the validation images shown in TensorBoard
    summaries: summaries_lib.Summaries
    stop_signals: preemption.StopSignals
    stop_requested: object  # any_worker(flag) -> bool
    labels: tuple = ()  # the (train, test) classes, for the probe of a model's code

    def done_in_epoch(self) -> int:  # steps of the current epoch trained before a resume
        return int(self.state.step) - int(self.state.epoch) * self.batches.steps_per_epoch


def _train(run: _Run) -> dict:
    """Trains epoch after epoch from where the state says, then finishes the run."""
    plan = _plan_calls(run)  # [(epoch, steps per train_steps call)] for the rest of the run
    if plan:
        skip = run.done_in_epoch()
        iterator = run.train_steps.run_iterator(run.batches, plan, skip_batches=skip)
    for _, calls in plan:
        if run.state.stopped_early:
            break
        epoch_started = time.perf_counter()
        train_seconds = _train_epoch(run, iterator, calls)
        _end_epoch(run, sum(calls), train_seconds, epoch_started)
    return _finish(run)


def _plan_calls(run: _Run) -> list[tuple[int, list[int]]]:
    """Each remaining epoch with its `train_steps` calls, planned up front so that one input
    iterator serves the rest of the run."""
    if run.state.stopped_early:
        return []
    config, steps_per_epoch = run.config, run.batches.steps_per_epoch
    plan, done, step = [], run.done_in_epoch(), int(run.state.step)
    every = config.checkpoint_every_steps
    for epoch in range(int(run.state.epoch), config.epochs):
        calls = steps.call_sizes(done, steps_per_epoch, config.steps_per_loop, every, step=step)
        plan.append((epoch, calls))
        step, done = step + sum(calls), 0
    return plan


def _build_run(config, workdir, output_dir, images, strategy, stop_signals) -> _Run:
    """Builds every piece in the strategy's scope and restores the latest checkpoint, before
    anything is traced or written (a Keras 3 optimizer must be built before the first step,
    and before a restore, or its slots are silently not restored)."""
    distribute.per_replica_batch(strategy, config.batch_size)  # refuses an uneven split
    set_op_determinism(config.deterministic)
    train_images, test_images = images
    batches = make_train_batches(config, train_images)
    logging.info(
        "%d replica(s) (%s); global batch %d = %d per replica; %d training images, %d steps/epoch",
        strategy.num_replicas_in_sync,
        ", ".join(strategy.extended.worker_devices),
        config.batch_size,
        config.batch_size // strategy.num_replicas_in_sync,
        train_images.shape[0],
        batches.steps_per_epoch,
    )
    keras.utils.set_random_seed(config.seed)
    nets, optimizer = build_model_and_optimizer(
        config, strategy, steps_per_epoch=batches.steps_per_epoch
    )
    state = RunState(config, nets.autoencoder, optimizer, output_dir, resume_from=workdir)
    with strategy.scope():
        restored = state.restore()
    if not restored:
        _refuse_starting_over(workdir)
    distribute.check_workers_agree(strategy, int(state.step))

    workdir_lib.atomic_write_text(output_dir / "config.json", config_lib.to_json(config))
    summaries_lib.write_hparams(output_dir, config)  # the run is a dashboard row from now on
    if state.history:  # a crash may have come between the checkpoint and the history.csv write
        workdir_lib.write_csv(output_dir / "history.csv", state.history, HISTORY_FIELDS)
    eval_data = pipeline.eval_dataset(
        test_images,
        batch_size=config.batch_size,
        seed=config.seed,
        noise_factor=config.noise_factor,
        input_shape=models.input_shape(config),
    )
    return _Run(
        config=config,
        workdir=workdir,
        output_dir=output_dir,
        strategy=strategy,
        nets=nets,
        state=state,
        train_steps=steps.TrainSteps(
            strategy, nets.autoencoder, optimizer, config.batch_size, jit_compile=config.xla
        ),
        batches=batches,
        test_images=test_images,
        eval_data=eval_data,
        eval_data_distributed=distribute.distribute_dataset(strategy, eval_data),
        eval_sums=steps.make_eval_sums(strategy, nets.autoencoder),
        grid=plots_lib.first_examples(eval_data, GRID_IMAGES),
        summaries=summaries_lib.Summaries(output_dir, config),
        stop_signals=stop_signals,
        stop_requested=distribute.make_any_worker(strategy),  # a signal to one stops all
    )


def _refuse_starting_over(workdir: pathlib.Path) -> None:
    """A workdir with finished epochs but no checkpoint to resume them from is not trained
    again from scratch: that would replace its history and best weights."""
    held = [n for n in ("history.csv", "metrics.json", "best/checkpoint") if (workdir / n).exists()]
    if held:
        raise UserError(
            f"workdir {workdir} holds a run ({', '.join(held)}) but no checkpoint in"
            f" {workdir / 'checkpoints'} to resume it from; starting over would replace it:"
            " restore the checkpoints, move the workdir away or pick another --workdir"
        )


def _train_epoch(run: _Run, iterator, calls: list[int]) -> float:
    """Trains the rest of the current epoch, one `train_steps` call of `calls` at a time,
    checkpointing where `checkpoint_every_steps` says and stopping (with a checkpoint) when
    asked to. Returns the seconds it took."""
    state, steps_per_epoch = run.state, run.batches.steps_per_epoch
    every, done = run.config.checkpoint_every_steps, run.done_in_epoch()
    progress = EpochProgress(run.config, int(state.epoch), done, steps_per_epoch)
    for count in calls:
        run.summaries.train_graph(run.train_steps.function, iterator, tf.constant(count))
        losses = run.train_steps(iterator, count).numpy()
        _check_finite(losses, int(state.epoch), int(state.step), run.workdir)
        run.summaries.train_losses(int(state.step), losses)
        state.step.assign_add(count)
        state.epoch_loss_sum.assign_add(float(np.sum(losses, dtype=np.float64)))
        done += count
        progress.update(done, float(losses[-1]))
        mid_epoch = done < steps_per_epoch
        if every and int(state.step) % every == 0 and mid_epoch:
            state.save()
        if mid_epoch and run.stop_requested(run.stop_signals.received):
            state.save()
            raise _preempted(run.stop_signals, int(state.epoch), int(state.step))
    return progress.seconds()


def _end_epoch(run: _Run, trained_steps: int, train_seconds: float, started: float) -> None:
    """Evaluates, keeps the best model, asks early stopping, records the epoch (history,
    checkpoint, summaries, log), then stops with a checkpoint if a signal asked for it."""
    state, epoch = run.state, int(run.state.epoch)  # 0-based index of the epoch just trained
    val = steps.sums_to_means(run.eval_sums(run.eval_data_distributed))
    loss = float(state.epoch_loss_sum) / run.batches.steps_per_epoch
    logs = {"loss": loss, **{f"val_{name}": value for name, value in val.items()}}
    if not math.isfinite(val["loss"]):
        raise NonFiniteLossError(
            f"val_loss is {val['loss']} after epoch {epoch + 1}; the best checkpoint in"
            f" {run.workdir / 'best'} is intact; try a lower --config.learning_rate"
        )
    if state.best.is_improvement(logs):
        state.save_best(epoch + 1)
        state.best.commit(epoch, logs)  # only after the save succeeded
    if state.early_stopping:
        state.early_stopping.update(epoch, logs)  # stops the run by its stopped_epoch
        if state.early_stopping.restored_epoch() == epoch:  # Keras snapshots these weights
            state.save_final(epoch + 1)
    seconds = time.perf_counter() - started
    row = dict(
        epoch=epoch + 1,
        loss=loss,
        val_loss=val["loss"],
        seconds=round(seconds, 3),
        images_per_sec=round(trained_steps * run.config.batch_size / max(train_seconds, 1e-9), 1),
    )
    state.history.append(row)
    state.epoch.assign(epoch + 1)
    state.epoch_loss_sum.assign(0.0)
    state.save()
    workdir_lib.write_csv(run.output_dir / "history.csv", state.history, HISTORY_FIELDS)
    # Summaries and the log line come after the checkpoint and before a requested stop, so a
    # resumed run neither misses nor repeats this epoch in TensorBoard.
    _write_epoch_summaries(run, row, val)
    _log_epoch(run, row, val)
    if run.stop_requested(run.stop_signals.received):
        raise _preempted(run.stop_signals, epoch, int(state.step))


def _write_epoch_summaries(run: _Run, row: dict, val: dict) -> None:
    grid_inputs, grid_targets = run.grid
    train = {name: row[name] for name in ("loss", "seconds", "images_per_sec")}
    train["learning_rate"] = float(keras.ops.convert_to_numpy(run.state.optimizer.learning_rate))
    run.summaries.epoch_end(
        int(run.state.epoch),
        train=train,
        validation=val,
        grid_rows=(grid_targets, grid_inputs, run.state.model(grid_inputs, training=False)),
        model=run.state.model,
    )


def _log_epoch(run: _Run, row: dict, val: dict) -> None:
    best, stop = run.state.best, "  early stop" if run.state.stopped_early else ""
    logging.info(
        f"epoch {row['epoch']}/{run.config.epochs}  loss {row['loss']:.4f}  val_loss"
        f" {row['val_loss']:.4f}  val_psnr {val['psnr']:.2f} dB  {row['seconds']:.1f} s"
        f"  {row['images_per_sec']:.0f} img/s  best {best.best:.4f} (epoch {best.best_epoch + 1})"
        + stop
    )


def _finish(run: _Run) -> dict:
    """Keeps the final weights, scores them and the best ones on the test images, writes
    metrics.json, the hparams and the figures, and returns the metrics. Nothing here changes
    the training state, so a signal stops it at once: rerunning the command finishes it."""
    state = run.state
    run.summaries.close()
    with run.stop_signals.stopping_at_once(FINISH_INTERRUPTED):
        restored = state.early_stopping.restored_epoch() if state.early_stopping else None
        if restored is None:  # fit ends with the last epoch's weights
            state.save_final(int(state.epoch))
            final_epoch = int(state.epoch)
        else:  # or early stopping's best, saved when it took its snapshot
            final_epoch = state.restore_weights("final")
        best_epoch = state.best.best_epoch + 1
        final_test = None  # scored here only when they are not the best weights
        if final_epoch != best_epoch:
            final_test = steps.quality(run.eval_sums, run.eval_data_distributed)
        state.restore_weights("best")
        test = steps.test_metrics(
            run.strategy,
            run.state.model,
            run.eval_data_distributed,
            run.config.noise_factor,
            eval_sums=run.eval_sums,  # traced for validation already
        )
        # Every worker writes the Projector's checkpoint (a multi-worker save waits for all).
        code = _describe_code(run) if latent.has_code(run.nets) else None
        metrics = dict(best_epoch=best_epoch, best_val_loss=state.best.best, **test)
        metrics.update(epochs_completed=int(state.epoch), stopped_early=state.stopped_early)
        metrics["final"] = dict(epoch=final_epoch, test=final_test or test["test"])
        metrics["replicas"] = run.strategy.num_replicas_in_sync
        if code:
            metrics["code"] = code
        workdir_lib.write_json(run.output_dir / "metrics.json", metrics)
        logging.info("test (best model, epoch %d): %s", best_epoch, metrics["test"])
        if "noisy_input" in metrics:
            logging.info("test (noisy input): %s", metrics["noisy_input"])
        logging.info("weights fingerprint %s", weights_fingerprint(run.state.model))
        summaries_lib.write_hparams(run.output_dir, run.config, metrics)
        if run.output_dir == run.workdir:  # a non-chief worker's files are thrown away
            plots_lib.write_figures(run.config, run.workdir, run.state.model, run.eval_data)
    return metrics


def _describe_code(run: _Run) -> dict:
    """The best model's Projector files, code figures and probe (metrics.json's `code`)."""
    train_images, test_images = run.batches.images.numpy(), run.test_images.numpy()
    data = data_lib.FashionMNIST(train_images, run.labels[0], test_images, run.labels[1])
    result = latent.describe(run.nets, data, run.output_dir)
    logging.info("code probe: %s", result)
    del result["seconds"]  # metrics.json holds what the weights decide, equal on a rerun
    return result


FINISH_INTERRUPTED = (
    "stopped by {signal} after the last epoch, while scoring the test images; training is"
    " saved; rerun the same command to write metrics.json and the figures"
)


def weights_fingerprint(model: keras.Model) -> str:
    """A short hash of every weight's bytes: equal on every worker of a multi-worker run, and
    in two runs exactly when they trained bit-identically."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]


def set_op_determinism(enabled: bool) -> None:
    """Turns TensorFlow's op determinism on or off, as the config says. One process may run
    several configs (tests, studies), and once on, determinism would refuse XLA's
    non-deterministic MaxPool gradient."""
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:  # TensorFlow exports only the switch that turns it on; this is its internal twin
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
