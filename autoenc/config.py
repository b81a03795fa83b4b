"""Configs: resolve a name to `configs/NAME.py`, apply `--config.FIELD=VALUE` overrides, validate.

A config is an `ml_collections.ConfigDict` returned by a `get_config()` function and locked, so
a typo in a field name is an error rather than a new field. Overrides are parsed here, not by
absl, so that every mistake (unknown config, unknown field, wrong type, out-of-range value) ends
in one `UsageError` line that says what is valid.
"""

import importlib
import importlib.util
import json
import pathlib

from ml_collections import config_dict

from autoenc.errors import UsageError

CONFIGS_DIR = pathlib.Path(__file__).resolve().parent.parent / "configs"
OPTIMIZERS = ("adadelta", "adam")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
MODELS = ("dense", "conv")
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
    # XLA reorders float arithmetic (dense: val_loss identical to 6 digits, benchmarks/
    # same_answers.py); a run resumed with it switched is no longer bit-identical, only equal.
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
        module = importlib.import_module(f"configs.{name_or_path}")
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

    def fail(field, message):
        raise UsageError(f"--config.{field}={config_value(config, field)}: {message}")

    if config.model not in MODELS:
        fail("model", f"must be one of {', '.join(MODELS)}")
    if config.optimizer not in OPTIMIZERS:
        fail("optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
    if config.precision not in PRECISIONS:
        fail("precision", f"must be one of {', '.join(PRECISIONS)}")
    if config.xla and config.deterministic and config.model == "conv":
        fail(
            "xla",
            "XLA has no deterministic MaxPool gradient; add --config.deterministic=false",
        )
    for field in ("epochs", "batch_size", "steps_per_loop"):
        if config_value(config, field) < 1:
            fail(field, "must be at least 1")
    for field in (
        "train_examples",
        "checkpoint_every_steps",
        "image_every_epochs",
        "loss_every_steps",
    ):
        if config_value(config, field) < 0:
            fail(field, "must be 0 or more")
    if config.noise_factor < 0:
        fail("noise_factor", "must be 0 or more")
    if config.learning_rate is not None and not config.learning_rate > 0:
        fail("learning_rate", "must be greater than 0")
    if config.model == "dense" and config.encoding_dim < 1:
        fail("encoding_dim", "must be at least 1")
    if config.early_stopping.patience < 0:
        fail("early_stopping.patience", "must be 0 or more")
    if config.early_stopping.mode not in ("auto", "min", "max"):
        fail("early_stopping.mode", "must be auto, min or max")
    if num_train_images is not None and config.train_examples > num_train_images:
        fail("train_examples", f"the training set has only {num_train_images} images")
    train_size = config.train_examples or num_train_images
    if train_size is not None and train_size < config.batch_size:
        fail("batch_size", f"larger than the {train_size} training images")


def config_value(config: config_dict.ConfigDict, dotted: str):
    """The value of a dotted field."""
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def to_json(config: config_dict.ConfigDict) -> str:
    """The config as indented JSON, as written to `WORKDIR/config.json`."""
    return json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n"


def differing_fields(saved: dict, current: dict, prefix: str = "") -> list[str]:
    """Dotted names of the fields whose values differ between two config dicts."""
    names = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            names += differing_fields(a, b, f"{prefix}{key}.")
        elif json.dumps(a) != json.dumps(b):
            names.append(prefix + key)
    return names
