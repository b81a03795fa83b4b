"""A training run's whole state, saved and restored as one object: `RunState`.

Everything that decides the rest of a run (weights, optimizer slots, step and epoch counters,
this epoch's loss sum, the history, the best value and early stopping's counters) travels in the
latest checkpoint, `WORKDIR/checkpoints`, the host-side part as a JSON string variable, so a
resumed run makes exactly the decisions an uninterrupted one would. `WORKDIR/best` holds the
best weights as Keras' `ModelCheckpoint(save_best_only=True)` keeps them, `WORKDIR/final` those
`fit` would end with. TensorFlow rewrites a checkpoint's pointer file only after its files, so a
kill during a save leaves the previous checkpoint in force.
"""

import json
import pathlib
import re
import shutil

import tensorflow as tf
from absl import logging

from autoenc import callbacks
from autoenc import config as config_lib
from autoenc.errors import UserError

HISTORY_FIELDS = ("epoch", "loss", "val_loss", "seconds", "images_per_sec")


def make_early_stopping(config) -> callbacks.EarlyStopping | None:
    """`config.early_stopping` as a `callbacks.EarlyStopping`, or None when it is off. Mode
    'auto' takes the monitored value's direction from `config.LOGGED_VALUES`, as Keras' 'auto'
    takes it from the compiled metric."""
    es = config.early_stopping
    if not es.enabled:
        return None
    return callbacks.EarlyStopping(
        monitor=es.monitor,
        min_delta=es.min_delta,
        patience=es.patience,
        mode=config_lib.LOGGED_VALUES[es.monitor] if es.mode == "auto" else es.mode,
        baseline=es.baseline,
        restore_best_weights=es.restore_best_weights,
        start_from_epoch=es.start_from_epoch,
    )


GLOB_CHARACTERS = "[]*?"


def checkpoint_path_problem(workdir) -> str | None:
    """Why `workdir` cannot hold checkpoints, or None: TensorFlow finds and prunes checkpoint
    files by glob patterns built from the path, so `[`, `]`, `*` or `?` anywhere in it would
    lose them (none found on resume, none pruned)."""
    absolute = str(pathlib.Path(workdir).expanduser().absolute())
    found = sorted({c for c in absolute if c in GLOB_CHARACTERS})
    if not found:
        return None
    return (
        f"--workdir={workdir}: its path holds {' '.join(found)}, which TensorFlow's checkpoint"
        " lookup reads as a glob pattern; pick a path without [ ] * ? (e.g. runs/lr_0.1)"
    )


def latest_checkpoint(directory) -> str | None:
    """The newest checkpoint in `directory` (None if there is none), or a one-line `UserError`
    when its `checkpoint` pointer file cannot be read or names no checkpoint whose files exist
    (where TensorFlow would silently answer None and a run would start over)."""
    pointer = pathlib.Path(directory) / "checkpoint"
    try:
        path = tf.train.latest_checkpoint(str(directory))
    except (ValueError, tf.errors.OpError) as e:
        raise UserError(f"cannot read {pointer}: {str(e).splitlines()[0]}") from None
    if path is None and pointer.exists():
        raise UserError(
            f"cannot read {pointer}: it names no checkpoint whose files exist; restore the"
            " checkpoint files or move the workdir away"
        )
    return path


