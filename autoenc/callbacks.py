"""End-of-epoch decisions for the custom training loop: early stopping and best-checkpoint choice.

This module owns the pure-Python bookkeeping that `keras.callbacks.EarlyStopping` and
`keras.callbacks.ModelCheckpoint(save_best_only=True)` perform, so our own loop can make the same
decisions without a `keras.Model` attached (the comparisons they share are in `autoenc.monitor`). It
mirrors the semantics of the installed Keras 3.15 (TensorFlow backend) exactly, including its
quirks: comparisons run in the dtype TensorFlow would give the operands (a Python float is compared
as float32), 'auto' mode only knows `loss` unless metric directions are supplied, and a NaN can
become the best value. It does no file I/O and touches no weights; it only says which epoch to stop
at, save at and restore, and it can persist that state in a checkpoint as strict JSON.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

from autoenc.errors import UserError
from autoenc.monitor import MonitorDecision, decode_number, encode_number, read_int


class EarlyStopping(MonitorDecision):
    """Decide when to stop training and which epoch's weights to restore.

    Mirrors `keras.callbacks.EarlyStopping` in Keras 3.15. A fresh instance is in the state Keras
    has right after `on_train_begin`. `wait`, `best`, `best_epoch` and `stopped_epoch` mean what
    they mean in Keras; `best_weights_epoch` is the epoch whose weights Keras would hold in
    `best_weights` (None while it holds none).
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
        *,
        metric_directions: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the stopping rule.

        Args:
            monitor: Key of the value in `logs` to watch.
            min_delta: Smallest change that counts as an improvement; its sign is ignored.
            patience: Epochs without improvement before stopping.
            mode: 'min', 'max' or 'auto'; an unknown mode warns and falls back to 'auto'.
            baseline: A value to beat; until it is beaten, improvements do not reset `wait`.
            restore_best_weights: Whether the best epoch's weights are restored at the end.
            start_from_epoch: Epochs (0-based indices below this) that are not monitored.
            metric_directions: Maps a metric name (without `val_`) to 'up' or 'down', standing
                in for the `_direction` of the compiled metrics Keras consults in 'auto' mode.

        Raises:
            ValueError: In 'auto' mode the direction of `monitor` cannot be determined.
        """
        super().__init__(monitor, mode, min_delta, metric_directions)
        self.patience = patience
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best: Any = None
        # Keras initialises best_epoch to 0, not None, in on_train_begin.
        self.best_epoch = 0
        self.best_weights_epoch: int | None = None

    def update(self, epoch: int, logs: Mapping[str, Any] | None) -> bool:
        """Record one finished epoch, as `EarlyStopping.on_epoch_end` does.

        Args:
            epoch: The 0-based index of the epoch that just ended.
            logs: The epoch's metrics; a missing (or None) monitor warns and changes nothing.

        Returns:
            True if Keras would set `model.stop_training` at this epoch.
        """
        current = (logs or {}).get(self.monitor)
        if current is None:
            # Keras warns even during the warm-up epochs, so check this first.
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not "
                f"available. Available metrics are: {','.join(logs or {})}",
                stacklevel=2,
            )
            return False
        if epoch < self.start_from_epoch:
            return False
        if self.restore_best_weights and self.best_weights_epoch is None:
            # Keras snapshots the first monitored epoch unconditionally.
            self.best_weights_epoch = epoch
            self.best_epoch = epoch

        # Counted before the comparison, so an improvement that does not beat the baseline
        # still uses up patience.
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights_epoch = epoch
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            # An improving epoch never stops training, even with patience used up.
            return False

        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            return True
        return False

    def restored_epoch(self) -> int | None:
        """Return the epoch whose weights Keras' `on_train_end` would restore.

        Keras restores whenever `restore_best_weights` is set and it holds a snapshot, whether
        or not training stopped early; it holds none only if no epoch was ever monitored.

        Returns:
            The epoch index, or None if the final weights are kept.
        """
        if not self.restore_best_weights:
            return None
        return self.best_weights_epoch

    def state_dict(self) -> dict[str, Any]:
        """Return the mutable state as a strict-JSON-serialisable dict.

        `best` is stored as `{"type": ..., "value": ...}`: the type ('float', 'int', 'bool', or a
        numpy dtype such as 'numpy.float64') decides how later comparisons are made, and non-finite
        floats are spelled "nan", "inf" or "-inf", so `json.dumps(..., allow_nan=False)` works.

        Returns:
            A dict for `load_state_dict`.
        """
        return {
            "wait": self.wait,
            "best": encode_number(self.best),
            "best_epoch": self.best_epoch,
            "stopped_epoch": self.stopped_epoch,
            "best_weights_epoch": self.best_weights_epoch,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore state saved by `state_dict`, e.g. after a JSON round trip.

        The configuration (monitor, mode, patience, ...) comes from the constructor, not from
        `state`, and should match the run that saved it.

        Args:
            state: A dict produced by `state_dict`.

        Raises:
            UserError: `state` is missing a key or holds a value of the wrong kind.
        """
        if "best" not in state:
            raise UserError("Corrupt callback state: missing 'best'.")
        wait = read_int(state, "wait")
        best_epoch = read_int(state, "best_epoch")
        stopped_epoch = read_int(state, "stopped_epoch")
        best_weights_epoch = read_int(state, "best_weights_epoch", optional=True)
        best = decode_number(state["best"])
        self.wait = wait
        self.best = best
        self.best_epoch = best_epoch
        self.stopped_epoch = stopped_epoch
        self.best_weights_epoch = best_weights_epoch


