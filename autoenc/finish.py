"""The end of a training run, after its last epoch: which weights it ends with, and its results.

`finish(run)` keeps the final weights (those Keras' `fit` would leave in the model: the last
epoch's, or early stopping's best with `restore_best_weights`) in `WORKDIR/final`, scores them
and the best checkpoint's on the test images, and writes metrics.json, the hparams and the
figures. None of it changes the training state, so a signal stops it at once and rerunning
the command does it again.
"""

import hashlib

import keras
import numpy as np
from absl import logging

from autoenc import plots as plots_lib
from autoenc import steps
from autoenc import summaries as summaries_lib
from autoenc import workdir as workdir_lib


def finish(run) -> dict:
    """Keeps the final weights, scores them and the best ones on the test images, writes
    metrics.json, the hparams and the figures, and returns the metrics. Nothing here changes
    the training state, so a signal stops it at once: rerunning the command finishes it."""
    run.summaries.close()
    with run.stop_signals.stopping_at_once(FINISH_INTERRUPTED):
        final_epoch = _keep_final_weights(run)
        best_epoch = run.loop.best.best_epoch + 1
        # The final weights are scored only when they are not the best ones.
        final_test = None
        if final_epoch != best_epoch:
            final_test = steps.quality(run.eval_sums, run.eval_data_distributed)
        run.checkpoints.restore_best()
        test = steps.test_metrics(
            run.strategy,
            run.model,
            run.eval_data_distributed,
            run.config.noise_factor,
            eval_sums=run.eval_sums,  # traced for validation already
        )
        metrics = dict(
            best_epoch=best_epoch,
            best_val_loss=run.loop.best.best,
            epochs_completed=run.epoch,
            stopped_early=run.loop.stopped_early,
            **test,
            final=dict(epoch=final_epoch, test=final_test or test["test"]),
            replicas=run.strategy.num_replicas_in_sync,
        )
        workdir_lib.write_json(run.output_dir / "metrics.json", metrics)
        logging.info("test (best model, epoch %d): %s", best_epoch, metrics["test"])
        if "noisy_input" in metrics:
            logging.info("test (noisy input): %s", metrics["noisy_input"])
        logging.info("weights fingerprint %s", weights_fingerprint(run.model))
        summaries_lib.write_hparams(run.output_dir, run.config, metrics)
        if run.output_dir == run.workdir:  # a non-chief worker's figures would be thrown away
            plots_lib.write_figures(run.config, run.workdir, run.model, run.eval_data)
    return metrics


FINISH_INTERRUPTED = (
    "stopped by {signal} after the last epoch, while scoring the test images; training is"
    " saved; rerun the same command to write metrics.json and the figures"
)


def _keep_final_weights(run) -> int:
    """Saves or loads the weights Keras' `fit` would leave in the model when training ends:
    the last epoch's, or early stopping's best epoch's with `restore_best_weights` (saved when
    early stopping took its snapshot). Returns their 1-based epoch."""
    early_stopping = run.loop.early_stopping
    restored = early_stopping.restored_epoch() if early_stopping else None
    if restored is None:
        run.checkpoints.save_final(run.epoch)
        return run.epoch
    return run.checkpoints.restore_final()


def weights_fingerprint(model: keras.Model) -> str:
    """A short hash of every weight's bytes: equal on every worker of a multi-worker run, and
    in two runs exactly when they trained bit-identically."""
    digest = hashlib.sha256()
    for weight in model.get_weights():
        digest.update(np.ascontiguousarray(weight).tobytes())
    return digest.hexdigest()[:16]
