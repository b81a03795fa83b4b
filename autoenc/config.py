"""Configs: resolve a name to `configs/NAME.py`, apply `--config.FIELD=VALUE` overrides, validate.

A config is an `ml_collections.ConfigDict` returned by a `get_config()` function and locked, so
a typo in a field name is an error rather than a new field. Overrides are parsed here, not by
absl, so that every mistake (unknown config, unknown field, wrong type, out-of-range value) ends
in one `UsageError` line that says what is valid.
"""

import importlib
import importlib.util
import json
import math
import pathlib
import sys

from ml_collections import config_dict

from autoenc import models
from autoenc.errors import UsageError
from autoenc.models import Bounds

CONFIGS_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
OPTIMIZERS = ("adadelta", "adam")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


# The bounds of every numeric field but the model's own (`models.spec(config).bounds`).
# Integers also stay below INT_LIMIT (the loop's counters and TensorFlow's int32 shapes), floats
# below FLOAT32_MAX (they are used in float32, where a larger value is inf).
NUMBER_BOUNDS = {
    "noise_factor": Bounds(0.0),
    "noise_factor_max": Bounds(0.0),
    "epochs": Bounds(1, 1_000_000),  # the loop plans its epochs up front: keep that list small
    "batch_size": Bounds(1),
    "train_examples": Bounds(0),
    "seed": Bounds(0, 2**32 - 1),  # numpy's seed range (keras.utils.set_random_seed)
    "learning_rate": Bounds(0.0, low_open=True),
    "early_stopping.min_delta": Bounds(0.0),
    "early_stopping.patience": Bounds(0),
    "early_stopping.baseline": Bounds(),
    "early_stopping.start_from_epoch": Bounds(0),
    "steps_per_loop": Bounds(1),
    "checkpoint_every_steps": Bounds(0),
    "image_every_epochs": Bounds(0),
    "loss_every_steps": Bounds(0),
}
INT_LIMIT = 2**31 - 1
FLOAT32_MAX = 3.4028234663852886e38
# The values the training loop logs after each epoch, which early stopping may monitor, and
# the direction in which each improves (early stopping's mode "auto" takes it from here).
LOGGED_VALUES = {
    "loss": "min",
    "val_loss": "min",
    "val_bce": "min",
    "val_mse": "min",
    "val_psnr": "max",
    "val_ssim": "max",
}
EARLY_STOPPING_MODES = ("auto", "min", "max")
# Fields added to the configs after runs were saved without them, with the value those runs
# trained with: a saved config without the field reads as having it, so the runs still resume
# and their modes still work.
LATER_FIELDS = {"noise_factor_max": 0.0, "lr_schedule": "constant"}
# Fields a finished or interrupted run may change on resume without starting over: more epochs,
# and settings that change how the run is carried out or shown, never what it computes.
RESUMABLE_CHANGES = (
    "epochs",
    "data_dir",
    "steps_per_loop",
    "checkpoint_every_steps",
    "image_every_epochs",
    "loss_every_steps",
    "histograms",
    # XLA reorders float arithmetic (tests/test_precision.py bounds the difference): a run
    # resumed with it switched is no longer bit-identical, only equal within float noise.
    "xla",
)


def available_configs() -> list[str]:
    """Names accepted by `--config=NAME`: the experiment files in `configs/`."""
    return sorted(
        p.stem
        for p in CONFIGS_DIR.glob("*.py")
        if not p.stem.startswith("_") and p.stem != "common"
    )