class BestCheckpoint(MonitorDecision):
    """Decide at which epochs to save a best-so-far checkpoint.

    Mirrors the decision of `keras.callbacks.ModelCheckpoint(save_best_only=True)` in Keras
    3.15, split in two so a failed save records nothing: call `is_improvement`, save, then
    `commit`. (Keras records the new best before it saves.)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        initial_value_threshold: float | None = None,
        *,
        metric_directions: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the rule.

        Args:
            monitor: Key of the value in `logs` to watch.
            mode: 'min', 'max' or 'auto'; an unknown mode warns and falls back to 'auto'.
            initial_value_threshold: Starting `best`; nothing is saved until it is beaten.
            metric_directions: As for `EarlyStopping`.

        Raises:
            ValueError: In 'auto' mode the direction of `monitor` cannot be determined.
        """
        super().__init__(monitor, mode, 0, metric_directions)
        self.best: Any = initial_value_threshold
        self.best_epoch: int | None = None

    def _current(self, logs: Mapping[str, Any] | None, *, warn: bool) -> Any:
        """Return the monitored value, or None when Keras would save without comparing."""
        current = (logs or {}).get(self.monitor)
        if current is None:
            if warn:
                warnings.warn(
                    f"Can save best model only with {self.monitor} available.", stacklevel=3
                )
            return None
        if hasattr(current, "shape") and len(current.shape) > 0:
            if warn:
                warnings.warn(
                    f"Can save best model only when `monitor` is a scalar value. Received: "
                    f"{current}. Falling back to `save_best_only=False`.",
                    stacklevel=3,
                )
            return None
        return current

    def is_improvement(self, logs: Mapping[str, Any] | None) -> bool:
        """Return whether Keras would save a checkpoint for these logs; changes no state.

        Keras also saves, after a warning, when the monitor is missing or not a scalar: it
        falls back to saving every epoch rather than skipping. That is mirrored here.

        Args:
            logs: The epoch's metrics.

        Returns:
            True if a checkpoint should be saved now.
        """
        current = self._current(logs, warn=True)
        if current is None:
            return True
        return self._is_improvement(current, self.best)

    def commit(self, epoch: int, logs: Mapping[str, Any] | None) -> None:
        """Record the epoch's value as the new best once its checkpoint has been saved.

        When the monitor is missing or not a scalar, the save Keras makes is not a best and
        nothing is recorded.

        Args:
            epoch: The 0-based index of the epoch that was saved.
            logs: The same metrics that were passed to `is_improvement`.

        Raises:
            ValueError: The logged value is not an improvement, so nothing should have been
                saved as a best.
        """
        current = self._current(logs, warn=False)
        if current is None:
            return
        if not self._is_improvement(current, self.best):
            raise ValueError(
                f"Epoch {epoch}: {self.monitor}={current} is not an improvement on {self.best}."
            )
        self.best = current
        self.best_epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """Return the state as a strict-JSON-serialisable dict (`best` encoded as for
        `EarlyStopping.state_dict`).

        Returns:
            A dict for `load_state_dict`.
        """
        return {"best": encode_number(self.best), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore state saved by `state_dict`.

        Args:
            state: A dict produced by `state_dict`.

        Raises:
            UserError: `state` is missing a key or holds a value of the wrong kind.
        """
        if "best" not in state:
            raise UserError("Corrupt callback state: missing 'best'.")
        best_epoch = read_int(state, "best_epoch", optional=True)
        self.best = decode_number(state["best"])
        self.best_epoch = best_epoch
