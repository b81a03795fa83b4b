"""Configs by name or path, typed overrides, range checks, and resume compatibility."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT

from autoenc import config as config_lib
from autoenc import models
from autoenc.errors import UsageError

REQUIRED = ("epochs", "batch_size", "train_examples", "seed", "noise_factor", "optimizer",
            "learning_rate", "data_dir")  # fmt: skip


def test_experiments_are_listed_and_have_the_required_fields():
    names = config_lib.available_configs()
    assert {"dense_compress", "conv_denoise", "dense_compress_768"} <= set(names)
    assert "common" not in names
    for name in names:
        config = config_lib.load_config(name)
        for field in REQUIRED:
            assert field in config, (name, field)
        config_lib.validate(config, num_train_images=60_000)


def test_book_recipes():
    dense = config_lib.load_config("dense_compress")
    assert (dense.model, dense.encoding_dim, dense.batch_size, dense.epochs) == (
        "dense",
        32,
        256,
        50,
    )
    assert dense.noise_factor == 0
    assert dense.early_stopping.enabled
    assert (dense.early_stopping.min_delta, dense.early_stopping.patience) == (0.0005, 2)
    conv = config_lib.load_config("conv_denoise")
    assert (conv.model, conv.noise_factor, conv.batch_size, conv.epochs) == ("conv", 0.5, 128, 100)
    assert not conv.early_stopping.enabled
    assert config_lib.load_config("dense_compress_768").encoding_dim == 768


def test_load_by_path(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(
        "from configs import conv_denoise\n"
        "def get_config():\n    c = conv_denoise.get_config()\n    c.epochs = 3\n    return c\n"
    )
    assert config_lib.load_config(str(path)).epochs == 3


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UsageError, match="unknown config 'nosuch'.*conv_denoise.*dense_compress"):
        config_lib.load_config("nosuch")


def test_overrides_are_typed_and_nested():
    config = config_lib.load_config("dense_compress")
    config_lib.apply_overrides(
        config,
        {"epochs": "3", "learning_rate": "0.5", "early_stopping.patience": "4",
         "optimizer": "adam", "early_stopping.enabled": "false", "early_stopping.baseline": "0.3"},
    )  # fmt: skip
    assert config.epochs == 3 and isinstance(config.epochs, int)
    assert config.learning_rate == 0.5
    assert config.early_stopping.patience == 4
    assert config.optimizer == "adam"
    assert config.early_stopping.enabled is False
    assert config.early_stopping.baseline == 0.3


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("nosuch", "1", r"unknown config field 'nosuch'; valid fields: .*epochs"),
        ("early_stopping.nosuch", "1", "unknown config field"),
        ("early_stopping", "1", "unknown config field"),
        ("epochs", "abc", "expected int"),
        ("epochs", "1.5", "expected int"),
        ("learning_rate", "fast", "expected float"),
        ("early_stopping.enabled", "maybe", "expected bool"),
        ("epochs", "none", "None is not allowed"),
    ],
)
def test_bad_overrides(field, value, message):
    config = config_lib.load_config("conv_denoise")
    with pytest.raises(UsageError, match=message):
        config_lib.apply_override(config, field, value)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", "0", "at least 1"),
        ("batch_size", "0", "at least 1"),
        ("noise_factor", "-0.1", "0 or more"),
        ("learning_rate", "0", "greater than 0"),
        ("learning_rate", "-1", "greater than 0"),
        ("optimizer", "sgd", "one of adadelta, adam"),
        ("train_examples", "60001", "only 60000"),
        ("train_examples", "-1", "0 or more"),
        ("batch_size", "70000", "larger than"),
        ("noise_factor", "nan", "must be a finite number"),
        ("noise_factor", "inf", "must be a finite number"),
        ("noise_factor", "-inf", "must be a finite number"),
        ("noise_factor", "1e39", r"within ±3\.4e\+38"),  # inf in float32
        ("learning_rate", "nan", "must be a finite number"),
        ("activity_l1", "-1e-4", "0 or more"),
        ("activity_l1", "nan", "must be a finite number"),
        ("encoding_dim", "0", "at least 1"),
        ("seed", "-1", "0 or more"),
        ("seed", "4294967296", "at most 4294967295"),
        ("batch_size", "99999999999", r"within ±2\.15e\+09"),
        ("epochs", "99999999999", "at most 1000000"),
        ("early_stopping.min_delta", "-0.1", "0 or more"),
        ("early_stopping.min_delta", "inf", "must be a finite number"),
        ("early_stopping.baseline", "nan", "must be a finite number"),
        ("early_stopping.patience", "-1", "0 or more"),
        ("early_stopping.start_from_epoch", "-1", "0 or more"),
        ("steps_per_loop", "0", "at least 1"),
        ("checkpoint_every_steps", "-1", "0 or more"),
        ("early_stopping.monitor", "val_foo", "one of the values logged each epoch: loss, val_"),
        ("early_stopping.monitor", "val_accuracy", "one of the values logged each epoch"),
        ("early_stopping.mode", "maximum", "must be auto, min or max"),
        ("early_stopping.mode", "max", "val_loss is better lower; use auto or min"),
    ],
)
def test_out_of_range_values(field, value, message):
    config = config_lib.load_config("dense_compress")
    config_lib.apply_override(config, field, value)
    with pytest.raises(UsageError, match=message):
        config_lib.validate(config, num_train_images=60_000)


def test_differing_fields():
    a = config_lib.load_config("conv_denoise").to_dict()
    b = config_lib.load_config("conv_denoise")
    config_lib.apply_overrides(b, {"seed": "3", "early_stopping.patience": "5"})
    assert config_lib.differing_fields(a, b.to_dict()) == ["early_stopping.patience", "seed"]


@pytest.mark.parametrize("monitor", list(config_lib.LOGGED_VALUES))
def test_every_logged_value_may_be_monitored_in_its_direction(monitor):
    from autoenc import run_state  # TensorFlow: only here, config.py itself must not need it

    config = config_lib.load_config("dense_compress")
    direction = config_lib.LOGGED_VALUES[monitor]
    for mode in ("auto", direction):
        config_lib.apply_overrides(
            config, {"early_stopping.monitor": monitor, "early_stopping.mode": mode}
        )
        config_lib.validate(config, num_train_images=60_000)
        # ...and the loop's early stopping takes it, going the same way.
        assert run_state.make_early_stopping(config).direction == direction


def field_type(config, dotted: str) -> type:
    """The declared type of a dotted field (also for a placeholder that holds None)."""
    parent, _, leaf = dotted.rpartition(".")
    node = config_lib.config_value(config, parent) if parent else config
    return node.get_ref(leaf).get_type()


def test_every_numeric_field_has_bounds():
    bounded = set(config_lib.NUMBER_BOUNDS)
    for name in models.names():
        bounded |= set(models.spec(name).bounds)
    for name in config_lib.available_configs():
        config = config_lib.load_config(name)
        for field in config_lib.field_names(config):
            if field_type(config, field) in (int, float):
                assert field in bounded, (name, field)


def test_a_model_without_its_fields_names_them():
    config = config_lib.load_config("conv_denoise")
    config_lib.apply_override(config, "model", "dense")
    with pytest.raises(
        UsageError,
        match=r"the dense model needs the fields encoding_dim, activity_l1 \(this config lacks"
        r" encoding_dim, activity_l1\); start from .*--config=dense_compress",
    ):
        config_lib.validate(config)
    with pytest.raises(UsageError, match="belongs to the dense model.*--config=dense_compress"):
        config_lib.apply_override(config, "encoding_dim", "16")


def test_the_model_table_is_what_the_configs_hold():
    for name in config_lib.available_configs():
        config = config_lib.load_config(name)
        assert set(models.spec(config).fields) <= set(config.keys()), name


def test_validation_answers_without_tensorflow():
    script = (
        "import sys\n"
        "from autoenc import config\n"
        "c = config.load_config('conv_denoise')\n"
        "config.apply_override(c, 'noise_factor', 'nan')\n"
        "try:\n"
        "    config.validate(c)\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, 'tensorflow' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["UsageError", "False"], result.stderr


def test_a_run_saved_before_later_fields_loads_with_the_values_it_trained_with(tmp_path):
    saved = config_lib.load_config("conv_denoise").to_dict()
    for field in config_lib.LATER_FIELDS:
        del saved[field]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = config_lib.load_run_config(tmp_path)
    config_lib.validate(config)  # raised AttributeError on the missing fields
    for field, value in config_lib.LATER_FIELDS.items():
        assert config_lib.config_value(config, field) == value
