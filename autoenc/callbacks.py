"""The stopping rules of the training loop: early stopping and the choice of best checkpoint.

`EarlyStopping` and `BestCheckpoint` make the decisions that Keras 3.15's
`keras.callbacks.EarlyStopping` and `keras.callbacks.ModelCheckpoint(save_best_only=True)` make on
the same logs (when to stop, which epochs to save as best, which epoch's weights a run ends with),
without a model: they do no I/O and touch no weights. A monitored value is read as `float(value)`,
as `fit` hands it to its callbacks, and compared as a Python float where Keras compares float32
tensors: values only float64 tells apart tie in Keras, not here. The state is plain JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

from autoenc.errors import UserError

# How `state_dict` spells a non-finite float, so that the state is strict JSON.
_NON_FINITE = ("nan", "inf", "-inf")


def _direction(owner: str, monitor: str, mode: str, metric_directions: Mapping | None) -> str:
    """Return 'min' or 'max' as Keras' `MonitorCallback` picks it.

    In 'auto' mode Keras minimises a monitor named `loss` (after dropping `val_`) and otherwise
    follows the `_direction` ('up' or 'down') of the compiled metric of that name, which
    `metric_directions` stands in for; Keras 3 has no 'acc' substring rule.
    """
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{owner} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=4)
        mode = "auto"
    if mode != "auto":
        return mode
    name = monitor.removeprefix("val_")
    # A compiled metric's direction wins over the name rule, as in Keras.
    direction = (metric_directions or {}).get(name, "down" if name == "loss" else None)
    if direction not in ("up", "down"):
        raise ValueError(
            f"{owner} received monitor={monitor!r}, but cannot determine whether that metric "
            "should be maximized or minimized. Pass mode='max' or mode='min', or give its "
            "direction ('up' or 'down') in metric_directions."
        )
    return "max" if direction == "up" else "min"


def _monitored(logs: Mapping | None, monitor: str, missing: str) -> float | None:
    """Return `logs[monitor]` as a float, or None after warning `missing` when it is absent."""
    value = (logs or {}).get(monitor)
    if value is None:
        warnings.warn(missing.format(available=",".join(logs or {})), stacklevel=3)
        return None
    return float(value)


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
        value in _NON_FINITE if isinstance(value, str) else type(value) in (int, float)
    ):
        return float(value)
    if kind is int and type(value) is int:
        return value
    raise UserError(f"corrupt stopping-rule state in the checkpoint: {key}={value!r}")


class _Monitor:
    """What both rules share with Keras' `MonitorCallback`: the direction and `min_delta`."""

    # The state saved with the loop's checkpoint: attribute -> (type, whether it may be None).
    _STATE: dict[str, tuple[type, bool]] = {}

    def __init__(self, monitor: str, mode: str, min_delta: float, directions: Mapping | None):
        self.monitor = monitor
        self.direction = _direction(type(self).__name__, monitor, mode, directions)
        # Keras keeps |min_delta|, subtracted towards 'better': its sign is ignored.
        self.min_delta = abs(min_delta) if self.direction == "max" else -abs(min_delta)

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
        """Restore `state_dict`'s values; the configuration comes from the constructor.

        Raises:
            UserError: A value is missing or of the wrong kind (nothing is then changed).
        """
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
        """Configure the rule, with Keras' arguments.

        Args:
            monitor: Key of the value in the logs to watch.
            min_delta: Smallest change that counts as an improvement; its sign is ignored.
            patience: Epochs without improvement before stopping.
            mode: 'min', 'max' or 'auto'; an unknown mode warns and falls back to 'auto'.
            baseline: Until an epoch beats it, improvements do not reset `wait`.
            restore_best_weights: End with the best epoch's weights rather than the last's.
            start_from_epoch: Epochs with a 0-based index below this are not monitored.
            metric_directions: Maps a metric name (without `val_`) to 'up' or 'down', as the
                compiled metrics Keras consults in 'auto' mode.

        Raises:
            ValueError: In 'auto' mode the direction of `monitor` is unknown.
        """
        super().__init__(monitor, mode, min_delta, metric_directions)
        self.patience = patience
        self.baseline = None if baseline is None else float(baseline)
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.wait = 0
        self.stopped_epoch = 0
        self.best: float | None = None
        # Keras starts it at 0, not None, so it reads 0 until an epoch is monitored.
        self.best_epoch = 0

    def update(self, epoch: int, logs: Mapping[str, Any] | None) -> bool:
        """Record a finished epoch as Keras' `on_epoch_end` does.

        Args:
            epoch: The 0-based index of the epoch.
            logs: Its values; a missing monitor warns (even while warming up), changes nothing.

        Returns:
            True when Keras would set `stop_training`; `stopped_epoch` is then this epoch (never
            0: the first monitored epoch always improves on None).
        """
        missing = (
            f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
            "Available metrics are: {available}"
        )
        current = _monitored(logs, self.monitor, missing)
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
        """Return the epoch whose weights Keras' `fit` ends with, or None for the last epoch's.

        With `restore_best_weights`, `on_train_end` restores the best epoch's weights whether or
        not training stopped early; it has none to restore if no epoch was monitored.
        """
        if self.restore_best_weights and self.best is not None:
            return self.best_epoch
        return None


class BestCheckpoint(_Monitor):
    """Which epochs to save as best: `keras.callbacks.ModelCheckpoint(save_best_only=True)`.

    Keras records a new best before saving; here `is_improvement` decides, the caller saves, and
    `commit` records it, so a failed save records nothing. Improvement is strict.
    """

    _STATE = dict(best=(float, True), best_epoch=(int, True))

    def __init__(
        self,
        monitor: str = "val_loss",
        mode: str = "auto",
        initial_value_threshold: float | None = None,
        *,
        metric_directions: Mapping[str, str] | None = None,
    ) -> None:
        """Configure the rule with Keras' arguments; `metric_directions` and errors as for
        `EarlyStopping`."""
        super().__init__(monitor, mode, 0.0, metric_directions)
        self.best = None if initial_value_threshold is None else float(initial_value_threshold)
        self.best_epoch: int | None = None

    def is_improvement(self, logs: Mapping[str, Any] | None) -> bool:
        """Return whether Keras would save for these logs; changes nothing.

        A missing monitor warns and saves, as Keras falls back to saving every epoch.
        """
        missing = f"Can save best model only with {self.monitor} available."
        current = _monitored(logs, self.monitor, missing)
        return current is None or self._is_improvement(current, self.best)

    def commit(self, epoch: int, logs: Mapping[str, Any] | None) -> None:
        """Record the epoch's value as the best once its checkpoint is saved.

        A save made because the monitor was missing is not a best, and records nothing.

        Raises:
            ValueError: The value is no improvement, so nothing should have been saved.
        """
        if (logs or {}).get(self.monitor) is None:
            return
        current = float(logs[self.monitor])
        if not self._is_improvement(current, self.best):
            raise ValueError(f"epoch {epoch}: {self.monitor}={current} does not beat {self.best}")
        self.best, self.best_epoch = current, epoch
