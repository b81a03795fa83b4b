"""A model added as docs/new_model.md says (a builder, its `ModelSpec`, a config file) trains,
evaluates, exports and applies through the library's own entry points, with no other change."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import mirrored

from autoenc import apply as apply_lib
from autoenc import config as config_lib
from autoenc import evaluate, export, models, train
from autoenc.errors import UsageError
from autoenc.models.chains import assemble

CONFIG_FILE = '''"""A tiny denoiser, for the tests."""

from configs import common


def get_config():
    config = common.get_config()
    config.model = "tiny"
    config.channels = 4
    config.noise_factor = 0.3
    config.optimizer = "adam"
    config.learning_rate = 0.01
    config.epochs = 2
    config.batch_size = 64
    config.train_examples = 256
    config.image_every_epochs = 0
    config.loss_every_steps = 0
    return config
'''


def tiny_denoiser(config) -> models.Autoencoder:
    """Conv(channels)-Pool | Up-Conv(1, sigmoid): 28x28x1 -> 14x14xchannels -> 28x28x1."""

    def conv(filters, activation, name, dtype=config.precision):
        return keras.layers.Conv2D(
            filters, 3, activation=activation, padding="same", name=name, dtype=dtype
        )

    encoder = [
        conv(config.channels, "relu", "enc_conv"),
        keras.layers.MaxPooling2D(2, name="enc_pool", dtype=config.precision),
    ]
    decoder = [
        keras.layers.UpSampling2D(2, name="dec_up", dtype=config.precision),
        conv(1, "sigmoid", "dec_conv", dtype="float32"),
    ]
    image = keras.Input(shape=models.IMAGE_SHAPE, name="image")
    return assemble(encoder, decoder, image, "tiny")


TINY = models.ModelSpec(
    "tiny",
    tiny_denoiser,
    bounds={"channels": models.Bounds(1)},
    size_multiple=2,
    xla_nondeterminism=models.MAX_POOLING,
)


@pytest.fixture
def tiny_model():
    models.register(TINY)
    yield TINY
    models.unregister(TINY.name)


@pytest.fixture
def config(tiny_model, tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(CONFIG_FILE)
    return config_lib.load_config(str(path))


def test_the_registry_takes_the_new_model_and_gives_it_back(config):
    assert models.names()[-1] == "tiny" and models.spec(config) is TINY
    assert models.input_shape(config) == (28, 28, 1)
    assert models.build(config).autoencoder.count_params() == (9 * 4 + 4) + (9 * 4 + 1)
    config_lib.validate(config)
    with pytest.raises(UsageError, match="xla=True: XLA has no deterministic MaxPool gradient"):
        config_lib.apply_override(config, "xla", "true")
        config_lib.validate(config)
    with pytest.raises(UsageError, match="channels=0: must be at least 1"):
        config_lib.apply_overrides(config, {"xla": "false", "channels": "0"})
        config_lib.validate(config)
    dense = config_lib.load_config("dense_compress")
    with pytest.raises(UsageError, match="belongs to the tiny model"):
        config_lib.apply_override(dense, "channels", "8")


def test_the_new_model_trains_evaluates_exports_and_applies(config, tiny_data, tmp_path):
    workdir = tmp_path / "run"
    metrics = train.train_and_evaluate(config, workdir, data=tiny_data, strategy=mirrored(1))
    assert metrics["epochs_completed"] == 2
    assert (workdir / "figures" / "clean_noisy_denoised.png").exists()

    scored = evaluate.evaluate_workdir(config, workdir, data=tiny_data)
    for name, value in metrics["test"].items():
        assert scored["test"][name] == pytest.approx(value, rel=1e-5), name

    exported = export.export_workdir(config, workdir, tmp_path / "export")
    info = json.loads((exported / export.INFO_FILE).read_text())
    assert (info["model"], info["channels"]) == ("tiny", 4)
    served = tf.saved_model.load(str(exported)).signatures["reconstruct"]
    odd = np.random.default_rng(0).uniform(size=(29, 33)).astype(np.float32)
    np.save(tmp_path / "odd.npy", odd)
    inputs, out = [str(tmp_path / "odd.npy")], tmp_path / "out"
    outcome = next(apply_lib.apply_to_files(config, workdir, inputs, out))
    assert outcome.problem is None
    applied = np.load(outcome.output)
    assert applied.shape == (29, 33)  # padded to the model's multiple of 2, then cropped
    np.testing.assert_allclose(applied, served(image=odd[None])["image"][0], atol=1e-6)

    config.channels = 8  # decides the weights: the run's checkpoint does not fit it
    with pytest.raises(UsageError, match=r"differs in: channels"):
        evaluate.evaluate_workdir(config, workdir, data=tiny_data)
