"""Configs by name or path, typed overrides, range checks, and resume compatibility."""

import pytest

from autoenc import config as config_lib
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
    ],
)
def test_out_of_range_values(field, value, message):
    config = config_lib.load_config("conv_denoise")
    config_lib.apply_override(config, field, value)
    with pytest.raises(UsageError, match=message):
        config_lib.validate(config, num_train_images=60_000)


def test_differing_fields():
    a = config_lib.load_config("conv_denoise").to_dict()
    b = config_lib.load_config("conv_denoise")
    config_lib.apply_overrides(b, {"seed": "3", "early_stopping.patience": "5"})
    assert config_lib.differing_fields(a, b.to_dict()) == ["early_stopping.patience", "seed"]
