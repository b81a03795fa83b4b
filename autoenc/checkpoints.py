"""A run's state on disk: the latest checkpoint (to resume) and the best weights.

`RunCheckpoints` holds three `tf.train.CheckpointManager`s. The latest checkpoint has everything
that decides the rest of a run: weights, optimizer slots, step and epoch counters, and the
host-side state (history, best value, early-stopping counters) as a JSON string variable, so
all of it restores atomically from one file set. The best checkpoint has the model weights
only, like Keras' `ModelCheckpoint(save_best_only=True, save_weights_only=True)`; the final
checkpoint has the weights Keras' `fit` would leave in the model when training ends (the last
epoch's or, with `early_stopping.restore_best_weights`, early stopping's best). TensorFlow
writes each checkpoint's files before it rewrites the small `checkpoint` pointer file, so a kill
during a save leaves the previous checkpoint in force.
"""

import json
import pathlib

import keras
import tensorflow as tf
from absl import logging

from autoenc import config as config_lib
from autoenc import models
from autoenc import workdir as workdir_lib
from autoenc.errors import UsageError, UserError

# The config fields that decide the noisy test images a run was scored on (the noise is keyed
# on the seed and the batch index): what figures and evaluation must share with the run too.
TEST_NOISE_FIELDS = ("noise_factor", "seed", "batch_size")


def model_fields(config) -> tuple[str, ...]:
    """The config fields that decide the weights' shapes: the model and its own fields."""
    return ("model", *config_lib.MODEL_FIELDS.get(config.model, ()))


class RunState:
    """Counters and host-side state that travel in the checkpoint with the weights.

    Plain (not mirrored) variables: create them outside the strategy scope so the host loop can
    read them as numbers.
    """

    def __init__(self):
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)  # optimizer steps done
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # epochs completed
        # Sum of this epoch's step losses, so a mid-epoch resume reports the same epoch loss.
        self.epoch_loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self.host = tf.Variable("{}", dtype=tf.string, trainable=False)

    def trackables(self) -> dict:
        return dict(
            step=self.step, epoch=self.epoch, epoch_loss_sum=self.epoch_loss_sum, host=self.host
        )

    def load_host(self) -> dict:
        """The host-side state saved with the last checkpoint ({} for a fresh run)."""
        return json.loads(self.host.numpy().decode())


class RunCheckpoints:
    """The latest and the best checkpoint of one workdir."""

    def __init__(
        self,
        workdir: pathlib.Path,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        state: RunState,
        *,
        resume_from: pathlib.Path | None = None,
    ):
        """Saves into `workdir`; resumes from `resume_from`'s latest checkpoint (default
        `workdir`; a non-chief worker saves to a temporary directory but resumes from the
        chief's)."""
        self.state = state
        self._resume_dir = pathlib.Path(resume_from or workdir) / "checkpoints"
        self.best_dir = pathlib.Path(workdir) / "best"
        self._latest_checkpoint = tf.train.Checkpoint(
            model=model, optimizer=optimizer, **state.trackables()
        )
        self._latest = tf.train.CheckpointManager(
            self._latest_checkpoint, pathlib.Path(workdir) / "checkpoints", max_to_keep=2
        )
        self._best_checkpoint = tf.train.Checkpoint(model=model)
        self._best = tf.train.CheckpointManager(self._best_checkpoint, self.best_dir, max_to_keep=1)
        self._final = tf.train.CheckpointManager(
            tf.train.Checkpoint(model=model), pathlib.Path(workdir) / "final", max_to_keep=1
        )

    def restore_latest(self) -> bool:
        """Restores the latest checkpoint if there is one; call inside the strategy scope,
        after the optimizer is built (else its slots are silently not restored).

        Returns:
            Whether a checkpoint was restored.

        Raises:
            UserError: the checkpoint cannot be read or does not fit the model.
        """
        path = tf.train.latest_checkpoint(str(self._resume_dir))
        if not path:
            return False
        try:
            self._latest_checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            raise UserError(f"cannot resume from {path}: {str(e).splitlines()[0]}") from None
        logging.info(
            "Resuming from %s (epoch %d, step %d)",
            path,
            int(self.state.epoch),
            int(self.state.step),
        )
        return True

    def save_latest(self, host: dict) -> None:
        """Saves everything, with `host` as the host-side state, numbered by the step."""
        self.state.host.assign(json.dumps(host))
        # Numbered explicitly: the two managers would otherwise share one save counter.
        self._latest.save(checkpoint_number=int(self.state.step))

    def save_best(self, epoch: int) -> None:
        """Saves the model weights as the best so far (`epoch` 1-based names the files)."""
        self._best.save(checkpoint_number=epoch)

    def restore_best(self) -> bool:
        """Loads the best weights into the model; False if no best was saved yet."""
        path = self._best.latest_checkpoint
        if not path:
            return False
        self._best_checkpoint.restore(path).assert_existing_objects_matched()
        return True

    def save_final(self, epoch: int) -> None:
        """Saves the model weights as the final ones: those Keras' `fit` would leave in the
        model (`epoch` 1-based: the epoch they are from)."""
        self._final.save(checkpoint_number=epoch)

    def restore_final(self) -> int:
        """Loads the final weights into the model and returns their 1-based epoch."""
        path = self._final.latest_checkpoint
        self._final.checkpoint.restore(path).assert_existing_objects_matched()
        return int(path.rsplit("-", 1)[1])


def best_checkpoint_path(workdir, weights: str = "best") -> str:
    """The path prefix of a workdir's best checkpoint (or, with `weights="final"`, of its
    final weights); a one-line `UserError` if there is none."""
    directory = pathlib.Path(workdir) / weights
    path = tf.train.latest_checkpoint(str(directory)) if directory.is_dir() else None
    if path is None:
        remedy = "train first (--mode=train, the default)"
        if weights == "final":
            remedy = "a run keeps its final weights when its last epoch ends; finish it first"
        raise UserError(f"no {weights} checkpoint in {directory}: {remedy}")
    return path


def load_best_model(
    config,
    workdir,
    *,
    also: tuple[str, ...] = (),
    hint: str = "",
    weights: str = "best",
) -> models.Autoencoder:
    """Builds the model `config` describes and loads a workdir's best weights into it (or its
    final weights, those training ended with, with `weights="final"`).

    The encoder and decoder share the autoencoder's layers, so all three carry the best
    weights. Used by everything that applies a trained model (figures, eval, export, apply).

    Args:
        config: the config the run was trained with.
        workdir: the run's work directory.
        also: config fields that must equal the run's besides the model's own
            (`TEST_NOISE_FIELDS` when the noisy test images matter too).
        hint: appended to the refusal, e.g. which flags to use instead.
        weights: "best" (WORKDIR/best) or "final" (WORKDIR/final).

    Raises:
        UserError: the workdir has no such checkpoint, or it cannot be restored.
        UsageError: `config` differs from the run's in one of `fields`.
    """
    workdir = pathlib.Path(workdir)
    best = best_checkpoint_path(workdir, weights)
    differing = workdir_lib.saved_config_differences(workdir, config) or []
    differing = [field for field in differing if field in (*model_fields(config), *also)]
    if differing:
        raise UsageError(
            f"workdir {workdir} holds a run with a different config"
            f" (differs in: {', '.join(differing)}); pass the --config it was trained with{hint}"
        )
    nets = models.build(config)
    try:
        tf.train.Checkpoint(model=nets.autoencoder).restore(best).assert_existing_objects_matched()
    except (tf.errors.OpError, AssertionError, ValueError) as e:
        raise UserError(f"cannot restore {best}: {str(e).splitlines()[0]}") from None
    return nets
