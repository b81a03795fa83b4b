"""The models by name: each is one `ModelSpec` that says all the rest of autoenc needs to know,
so nothing outside this package asks which model a config names. The builders live in one module
per family (`dense`, `conv`), imported on the first build, so listing the models and checking a
config load no Keras. docs/new_model.md adds a model."""

import dataclasses
import importlib
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, NamedTuple

from autoenc.errors import UsageError

if TYPE_CHECKING:
    import keras

IMAGE_SHAPE = (28, 28, 1)
FLAT_SIZE = 28 * 28


class Bounds(NamedTuple):
    """The interval a numeric field must lie in (None: unbounded on that side)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # `low` itself is not allowed

    def problem(self, value) -> str | None:
        """Why `value` is out of bounds, or None if it is in them."""
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            if self.low_open:
                return f"must be greater than {self.low:g}"
            return "must be 0 or more" if self.low == 0 else f"must be at least {self.low:g}"
        if self.high is not None and value > self.high:
            return f"must be at most {self.high}"
        return None


class Autoencoder(NamedTuple):
    """A trainable autoencoder and the two halves that share its weights."""

    autoencoder: "keras.Model"
    encoder: "keras.Model"
    decoder: "keras.Model"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model: how to build it and what the rest of autoenc needs to know about it.

    Attributes:
        name: the `config.model` that selects it.
        build: config -> `Autoencoder`, from the model's own fields and `config.precision`; the
            initial weights follow from the order the layers are created in: keep it fixed.
        bounds: the model's own config fields (all required; with `model` they decide the
            weights, so a checkpoint loads only with a config that agrees on them), with bounds.
        flat: inputs are flat 784-vectors (28x28 images only), not (H, W, 1) images.
        size_multiple: the image heights and widths it takes (applying it pads to them).
        xla_nondeterminism: why XLA's gradient of it is not deterministic, or None.
        code_size_field: a compression model's field that sizes its code (for its figure).
    """

    name: str
    build: Callable
    bounds: Mapping[str, Bounds] = dataclasses.field(default_factory=dict)
    flat: bool = False
    size_multiple: int = 1
    xla_nondeterminism: str | None = None
    code_size_field: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "bounds", types.MappingProxyType(dict(self.bounds)))

    @property
    def fields(self) -> tuple[str, ...]:
        """The model's own config fields, in declaration order."""
        return tuple(self.bounds)


def _family(function: str) -> Callable:
    """The builder `module:function` of `autoenc.models.module`, imported on its first call."""
    module, name = function.split(":")
    return lambda config: getattr(importlib.import_module(f"autoenc.models.{module}"), name)(config)


MAX_POOLING = "XLA has no deterministic MaxPool gradient"
_REGISTRY = {
    entry.name: entry
    for entry in (
        ModelSpec(
            "dense",
            _family("dense:build_dense"),
            bounds={"encoding_dim": Bounds(1), "activity_l1": Bounds(0.0)},
            flat=True,
            code_size_field="encoding_dim",
        ),
        ModelSpec(
            "conv", _family("conv:build_conv"), size_multiple=4, xla_nondeterminism=MAX_POOLING
        ),
        ModelSpec(
            "deep_dense",
            _family("dense:build_deep_dense"),
            bounds={"encoding_dim": Bounds(1), "hidden_units": Bounds(2)},
            flat=True,
            code_size_field="encoding_dim",
        ),
        ModelSpec(
            "unet",
            _family("conv:build_unet"),
            bounds={"filters": Bounds(1)},
            size_multiple=4,
            xla_nondeterminism=MAX_POOLING,
        ),
    )
}


def register(spec: ModelSpec) -> None:
    """Adds a model under `spec.name` (a name already taken is refused)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"a model named {spec.name!r} is registered already")
    _REGISTRY[spec.name] = spec


def unregister(name: str) -> None:
    """Removes the model `name`."""
    del _REGISTRY[name]


def names() -> tuple[str, ...]:
    """The registered models' names, in registration order."""
    return tuple(_REGISTRY)


def spec(name_or_config) -> ModelSpec:
    """The entry of a model name, or of the model a config names (`UsageError` if none)."""
    name = name_or_config if isinstance(name_or_config, str) else name_or_config.model
    if name not in _REGISTRY:
        raise UsageError(f"unknown model {name!r}; the models are {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def build(config) -> Autoencoder:
    """Builds the model `config.model` names, from the config's fields."""
    return spec(config).build(config)


def input_shape(config) -> tuple:
    """The shape of one model input: a flat 784-vector, or a 28x28x1 image."""
    return (FLAT_SIZE,) if spec(config).flat else IMAGE_SHAPE
