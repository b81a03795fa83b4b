"""The training loop's stopping rules, as Keras 3.15 decides them on the same logs.

`EarlyStopping` (when to stop, whose weights a run ends with) and `BestCheckpoint` (which epochs to
save as best) decide as `keras.callbacks.EarlyStopping` and `ModelCheckpoint(save_best_only=True)`,
without a model or I/O. A value is read as `float(value)`, as `fit` hands it over, and compared as
a Python float: values only float64 tells apart tie in Keras' float32 comparisons, not here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from autoenc.errors import UserError


def _direction(owner: str, monitor: str, mode: str) -> str:
    """Return 'min' or 'max' as Keras' `MonitorCallback` picks it for a model without compiled
    metrics: 'auto' means 'min' for a loss and cannot decide anything else."""
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{owner} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=4)
        mode = "auto"
    if mode == "auto" and monitor.removeprefix("val_") != "loss":
        raise ValueError(
            f"{owner} received monitor={monitor!r}, but cannot determine whether that metric "
            "should be maximized or minimized. Pass mode='max' or mode='min'."
        )
    return "min" if mode == "auto" else mode


def _to_json(value: float | None) -> float | str | None:
    return value if value is None or math.isfinite(value) else str(value)  # 'nan', 'inf', '-inf'


def _load(state: Mapping, key: str, kind: type, optional: bool = False) -> Any:
    """Return `state[key]` as `kind` (or None if `optional`); raise UserError if it is not one."""
    if key not in state:
        raise UserError(f"corrupt stopping-rule state in the checkpoint: no {key!r}")
    value = state[key]
    if isinstance(value, Mapping) and kind is float:
        # A checkpoint may hold the typed form {"type": ..., "value": ...}; same number.
        value = value.get("value")
    if value is None and optional:
        return None
    if kind is float and (
        value in ("nan", "inf", "-inf") if isinstance(value, str) else type(value) in (int, float)
    ):
        return float(value)
    if kind is int and type(value) is int:
        return value
    raise UserError(f"corrupt stopping-rule state in the checkpoint: {key}={value!r}")


class _Monitor:
    """What both rules share with Keras' `MonitorCallback`: the direction and `min_delta`."""

    # The state saved with the loop's checkpoint: attribute -> (type, whether it may be None).
    _STATE: dict[str, tuple[type, bool]] = {}
    _MISSING = ""  # Keras' warning when the monitor is not in the logs

    def __init__(self, monitor: str, mode: str, min_delta: float):
        self.monitor = monitor
        self.direction = _direction(type(self).__name__, monitor, mode)
        # Keras keeps |min_delta|, subtracted towards 'better': its sign is ignored.
        self.min_delta = abs(min_delta) if self.direction == "max" else -abs(min_delta)

    def _current(self, logs: Mapping | None) -> float | None:
        """Return the monitored value as a float, or None after warning when it is absent."""
        value = (logs or {}).get(self.monitor)
        if value is None:
            available = ",".join(logs or {})
            warnings.warn(
                self._MISSING.format(monitor=self.monitor, available=available), stacklevel=3
            )
            return None
        return float(value)

    def _is_improvement(self, value: float, reference: float | None) -> bool:
        # Anything beats None, NaN included; nothing then beats a NaN best (as in Keras).
        if reference is None:
            return True
        shifted = value - self.min_delta
        return shifted > reference if self.direction == "max" else shifted < reference

    def state_dict(self) -> dict[str, Any]:
        """Return the state `load_state_dict` restores, as strict JSON."""
        return {key: _to_json(getattr(self, key)) for key in self._STATE}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict`'s values (not the configuration, which the constructor sets); a
        UserError, changing nothing, if a value is missing or of the wrong kind."""
        loaded = {key: _load(state, key, *kind) for key, kind in self._STATE.items()}
        for key, value in loaded.items():
            setattr(self, key, value)


class EarlyStopping(_Monitor):
    """When to stop training and which epoch's weights to end with: `keras.callbacks.EarlyStopping`.

    A fresh instance is in Keras' state after `on_train_begin`; `wait`, `best`, `best_epoch` and
    `stopped_epoch` mean what they mean there.
    """

    _STATE = dict(
        wait=(int, False), best=(float, True), best_epoch=(int, False), stopped_epoch=(int, False)
    )
    _MISSING = (
        "Early stopping conditioned on metric `{monitor}` which is not available. "
        "Available metrics are: {available}"
    )

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0.0,
        patience: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        """Configure the rule with Keras' arguments, which mean what they mean there (the sign of
        `min_delta` is ignored; an unknown `mode` warns and falls back to 'auto')."""
        super().__init__(monitor, mode, min_delta)
        self.patience = patience
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        self.best_epoch = 0  # Keras' start, not None: 0 until an epoch is monitored

    def update(self, epoch: int, logs: Mapping[str, Any] | None) -> bool:
        """Record a finished (0-based) epoch as Keras' `on_epoch_end` does; a missing monitor
        warns (even while warming up) and changes nothing.

        Returns:
            True when Keras would set `stop_training`; `stopped_epoch` is then this epoch (never
            0: the first monitored epoch always improves on None).
        """
        current = self._current(logs)
        if current is None or epoch < self.start_from_epoch:
            return False
        # Counted before comparing: an improvement short of the baseline still uses patience.
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best, self.best_epoch = current, epoch
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return False  # an improving epoch never stops, whatever the wait
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def restored_epoch(self) -> int | None:
        """Return the epoch whose weights Keras' `fit` ends with, or None for the last epoch's:
        with `restore_best_weights`, the best epoch's, whether or not training stopped early."""
        if self.restore_best_weights and self.best is not None:
            return self.best_epoch
        return None


class BestCheckpoint(_Monitor):
    """Which epochs to save as best: `keras.callbacks.ModelCheckpoint(save_best_only=True)`.

    Keras records a new best before saving; here `is_improvement` decides, the caller saves, and
    `commit` records it, so a failed save records nothing. Improvement is strict.
    """

    _STATE = dict(best=(float, True), best_epoch=(int, True))
    _MISSING = "Can save best model only with {monitor} available."

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        initial_value_threshold: float | None = None,
    ) -> None:
        """Configure the rule with Keras' arguments; the rest as for `EarlyStopping`."""
        super().__init__(monitor, mode, 0.0)
        self.best = None if initial_value_threshold is None else float(initial_value_threshold)
        self.best_epoch: int | None = None

    def is_improvement(self, logs: Mapping[str, Any] | None) -> bool:
        """Return whether Keras would save for these logs, changing nothing. A missing monitor
        warns and saves, as Keras falls back to saving every epoch."""
        current = self._current(logs)
        return current is None or self._is_improvement(current, self.best)

    def commit(self, epoch: int, logs: Mapping[str, Any] | None) -> None:
        """Record the epoch's value as the best once its checkpoint is saved (a save made for a
        missing monitor records nothing); a ValueError if it is no improvement."""
        if (logs or {}).get(self.monitor) is None:
            return
        current = float(logs[self.monitor])
        if not self._is_improvement(current, self.best):
            raise ValueError(f"epoch {epoch}: {self.monitor}={current} does not beat {self.best}")
        self.best, self.best_epoch = current, epoch
