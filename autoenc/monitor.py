"""What Keras' monitor callbacks share, mirrored without a model: comparing values as Keras does.

`MonitorDecision` is the comparison logic of Keras 3.15's `MonitorCallback`: which direction is
better ('auto' knows `loss` and the directions of compiled metrics, passed here as
`metric_directions`), `min_delta`, and comparisons made in the dtype TensorFlow gives the operands
(a Python float is compared as float32, so 1.0 and 1.00000001 tie, as in Keras). The number
encoding keeps a callback's state strict JSON, non-finite values and dtypes included.
`autoenc.callbacks` builds `EarlyStopping` and `BestCheckpoint` on it.
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


def encode_number(value: Any) -> dict[str, Any] | None:
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


def decode_number(encoded: Any) -> Any:
    """Invert `encode_number`; raise `UserError` for anything it could not have produced."""
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


def read_int(state: Mapping[str, Any], key: str, *, optional: bool = False) -> int | None:
    """Return `state[key]` as an int (or None when `optional`); raise `UserError` otherwise."""
    if key not in state:
        raise UserError(f"Corrupt callback state: missing {key!r}.")
    value = state[key]
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"Corrupt callback state: {key!r} must be an integer, got {value!r}.")
    return value


class MonitorDecision:
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