def load_config(name_or_path: str) -> config_dict.ConfigDict:
    """Loads and locks the config `configs/NAME.py`, or the one in a `.py` file at a path.

    Raises:
        UsageError: the name is unknown or the file has no usable `get_config()`.
    """
    if name_or_path.endswith(".py") or "/" in name_or_path:
        path = pathlib.Path(name_or_path)
        if not path.is_file():
            raise UsageError(f"config file {name_or_path} does not exist")
        spec = importlib.util.spec_from_file_location(f"autoenc_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    elif name_or_path in available_configs():
        module = importlib.import_module(f"{_configs_package()}.{name_or_path}")
    else:
        raise UsageError(
            f"unknown config {name_or_path!r}; valid names: {', '.join(available_configs())}"
            " (or a path to a .py file with get_config())"
        )
    if not hasattr(module, "get_config"):
        raise UsageError(f"config {name_or_path} has no get_config() function")
    config = module.get_config()
    config.lock()
    return config


def _configs_package() -> str:
    """Makes the checkout's `configs/` importable as the package `configs` (the experiment files
    import their bases from it) without installing it: a top-level package of that name in
    site-packages would collide with other projects'."""
    module = sys.modules.get("configs")
    if module is None or pathlib.Path(module.__file__).resolve().parent != CONFIGS_DIR:
        spec = importlib.util.spec_from_file_location(
            "configs", CONFIGS_DIR / "__init__.py", submodule_search_locations=[str(CONFIGS_DIR)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["configs"] = module
        spec.loader.exec_module(module)
    return "configs"


def load_run_config(workdir) -> config_dict.ConfigDict:
    """The config a run saved in `WORKDIR/config.json`, locked, for using a trained run
    without repeating its `--config` and overrides.

    Raises:
        UsageError: the workdir holds no readable config.json.
    """
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise UsageError(
            f"{path} does not exist: give --config=NAME, or a --workdir that holds a run"
        )
    saved = read_saved_config(path)
    for dotted, value in LATER_FIELDS.items():  # a run saved before the field existed
        *parents, leaf = dotted.split(".")
        node = saved
        for part in parents:
            node = node.setdefault(part, {})
        node.setdefault(leaf, value)
    config = config_dict.ConfigDict(saved)
    config.lock()
    return config


def read_saved_config(path: pathlib.Path) -> dict:
    """The dict a run saved as config.json, or a one-line `UsageError` naming the file when
    it cannot be read or holds no config (empty, truncated, another JSON value)."""
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict) or not isinstance(saved.get("model"), str):
            raise ValueError("not a config written by a run (no model field)")
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or e
        raise UsageError(
            f"cannot read {path}: {reason}; restore it or use another --workdir"
        ) from None
    return saved


def field_names(config: config_dict.ConfigDict, prefix: str = "") -> list[str]:
    """All overridable leaf fields, dotted for nested ones (`early_stopping.patience`)."""
    names = []
    for key in config.keys():
        value = config[key]
        if isinstance(value, config_dict.ConfigDict):
            names += field_names(value, f"{prefix}{key}.")
        else:
            names.append(prefix + key)
    return names


def _parse(raw: str, kind: type, field: str):
    """Parses the text of an override into the field's declared type."""
    if raw.lower() in ("none", "null") and kind is not str:
        return None
    try:
        if kind is bool:
            if raw.lower() in ("true", "1", "yes"):
                return True
            if raw.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is str:
            return raw
    except ValueError:
        pass
    raise UsageError(f"--config.{field}={raw}: expected {kind.__name__}")


def apply_override(config: config_dict.ConfigDict, dotted: str, raw: str) -> None:
    """Sets `config.<dotted>` from its command-line text, checking the name and the type.

    Raises:
        UsageError: the field does not exist (the message lists the valid ones), or the text
            does not parse as the field's type.
    """
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.get(part) if isinstance(node, config_dict.ConfigDict) else None
    if (
        not isinstance(node, config_dict.ConfigDict)
        or leaf not in node
        or isinstance(node[leaf], config_dict.ConfigDict)
    ):
        owners = [name for name in models.names() if dotted in models.spec(name).bounds]
        if owners:  # a model's own field, in a config of another model
            raise UsageError(
                f"--config.{dotted}: this config (model {config.get('model')}) has no such"
                f" field; it belongs to the {owners[0]} model, so start from a config of that"
                f" model ({_configs_of(owners[0])})"
            )
        raise UsageError(
            f"unknown config field {dotted!r}; valid fields: {', '.join(field_names(config))}"
        )
    kind = node.get_ref(leaf).get_type()
    value = _parse(raw, kind, dotted)
    if value is None and node[leaf] is not None and kind is not float:
        raise UsageError(f"--config.{dotted}: None is not allowed for this field")
    with node.unlocked():
        node[leaf] = value


def apply_overrides(config: config_dict.ConfigDict, overrides: dict[str, str]) -> None:
    """Applies `{dotted field: text}` overrides in order (see `apply_override`)."""
    for dotted, raw in overrides.items():
        apply_override(config, dotted, raw)


def validate(config: config_dict.ConfigDict, num_train_images: int | None = None) -> None:
    """Checks values are in range; raises `UsageError` naming the first bad field.

    Args:
        config: the resolved config.
        num_train_images: when known, the size of the training set, to check `train_examples`.
    """
    _check_choices(config)
    _check_numbers(config)
    _check_early_stopping(config)
    xla_nondeterminism = models.spec(config).xla_nondeterminism
    if config.xla and config.deterministic and xla_nondeterminism:
        _fail(config, "xla", f"{xla_nondeterminism}; add --config.deterministic=false")
    if num_train_images is not None and config.train_examples > num_train_images:
        _fail(config, "train_examples", f"the training set has only {num_train_images} images")
    train_size = config.train_examples or num_train_images
    if train_size is not None and train_size < config.batch_size:
        _fail(config, "batch_size", f"larger than the {train_size} training images")


def _fail(config, field: str, message: str):
    raise UsageError(f"--config.{field}={config_value(config, field)}: {message}")


def _check_choices(config) -> None:
    """The string fields name known things, and the model's own fields are all there."""
    if config.model not in models.names():
        _fail(config, "model", f"must be one of {', '.join(models.names())}")
    if config.optimizer not in OPTIMIZERS:
        _fail(config, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
    if config.lr_schedule not in LR_SCHEDULES:
        _fail(config, "lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}")
    if config.precision not in PRECISIONS:
        _fail(config, "precision", f"must be one of {', '.join(PRECISIONS)}")
    fields = models.spec(config).fields
    missing = [field for field in fields if field not in config]
    if missing:
        _fail(
            config,
            "model",
            f"the {config.model} model needs the fields {', '.join(fields)}"
            f" (this config lacks {', '.join(missing)});"
            f" start from a config of that model ({_configs_of(config.model)})",
        )


def _configs_of(model: str) -> str:
    """`--config=NAME` for each experiment of `model`, for error messages."""
    names = [name for name in available_configs() if load_config(name).model == model]
    return ", ".join(f"--config={name}" for name in names) or "none in configs/ yet"


def _check_numbers(config) -> None:
    """Every numeric field is finite, fits the type it is used as, and lies in its bounds."""
    bounds = {**NUMBER_BOUNDS, **models.spec(config).bounds}
    for field in field_names(config):
        value = config_value(config, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # strings, booleans and unset placeholders (None)
        if not math.isfinite(value):
            _fail(config, field, "must be a finite number")
        field_bounds = bounds.get(field, Bounds())
        problem = field_bounds.problem(value)
        if problem:
            _fail(config, field, problem)
        limit = INT_LIMIT if isinstance(value, int) else FLOAT32_MAX
        if field_bounds.high is None and abs(value) > limit:
            _fail(config, field, f"must lie within ±{limit:.3g}")


def _check_early_stopping(config) -> None:
    """`monitor` names a value the loop logs, and `mode` does not contradict its direction."""
    es = config.early_stopping
    if es.monitor not in LOGGED_VALUES:
        _fail(
            config,
            "early_stopping.monitor",
            f"must be one of the values logged each epoch: {', '.join(LOGGED_VALUES)}",
        )
    if es.mode not in EARLY_STOPPING_MODES:
        _fail(config, "early_stopping.mode", "must be auto, min or max")
    direction = LOGGED_VALUES[es.monitor]
    if es.mode not in ("auto", direction):
        # The wrong way round, every real improvement counts as a setback: a run that learns
        # would stop after `patience` epochs.
        way = "lower" if direction == "min" else "higher"
        _fail(
            config,
            "early_stopping.mode",
            f"{es.monitor} is better {way}; use auto or {direction}",
        )


def config_value(config: config_dict.ConfigDict, dotted: str):
    """The value of a dotted field."""
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def field_type(config: config_dict.ConfigDict, dotted: str) -> type:
    """The declared type of a dotted field (also for a placeholder that holds None)."""
    *parents, leaf = dotted.split(".")
    node = config_value(config, ".".join(parents)) if parents else config
    return node.get_ref(leaf).get_type()


def to_json(config: config_dict.ConfigDict) -> str:
    """The config as indented JSON, as written to `WORKDIR/config.json`."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"


def differing_fields(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts (a saved
    config without one of `LATER_FIELDS` has its value there)."""
    names = []
    for key in sorted(set(saved) | set(current)):
        a = saved[key] if key in saved else LATER_FIELDS.get(prefix + key)
        b = current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += differing_fields(a, b, f"{prefix}{key}.")
        elif json.dumps(a) != json.dumps(b):
            names.append(prefix + key)
    return names
