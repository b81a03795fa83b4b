"""What the outer loop carries from one epoch to the next, saved with every checkpoint.

`LoopState` holds the history rows, the best-checkpoint decision and the early-stopping counters
(which also say whether early stopping has ended the run). It travels inside the latest
checkpoint as JSON (`to_checkpoint` / `from_checkpoint`), so a resumed run makes exactly the
decisions an uninterrupted one would.
"""

import dataclasses

from autoenc import callbacks
from autoenc.config import LOGGED_VALUES

HISTORY_FIELDS = ("epoch", "loss", "val_loss", "seconds", "images_per_sec")
# The direction of each metric the loop logs, by its name without `val_`, as Keras reads it
# from a compiled metric in 'auto' mode (the loop compiles none).
METRIC_DIRECTIONS = {
    name.removeprefix("val_"): "up" if direction == "max" else "down"
    for name, direction in LOGGED_VALUES.items()
    if name not in ("loss", "val_loss")
}


def make_early_stopping(config) -> callbacks.EarlyStopping | None:
    """`config.early_stopping` as a `callbacks.EarlyStopping`, or None when it is off."""
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


@dataclasses.dataclass
class LoopState:
    """The host side of a run's state (the weights and counters are TensorFlow variables).

    Attributes:
        history: one dict per finished epoch, with `HISTORY_FIELDS`.
        best: which epoch's weights are the best so far on val_loss (`ModelCheckpoint`'s rule).
        early_stopping: the stopping rule and its counters; None when the config turns it off.
    """

    history: list[dict]
    best: callbacks.BestCheckpoint
    early_stopping: callbacks.EarlyStopping | None

    @property
    def stopped_early(self) -> bool:
        """Whether early stopping has ended the run (it records the epoch it stopped at, as
        Keras' `stopped_epoch`, which is never epoch 0)."""
        return bool(self.early_stopping and self.early_stopping.stopped_epoch > 0)

    @classmethod
    def fresh(cls, config) -> "LoopState":
        """The state before the first epoch."""
        return cls(
            history=[],
            best=callbacks.BestCheckpoint(monitor="val_loss", mode="auto"),
            early_stopping=make_early_stopping(config),
        )

    @classmethod
    def from_checkpoint(cls, saved: dict, config) -> "LoopState":
        """The state `to_checkpoint` saved ({} for a run without a checkpoint yet)."""
        state = cls.fresh(config)
        state.history = list(saved.get("history", []))
        if "best" in saved:
            state.best.load_state_dict(saved["best"])
        if state.early_stopping and "early_stopping" in saved:
            state.early_stopping.load_state_dict(saved["early_stopping"])
        return state

    def to_checkpoint(self) -> dict:
        """The state as a JSON-serialisable dict, for `from_checkpoint`."""
        saved = dict(history=self.history, best=self.best.state_dict())
        if self.early_stopping:
            saved["early_stopping"] = self.early_stopping.state_dict()
        return saved
