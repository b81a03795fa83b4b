"""Configs: resolve `--config=NAME`, apply `--config.FIELD=VALUE` overrides, validate. A config
is the locked `ConfigDict` of a `get_config()`, so a typo in a field name is an error; overrides
are parsed here, not by absl, so every mistake is one `UsageError` line that says what is valid.
The model's own fields and their bounds come from its entry in `autoenc.models`."""

import contextlib
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
# The string fields with a fixed set of values (`model` takes the registered models').
CHOICES = {
    "optimizer": ("adadelta", "adam"),
    "lr_schedule": ("constant", "cosine"),
    "precision": ("float32", "mixed_bfloat16", "mixed_float16"),
}
# The bounds of every numeric field but the model's own. Integers also stay below INT_LIMIT (the
# loop's counters, int32 shapes), floats below FLOAT32_MAX (a larger float32 is inf).
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
# The values logged each epoch, which early stopping may monitor, and the way each improves.
LOGGED_VALUES = {
    "loss": "min",
    "val_loss": "min",
    "val_bce": "min",
    "val_mse": "min",
    "val_psnr": "max",
    "val_ssim": "max",
}
# Top-level fields added after runs were saved without them, with the value those runs used.
LATER_FIELDS = {"noise_factor_max": 0.0, "lr_schedule": "constant"}
# Fields a run may change on resume: more epochs, and how the run is carried out or shown.
RESUMABLE_CHANGES = (
    "epochs",
    "data_dir",
    "steps_per_loop",
    "checkpoint_every_steps",
    "image_every_epochs",
    "loss_every_steps",
    "histograms",
    "xla",  # changes results within float noise only (tests/test_precision.py bounds it)
)


def available_configs() -> list[str]:
    """Names accepted by `--config=NAME`: the experiment files in `configs/`."""
    return sorted(p.stem for p in CONFIGS_DIR.glob("[!_]*.py") if p.stem != "common")


def load_config(name_or_path: str) -> config_dict.ConfigDict:
    """Loads and locks the config `configs/NAME.py`, or the one in a `.py` file at a path
    (`UsageError` if the name is unknown or the file has no `get_config()`)."""
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
    return module.get_config().lock()


def _configs_package() -> str:
    """Imports the checkout's `configs/` as the package `configs` (the experiments import their
    bases from it) without installing it, where it would collide with other projects'."""
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
    """The locked config a run saved in `WORKDIR/config.json`, to use a trained run without
    repeating its `--config` and overrides (`UsageError` if there is none to read)."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.exists():
        raise UsageError(
            f"{path} does not exist: give --config=NAME, or a --workdir that holds a run"
        )
    saved = read_saved_config(path)
    for field, value in LATER_FIELDS.items():  # a run saved before the field existed
        saved.setdefault(field, value)
    return config_dict.ConfigDict(saved).lock()


def read_saved_config(path: pathlib.Path) -> dict:
    """The dict a run saved as config.json, or a one-line `UsageError` naming the file when
    it cannot be read or holds no config (empty, truncated, another JSON value)."""
    try:
        saved = json.loads(path.read_text())
        if not isinstance(saved, dict) or not isinstance(saved.get("model"), str):
            raise ValueError("not a config written by a run (no model field)")
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or e
        message = f"cannot read {path}: {reason}; restore it or use another --workdir"
        raise UsageError(message) from None
    return saved


def field_names(config: config_dict.ConfigDict, prefix: str = "") -> list[str]:
    """All overridable leaf fields, dotted for nested ones (`early_stopping.patience`)."""
    names = []
    for key, value in config.items():
        if isinstance(value, config_dict.ConfigDict):
            names += field_names(value, f"{prefix}{key}.")
        else:
            names.append(prefix + key)
    return names


def config_value(config: config_dict.ConfigDict, dotted: str):
    """The value of a dotted field."""
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def _parse(raw: str, kind: type, field: str):
    """Parses the text of an override into the field's declared type."""
    if kind is str:
        return raw
    if raw.lower() in ("none", "null"):
        return None
    if kind is bool and raw.lower() in ("true", "1", "yes", "false", "0", "no"):
        return raw.lower() in ("true", "1", "yes")
    with contextlib.suppress(ValueError):
        if kind in (int, float):
            return kind(raw)
    raise UsageError(f"--config.{field}={raw}: expected {kind.__name__}")


def apply_override(config: config_dict.ConfigDict, dotted: str, raw: str) -> None:
    """Sets `config.<dotted>` from its command-line text; a `UsageError` if the field does not
    exist (it lists the valid ones) or the text does not parse as the field's type."""
    if dotted not in field_names(config):
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
    parent, _, leaf = dotted.rpartition(".")
    node = config_value(config, parent) if parent else config
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
    """Checks values are known and in range; raises `UsageError` naming the first bad field.
    `num_train_images`, when known, is the training set's size, to check `train_examples`."""
    for field, valid in {"model": models.names(), **CHOICES}.items():
        if config[field] not in valid:
            _fail(config, field, f"must be one of {', '.join(valid)}")
    model = models.spec(config)
    missing = [field for field in model.fields if field not in config]
    if missing:
        needs = f"the {config.model} model needs the fields {', '.join(model.fields)}"
        start = f"start from a config of that model ({_configs_of(config.model)})"
        _fail(config, "model", f"{needs} (this config lacks {', '.join(missing)}); {start}")
    _check_numbers(config, {**NUMBER_BOUNDS, **model.bounds})
    es = config.early_stopping
    if es.monitor not in LOGGED_VALUES:
        logged = f"must be one of the values logged each epoch: {', '.join(LOGGED_VALUES)}"
        _fail(config, "early_stopping.monitor", logged)
    if es.mode not in ("auto", "min", "max"):
        _fail(config, "early_stopping.mode", "must be auto, min or max")
    direction = LOGGED_VALUES[es.monitor]
    if es.mode not in ("auto", direction):  # else a run that learns stops after `patience`
        better = f"{es.monitor} is better {'lower' if direction == 'min' else 'higher'}"
        _fail(config, "early_stopping.mode", f"{better}; use auto or {direction}")
    if config.xla and config.deterministic and model.xla_nondeterminism:
        _fail(config, "xla", f"{model.xla_nondeterminism}; add --config.deterministic=false")
    if num_train_images is not None and config.train_examples > num_train_images:
        _fail(config, "train_examples", f"the training set has only {num_train_images} images")
    train_size = config.train_examples or num_train_images
    if train_size is not None and train_size < config.batch_size:
        _fail(config, "batch_size", f"larger than the {train_size} training images")


def _fail(config, field: str, message: str):
    raise UsageError(f"--config.{field}={config_value(config, field)}: {message}")


def _configs_of(model: str) -> str:
    """`--config=NAME` for each experiment of `model`, for error messages."""
    names = [name for name in available_configs() if load_config(name).model == model]
    return ", ".join(f"--config={name}" for name in names) or "none in configs/ yet"


def _check_numbers(config, bounds: dict) -> None:
    """Every numeric field is finite, fits the type it is used as, and lies in its bounds."""
    for field in field_names(config):
        value = config_value(config, field)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue  # strings, booleans and unset placeholders (None)
        if not math.isfinite(value):
            _fail(config, field, "must be a finite number")
        field_bounds = bounds.get(field, Bounds())
        if problem := field_bounds.problem(value):
            _fail(config, field, problem)
        limit = INT_LIMIT if isinstance(value, int) else FLOAT32_MAX
        if field_bounds.high is None and abs(value) > limit:
            _fail(config, field, f"must lie within ±{limit:.3g}")


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
