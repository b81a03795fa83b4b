"""End-of-epoch decisions for the custom training loop: early stopping and best-checkpoint choice.

This module owns the pure-Python bookkeeping that `keras.callbacks.EarlyStopping` and
`keras.callbacks.ModelCheckpoint(save_best_only=True)` perform, so our own loop can make the same
decisions without a `keras.Model` attached. It mirrors the semantics of the installed Keras 3.15
(TensorFlow backend) exactly, including its quirks: comparisons run in the dtype TensorFlow would
give the operands (a Python float is compared as float32), 'auto' mode only knows `loss` unless
metric directions are supplied, and a NaN can become the best value. It does no file I/O and
touches no weights; it only says which epoch to stop at, save at and restore, and it can persist
that state in a checkpoint as strict JSON.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from autoenc.errors import UserError

_MODES = ("auto", "min", "max")
_INT32_RANGE = (-(2**31), 2**31)
_INT64_RANGE = (-(2**63), 2**63)
# How a non-finite float is spelled in a state dict, so the dict stays strict JSON.
_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _as_tensor_scalar(value: Any) -> np.ndarray:
    """Return `value` as the 0-d array `tf.convert_to_tensor` would make of it.

    Keras compares with `keras.ops.less/greater`, which convert both operands to tensors first.
    TensorFlow turns a Python float into float32 (and refuses one that overflows float32), a
    Python int into int32 or int64, and keeps the dtype of a numpy value. Reproducing that is
    what makes, e.g., 1.0 and 1.00000001 a tie here, exactly as in Keras.
    """
    if isinstance(value, np.generic | np.ndarray):
        return np.asarray(value)
    if isinstance(value, bool):
        return np.asarray(value, dtype=np.bool_)
    if isinstance(value, int):
        if _INT32_RANGE[0] <= value < _INT32_RANGE[1]:
            return np.asarray(value, dtype=np.int32)
        if _INT64_RANGE[0] <= value < _INT64_RANGE[1]:
            return np.asarray(value, dtype=np.int64)
        raise ValueError(f"Cannot compare {value}: it does not fit in an int64 tensor.")
    if isinstance(value, float):
        with np.errstate(over="ignore"):
            narrowed = np.asarray(value, dtype=np.float32)
        if math.isfinite(value) and not np.isfinite(narrowed):
            # TensorFlow raises here rather than producing inf; so does Keras, so do we.
            raise ValueError(f"Cannot compare {value}: it is out of range for a float32 tensor.")
        return narrowed
    # Anything else (a framework tensor, a Python scalar-like) keeps the dtype numpy sees.
    return np.asarray(value)


def _comparison_dtype(a: np.dtype, b: np.dtype) -> np.dtype:
    """Return the dtype Keras' (JAX-style) promotion lattice picks for comparing `a` with `b`.

    Unlike numpy, an int paired with a float takes the float's dtype (int32 vs float32 stays
    float32), and two floats take the wider one.
    """
    floats = [d for d in (a, b) if d.kind == "f"]
    if floats:
        return max(floats, key=lambda d: d.itemsize)
    kinds = {a.kind, b.kind}
    if np.dtype(np.uint64) in (a, b) and "i" in kinds:
        # The lattice has no integer holding both; Keras falls back to floatx (float32).
        return np.dtype(np.float32)
    return np.promote_types(a, b)


def _keras_compare(direction: str, value: Any, reference: Any) -> bool:
    """Return `keras.ops.less(value, reference)` ('min') or `ops.greater` ('max') as a bool."""
    left = _as_tensor_scalar(value)
    right = _as_tensor_scalar(reference)
    dtype = _comparison_dtype(left.dtype, right.dtype)
    op = np.less if direction == "min" else np.greater
    return bool(op(left.astype(dtype), right.astype(dtype)))


def _resolve_direction(
    owner: str, monitor: str, mode: str, metric_directions: Mapping[str, str] | None
) -> str:
    """Return 'min' or 'max' the way Keras' `MonitorCallback._set_monitor_op` decides.

    Keras 3 has no substring rule ('acc', 'auc', ...): in 'auto' mode a monitor named `loss`
    (after dropping a `val_` prefix) is minimised, and otherwise the direction comes from the
    `_direction` ('up'/'down') of the model's compiled metric with that name. Without a model,
    `metric_directions` stands in for those compiled metrics.
    """
    if mode in ("min", "max"):
        return mode
    name = monitor.removeprefix("val_")
    direction = "min" if name == "loss" else None
    if metric_directions and name in metric_directions:
        # A compiled metric's direction wins over the name rule, as in Keras.
        direction = "max" if metric_directions[name] == "up" else "min"
    if direction is None:
        raise ValueError(
            f"{owner} received monitor={monitor!r}, but cannot determine whether that metric "
            "should be maximized or minimized. Pass mode='max' or mode='min', or give its "
            "direction in metric_directions."
        )
    return direction


def _check_mode(owner: str, mode: str) -> str:
    """Return `mode`, or 'auto' after a warning if Keras would not recognise it."""
    if mode not in _MODES:
        # stacklevel 4 points past the base and subclass constructors at the caller.
        warnings.warn(f"{owner} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=4)
        return "auto"
    return mode


def _check_directions(metric_directions: Mapping[str, str] | None) -> dict[str, str]:
    """Return a copy of `metric_directions`, rejecting values other than 'up' and 'down'."""
    directions = dict(metric_directions or {})
    for name, direction in directions.items():
        if direction not in ("up", "down"):
            raise ValueError(
                f"metric_directions[{name!r}] must be 'up' or 'down', got {direction!r}."
            )
    return directions


def _encode_number(value: Any) -> dict[str, Any] | None:
    """Encode a logged value as strict JSON, keeping the type that decides its comparison dtype.

    The type matters: a Python float is compared as float32 but a numpy float64 as float64, so
    a resumed run must get back the same kind of object, not just the same number.
    """
    if value is None:
        return None
    if isinstance(value, np.generic | np.ndarray):
        array = np.asarray(value)
        if array.ndim != 0:
            raise ValueError(f"Cannot store a non-scalar monitored value: {value!r}.")
        kind, number = f"numpy.{array.dtype.name}", array.item()
    elif isinstance(value, bool):
        kind, number = "bool", value
    elif isinstance(value, int):
        kind, number = "int", value
    elif isinstance(value, float):
        kind, number = "float", value
    else:
        raise ValueError(f"Cannot store monitored value {value!r} of type {type(value).__name__}.")
    if isinstance(number, float) and not math.isfinite(number):
        number = "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
    return {"type": kind, "value": number}


def _decode_number(encoded: Any) -> Any:
    """Invert `_encode_number`; raise `UserError` for anything it could not have produced."""
    if encoded is None:
        return None
    try:
        kind, number = encoded["type"], encoded["value"]
        if isinstance(number, str):
            number = _NON_FINITE[number]
        if kind == "float":
            return float(number)
        if kind == "int":
            return int(number)
        if kind == "bool":
            return bool(number)
        if kind.startswith("numpy."):
            return np.dtype(kind.removeprefix("numpy.")).type(number)
        raise ValueError(f"unknown type {kind!r}")
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"Corrupt callback state: bad monitored value {encoded!r}.") from error


def _read_int(state: Mapping[str, Any], key: str, *, optional: bool = False) -> int | None:
    """Return `state[key]` as an int (or None when `optional`); raise `UserError` otherwise."""
    if key not in state:
        raise UserError(f"Corrupt callback state: missing {key!r}.")
    value = state[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"Corrupt callback state: {key!r} must be an integer, got {value!r}.")
    return value


class _MonitorDecision:
    """The comparison logic Keras' `MonitorCallback` gives both callbacks."""

    def __init__(
        self,
        monitor: str,
        mode: str,
        min_delta: float,
        metric_directions: Mapping[str, str] | None,
    ) -> None:
        owner = type(self).__name__
        self.monitor = monitor
        self.mode = _check_mode(owner, mode)
        self.metric_directions = _check_directions(metric_directions)
        # Keras resolves the direction lazily at the first epoch end because it needs the
        # model's compiled metrics; we have them up front, so a bad monitor fails at once.
        self.direction = _resolve_direction(owner, monitor, self.mode, self.metric_directions)
        # Keras stores |min_delta| and negates it when minimising, so that improving always
        # means `op(current - min_delta, reference)`; keep the same signed value.
        self.min_delta = abs(min_delta)
        if self.direction == "min":
            self.min_delta *= -1

    def _is_improvement(self, value: Any, reference: Any) -> bool:
        if reference is None:
            return True
        # The subtraction happens on the raw objects first, as in Keras; only the comparison
        # converts to tensor dtypes.
        return _keras_compare(self.direction, value - self.min_delta, reference)


class EarlyStopping(_MonitorDecision):
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
            "best": _encode_number(self.best),
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
        wait = _read_int(state, "wait")
        best_epoch = _read_int(state, "best_epoch")
        stopped_epoch = _read_int(state, "stopped_epoch")
        best_weights_epoch = _read_int(state, "best_weights_epoch", optional=True)
        best = _decode_number(state["best"])
        self.wait = wait
        self.best = best
        self.best_epoch = best_epoch
        self.stopped_epoch = stopped_epoch
        self.best_weights_epoch = best_weights_epoch


class BestCheckpoint(_MonitorDecision):
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
        return {"best": _encode_number(self.best), "best_epoch": self.best_epoch}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore state saved by `state_dict`.

        Args:
            state: A dict produced by `state_dict`.

        Raises:
            UserError: `state` is missing a key or holds a value of the wrong kind.
        """
        if "best" not in state:
            raise UserError("Corrupt callback state: missing 'best'.")
        best_epoch = _read_int(state, "best_epoch", optional=True)
        self.best = _decode_number(state["best"])
        self.best_epoch = best_epoch