class RunState:
    """The model, its optimizer and the loop's counters and decisions, with their checkpoints:
    `step`, `epoch` and `epoch_loss_sum` (variables), `history` (rows of `HISTORY_FIELDS`),
    `best` (`ModelCheckpoint`'s rule on val_loss) and `early_stopping` (None when off).

    Make it outside the strategy's scope (its counters are plain variables the host reads) and
    `restore()` it inside, after the optimizer is built, or the optimizer's slots are silently
    not restored.
    """

    def __init__(self, config, model, optimizer, output_dir, *, resume_from=None):
        """Saves into `output_dir`; resumes from `resume_from`'s latest checkpoint (default
        `output_dir`; a non-chief worker saves to a temporary directory but resumes from the
        chief's)."""
        self.model, self.optimizer = model, optimizer
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.epoch_loss_sum = tf.Variable(0.0, dtype=tf.float64, trainable=False)
        self._host = tf.Variable("{}", dtype=tf.string, trainable=False)
        self.history: list[dict] = []
        self.best = callbacks.BestCheckpoint(monitor="val_loss", mode="min")
        self.early_stopping = make_early_stopping(config)
        output_dir = pathlib.Path(output_dir)
        self._resume_root = pathlib.Path(resume_from or output_dir)
        self._checkpoint = tf.train.Checkpoint(
            model=model,
            optimizer=optimizer,
            step=self.step,
            epoch=self.epoch,
            epoch_loss_sum=self.epoch_loss_sum,
            host=self._host,
        )
        self._latest = _manager(self._checkpoint, output_dir / "checkpoints", 2)
        self._weights = {
            kind: _manager(tf.train.Checkpoint(model=model), output_dir / kind, 1)
            for kind in ("best", "final")
        }

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping has ended the run (Keras' `stopped_epoch` is never 0 once it
        has)."""
        return bool(self.early_stopping and self.early_stopping.stopped_epoch > 0)

    def restore(self) -> bool:
        """Restores the latest checkpoint, if there is one; returns whether there was.

        Raises:
            UserError: the checkpoint cannot be read or does not fit the model.
        """
        path = latest_checkpoint(self._resume_root / "checkpoints")
        if not path:
            return False
        try:
            self._checkpoint.restore(path).assert_existing_objects_matched()
            host = json.loads(self._host.numpy().decode())
            self.history = list(host.get("history", []))
            self.best.load_state_dict(host["best"])
            if self.early_stopping:
                self.early_stopping.load_state_dict(host["early_stopping"])
        except (tf.errors.OpError, AssertionError, ValueError, KeyError, TypeError) as e:
            raise UserError(f"cannot resume from {path}: {str(e).splitlines()[0]}") from None
        logging.info("Resuming from %s (epoch %d, step %d)", path, int(self.epoch), int(self.step))
        return True

    def save(self) -> None:
        """Saves everything as the latest checkpoint, numbered by the step."""
        host = dict(history=self.history, best=self.best.state_dict())
        if self.early_stopping:
            host["early_stopping"] = self.early_stopping.state_dict()
        self._host.assign(json.dumps(host))
        # Numbered explicitly: the managers would otherwise share the checkpoint's save counter.
        _save(self._latest, int(self.step))

    def save_best(self, epoch: int) -> None:
        """Saves the weights as the best so far (`epoch` 1-based names the files)."""
        _save(self._weights["best"], epoch)

    def save_final(self, epoch: int) -> None:
        """Saves the weights as those Keras' `fit` would leave in the model (`epoch` 1-based:
        the epoch they are from)."""
        _save(self._weights["final"], epoch)

    def restore_weights(self, kind: str) -> int:
        """Loads the 'best' or 'final' weights into the model; returns their 1-based epoch. A
        non-chief worker that saved none since it resumed reads the chief's (the same weights)."""
        manager = self._weights[kind]
        path = manager.latest_checkpoint or latest_checkpoint(self._resume_root / kind)
        manager.checkpoint.restore(path).assert_existing_objects_matched()
        return int(path.rsplit("-", 1)[1])


def _manager(checkpoint, directory: pathlib.Path, max_to_keep: int) -> tf.train.CheckpointManager:
    """A `CheckpointManager`; it reads the directory's pointer file, so a damaged one is a
    one-line error here."""
    latest_checkpoint(directory)
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)


def _save(manager: tf.train.CheckpointManager, number: int) -> None:
    """Saves checkpoint `number`; on a full disk, removes its partial files and says so in one
    line (the pointer file still names the previous checkpoint)."""
    try:
        manager.save(checkpoint_number=number)
    except (OSError, tf.errors.OpError) as e:
        for partial in pathlib.Path(manager.directory).glob(f"ckpt-{number}_temp*"):
            shutil.rmtree(partial, ignore_errors=True)
        reason = e.strerror if isinstance(e, OSError) else str(e).splitlines()[0]
        reason = re.sub(r"\{\{.*?\}\}|\s*\[Op:\w+\]", "", reason).rsplit("; ", 1)[-1]
        raise UserError(
            f"cannot write {manager.directory}/ckpt-{number}: {reason}; the previous"
            " checkpoint is intact: rerun the same command once there is room"
        ) from None
