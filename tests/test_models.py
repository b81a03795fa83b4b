"""The models: the registry, parameter counts, shapes, and shared encoder/decoder weights; the
fused layers against the book's Keras layers; the new configs' models also train, resume,
export, evaluate and apply end to end on tiny data."""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from conftest import ROOT, mirrored

from autoenc import apply as apply_lib
from autoenc import checkpoints, evaluate, export, models, train
from autoenc import config as config_lib
from autoenc.errors import UsageError
from autoenc.layers import DepthToSpace, SpaceToDepth, SplitChannels, UpsampledConv2D
from autoenc.models import conv, dense
from autoenc.models.chains import assemble, chain


def book_conv_denoiser(precision="float32"):
    """The book's section 5.3 model from Keras' own layers, created in the order
    `conv.conv_denoiser` creates the layers that stand for them."""

    def conv2d(filters, activation, name, dtype=precision):
        return keras.layers.Conv2D(
            filters, 3, activation=activation, padding="same", name=name, dtype=dtype
        )

    def pool(name):
        return keras.layers.MaxPooling2D(2, padding="same", name=name, dtype=precision)

    def up(name):
        return keras.layers.UpSampling2D(2, name=name, dtype=precision)

    encoder = [conv2d(32, "relu", "enc_conv1"), pool("enc_pool1")]
    encoder += [conv2d(32, "relu", "enc_conv2"), pool("enc_pool2")]
    decoder = [conv2d(32, "relu", "dec_conv1"), up("dec_up1"), conv2d(32, "relu", "dec_conv2")]
    output = conv.sigmoid_output(lambda act, dtype: conv2d(1, act, "dec_conv3", dtype), precision)
    decoder += [up("dec_up2"), *output]
    image = keras.Input(shape=models.IMAGE_SHAPE, name="image")
    return assemble(encoder, decoder, image, "conv_denoiser")


def book_unet_denoiser(filters=16, precision="float32"):
    """`conv.unet_denoiser`'s autoencoder from Keras' UpSampling2D, Concatenate and Conv2D, its
    layers created in the same order."""
    widths = (filters, 2 * filters, 4 * filters)

    def conv2d(width, name, activation="relu", dtype=precision):
        return keras.layers.Conv2D(
            width, 3, activation=activation, padding="same", name=name, dtype=dtype
        )

    def twice(width, name):
        return [conv2d(width, f"{name}a"), conv2d(width, f"{name}b")]

    def layer(cls, *args, name):
        return cls(*args, name=name, dtype=precision)

    image = keras.Input(shape=(None, None, 1), name="image")
    full = chain(twice(widths[0], "enc1_conv"), image)
    half = chain([layer(keras.layers.MaxPooling2D, 2, name="enc_pool1")], full)
    half = chain(twice(widths[1], "enc2_conv"), half)
    quarter = layer(keras.layers.MaxPooling2D, 2, name="enc_pool2")(half)
    quarter = chain(twice(widths[2], "bottleneck_conv"), quarter)
    pack = layer(keras.layers.Concatenate, name="pack")
    full_packed = layer(SpaceToDepth, 4, name="pack_full")(full)
    code = pack([full_packed, layer(SpaceToDepth, 2, name="pack_half")(half), quarter])
    sizes = (16 * widths[0], 4 * widths[1], widths[2])
    full, half, quarter = layer(SplitChannels, sizes, name="unpack")(code)
    unpack_full = layer(DepthToSpace, 4, name="unpack_full")
    unpack_half = layer(DepthToSpace, 2, name="unpack_half")
    up1, up2 = (layer(keras.layers.UpSampling2D, 2, name=f"dec_up{i}") for i in (1, 2))
    join1, join2 = (layer(keras.layers.Concatenate, name=f"dec_skip{i}") for i in (1, 2))
    convs1, convs2 = twice(widths[1], "dec1_conv"), twice(widths[0], "dec2_conv")
    output = conv.sigmoid_output(lambda act, dtype: conv2d(1, "dec_out", act, dtype), precision)
    x = chain(convs1, join1([up1(quarter), unpack_half(half)]))
    x = chain(convs2, join2([up2(x), unpack_full(full)]))
    return keras.Model(image, chain(output, x), name="unet_denoiser")


def test_the_registry_describes_each_model():
    assert models.names() == ("dense", "conv", "deep_dense", "unet")
    dense_spec = models.spec("dense")
    assert dense_spec.fields == ("encoding_dim", "activity_l1") and dense_spec.flat
    assert dense_spec.code_size_field == "encoding_dim" and dense_spec.xla_nondeterminism is None
    unet = models.spec(config_lib.load_config("unet_denoise"))
    assert (unet.name, unet.fields, unet.flat, unet.size_multiple) == (
        "unet",
        ("filters",),
        False,
        4,
    )
    assert "MaxPool" in unet.xla_nondeterminism and unet.code_size_field is None
    with pytest.raises(TypeError):
        unet.bounds["filters"] = models.Bounds(2)  # an entry is frozen, its bounds too
    with pytest.raises(UsageError, match="unknown model 'nosuch'; the models are dense, conv"):
        models.spec("nosuch")
    with pytest.raises(ValueError, match="registered already"):
        models.register(models.ModelSpec("conv", conv.build_conv))


def test_the_registry_loads_no_keras():
    script = (
        "import sys\n"
        "from autoenc import models\n"
        "print(models.spec('unet').fields, models.names()[-1], 'keras' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["('filters',)", "unet", "False"], result.stderr


def test_dense_autoencoder_matches_book():
    nets = dense.dense_autoencoder(encoding_dim=32)
    assert nets.autoencoder.count_params() == 50_992
    assert nets.encoder.output.shape == (None, 32)
    assert nets.decoder.input.shape == (None, 32)
    assert nets.decoder.output.shape == (None, 784)
    assert [l.name for l in nets.autoencoder.layers] == ["image", "encode", "decode"]


def test_dense_sanity_variant_has_768_code():
    nets = dense.dense_autoencoder(encoding_dim=768)
    assert nets.autoencoder.count_params() == 784 * 768 + 768 + 768 * 784 + 784


def test_dense_activity_penalty_is_float32_so_fit_trains_in_bfloat16():
    x = np.random.default_rng(0).uniform(size=(64, 784)).astype("float32")
    mixed = dense.dense_autoencoder(precision="mixed_bfloat16").autoencoder
    code = mixed.get_layer("encode")(x)
    assert code.dtype == "bfloat16"
    # The penalty sums the bfloat16 code in float32 (Keras' L1 returns a bfloat16 sum).
    (penalty,) = mixed.get_layer("encode").losses
    assert penalty.dtype == "float32"
    expected = 1e-4 * np.abs(np.asarray(tf.cast(code, tf.float32), np.float64)).sum() / 64
    np.testing.assert_allclose(float(penalty), expected, rtol=1e-5)
    # Keras' fit fails on a 16-bit penalty ("Cannot convert a list containing a tensor of
    # dtype bfloat16"): the benchmark's fit in bfloat16 needs this.
    mixed.compile(
        optimizer=keras.optimizers.Adadelta(learning_rate=1.0), loss="binary_crossentropy"
    )
    history = mixed.fit(x, x, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # In float32 it is Keras' L1 exactly.
    plain = dense.dense_autoencoder().autoencoder
    code = plain.get_layer("encode")(x)
    keras_l1 = keras.regularizers.L1(1e-4)(code) / 64
    assert float(plain.get_layer("encode").losses[0]) == float(keras_l1)


def test_conv_denoiser_matches_book():
    book = book_conv_denoiser()
    assert book.autoencoder.count_params() == 28_353
    shapes = [tuple(l.output.shape[1:]) for l in book.autoencoder.layers[1:]]
    assert shapes == [
        (28, 28, 32), (14, 14, 32), (14, 14, 32), (7, 7, 32),
        (7, 7, 32), (14, 14, 32), (14, 14, 32), (28, 28, 32), (28, 28, 1),
    ]  # fmt: skip
    fused = conv.conv_denoiser()
    assert fused.autoencoder.count_params() == 28_353
    # The same layers in the same places; each upsampling happens in the convolution after it.
    names = [l.name for l in fused.autoencoder.layers]
    assert names == [l.name for l in book.autoencoder.layers]
    upsampled_convs = [l for l in fused.autoencoder.layers if isinstance(l, UpsampledConv2D)]
    assert [l.name for l in upsampled_convs] == ["dec_conv2", "dec_conv3"]
    for nets in (book, fused):
        assert nets.encoder.output.shape == (None, 7, 7, 32)
        assert nets.decoder.output.shape == (None, 28, 28, 1)


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize(
    "build, build_book",
    [
        (conv.conv_denoiser, lambda precision: book_conv_denoiser(precision).autoencoder),
        (conv.unet_denoiser, lambda precision: book_unet_denoiser(precision=precision)),
    ],
    ids=["conv", "unet"],
)
def test_fused_layers_are_the_same_model_with_the_same_weights(
    build, build_book, precision, tmp_path
):
    keras.utils.set_random_seed(3)
    book = build_book(precision)
    keras.utils.set_random_seed(3)
    fused = build(precision=precision).autoencoder
    assert [l.name for l in fused.layers] == [l.name for l in book.layers]
    for a, b in zip(book.get_weights(), fused.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the same initial weights from the same seed
    images = np.random.default_rng(0).uniform(size=(4, 28, 28, 1)).astype("float32")
    tolerance = 1e-6 if precision == "float32" else 2e-3
    np.testing.assert_allclose(fused(images), book(images), atol=tolerance)
    # Checkpoints of either restore into the other (runs saved with Keras' layers resume).
    saved = tf.train.Checkpoint(model=book).save(str(tmp_path / "book"))
    keras.utils.set_random_seed(4)
    other = build(precision=precision).autoencoder
    tf.train.Checkpoint(model=other).restore(saved).assert_existing_objects_matched()
    np.testing.assert_allclose(other(images), book(images), atol=tolerance)


def test_encoder_then_decoder_equals_autoencoder_and_shares_weights():
    for nets in (dense.dense_autoencoder(), conv.conv_denoiser()):
        shape = (5, *nets.autoencoder.input.shape[1:])
        x = np.random.default_rng(0).uniform(size=shape).astype("float32")
        whole = nets.autoencoder(x)
        np.testing.assert_allclose(nets.decoder(nets.encoder(x)), whole, rtol=1e-5, atol=1e-6)
        # Changing the autoencoder's last layer changes the decoder too: they are one layer.
        last = nets.autoencoder.layers[-1]
        last.set_weights([w + 0.1 for w in last.get_weights()])
        changed = nets.decoder(nets.encoder(x))
        np.testing.assert_allclose(changed, nets.autoencoder(x), rtol=1e-5, atol=1e-6)
        assert not np.allclose(changed, whole)


def test_deep_dense_autoencoder_shapes():
    nets = dense.deep_dense_autoencoder(encoding_dim=32, hidden_units=512)
    # 784-512-256-32 and back: weights plus biases of six Dense layers.
    assert nets.autoencoder.count_params() == 1_083_696
    assert [l.output.shape[1] for l in nets.autoencoder.layers[1:]] == [512, 256, 32, 256, 512, 784]
    assert nets.encoder.output.shape == (None, 32)
    assert nets.decoder.input.shape == (None, 32)
    assert nets.decoder.output.shape == (None, 784)
    assert nets.autoencoder.layers[-1].dtype_policy.name == "float32"


def test_unet_denoiser_shapes_and_code():
    nets = conv.unet_denoiser(filters=16)
    assert nets.autoencoder.count_params() == 118_113
    # The code packs the 28x28x16 and 14x14x32 skips and the 7x7x64 bottleneck at 7x7.
    x = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype("float32")
    assert nets.encoder(x).shape == (2, 7, 7, 16 * 16 + 32 * 4 + 64)
    assert nets.decoder.output.shape == (None, None, None, 1)
    assert conv.unet_denoiser(filters=8).autoencoder.count_params() < 118_113 / 3


def test_unet_denoiser_takes_any_size_divisible_by_four():
    nets = conv.unet_denoiser()
    for height, width in ((28, 28), (36, 44), (4, 8)):
        x = np.random.default_rng(1).uniform(size=(1, height, width, 1)).astype("float32")
        assert nets.autoencoder(x).shape == (1, height, width, 1)
    # Fully convolutional: a 28x28 image's output is the same whatever batch it is in.
    x = np.random.default_rng(2).uniform(size=(3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(
        nets.autoencoder(x[1:2]), nets.autoencoder(x)[1:2], rtol=1e-5, atol=1e-6
    )


def test_new_models_share_weights_between_the_halves():
    for nets in (dense.deep_dense_autoencoder(), conv.unet_denoiser()):
        shape = (4, *(d or 28 for d in nets.autoencoder.input.shape[1:]))
        x = np.random.default_rng(0).uniform(size=shape).astype("float32")
        whole = nets.autoencoder(x)
        np.testing.assert_allclose(nets.decoder(nets.encoder(x)), whole, rtol=1e-5, atol=1e-6)
        first = nets.autoencoder.layers[1]  # an encoder layer
        first.set_weights([w + 0.1 for w in first.get_weights()])
        changed = nets.decoder(nets.encoder(x))
        np.testing.assert_allclose(changed, nets.autoencoder(x), rtol=1e-5, atol=1e-6)
        assert not np.allclose(changed, whole)


@pytest.mark.parametrize(
    "name, params",
    [("deep_compress", 1_083_696), ("unet_denoise", 118_113), ("blind_denoise", 118_113)],
)
def test_new_configs_build_their_models(name, params):
    config = config_lib.load_config(name)
    config_lib.validate(config, num_train_images=60_000)
    nets = models.build(config)
    assert nets.autoencoder.count_params() == params
    flat = models.spec(config).flat
    assert models.input_shape(config) == ((784,) if flat else (28, 28, 1))
    assert nets.autoencoder.input.shape[1:] == ((784,) if flat else (None, None, 1))


def tiny(name):
    """The config `name`, shrunk to a quick run on the tiny synthetic data."""
    config = config_lib.load_config(name)
    with config.unlocked():
        config.update(batch_size=64, epochs=1, train_examples=256)
        config.update(image_every_epochs=0, loss_every_steps=0)
    return config


@pytest.mark.parametrize("name", ["deep_compress", "unet_denoise", "blind_denoise"])
def test_new_configs_train_resume_export_evaluate_and_apply(name, tiny_data, tmp_path):
    config, workdir = tiny(name), tmp_path / "run"
    train.train_and_evaluate(config, workdir, data=tiny_data, strategy=mirrored(1))
    config.epochs = 2  # rerunning the command with more epochs resumes the run
    metrics = train.train_and_evaluate(config, workdir, data=tiny_data, strategy=mirrored(1))
    assert metrics["epochs_completed"] == 2
    assert len((workdir / "history.csv").read_text().splitlines()) == 3

    nets = checkpoints.load_best_model(config, workdir)
    loaded = tf.saved_model.load(str(export.export_workdir(config, workdir, tmp_path / "export")))
    images = tiny_data.x_test[:4].astype(np.float32) / 255
    served = loaded.signatures["reconstruct"](image=images)["image"].numpy()
    expected = nets.autoencoder(images.reshape(4, *models.input_shape(config)))
    np.testing.assert_allclose(served, np.reshape(expected, (4, 28, 28)), atol=1e-6)
    code = loaded.signatures["encode"](image=images)["code"]
    decoded = loaded.signatures["decode"](code=code)["image"].numpy()
    np.testing.assert_allclose(decoded, served, atol=1e-5)

    quality = evaluate.evaluate_workdir(config, workdir, noise_factor=0.3, data=tiny_data)
    assert quality["noise_factor"] == 0.3 and quality["test"]["psnr"] > 0

    odd = np.random.default_rng(0).uniform(size=(30, 33)).astype(np.float32)
    np.save(tmp_path / "odd.npy", odd)
    out = tmp_path / "out"
    outcome = next(apply_lib.apply_to_files(config, workdir, [str(tmp_path / "odd.npy")], out))
    if models.spec(config).flat:  # 784-vectors: 28x28 images only
        assert outcome.problem is not None
    else:  # fully convolutional: any size, kept
        assert outcome.problem is None
        assert np.load(out / "odd.npy").shape == (30, 33)


def test_runs_saved_before_the_noise_level_and_schedule_fields_still_resume():
    current = config_lib.load_config("blind_denoise").to_dict()
    later = ("noise_factor_max", "lr_schedule")
    saved = {key: value for key, value in current.items() if key not in later}
    assert config_lib.differing_fields(saved, {**current, "noise_factor_max": 0.0}) == []
    assert config_lib.differing_fields(saved, current) == ["noise_factor_max"]
    cosine = {**current, "noise_factor_max": 0.0, "lr_schedule": "cosine"}
    assert config_lib.differing_fields(saved, cosine) == ["lr_schedule"]


@pytest.mark.parametrize("build", [conv.conv_denoiser, conv.unet_denoiser], ids=["conv", "unet"])
def test_mixed_precision_output_convolution_is_16_bit_and_its_sigmoid_float32(build):
    book = build(precision="float32").autoencoder
    assert book.layers[-1].activation is keras.activations.sigmoid  # one Conv2D, as the book's
    mixed = build(precision="mixed_bfloat16").autoencoder
    convolution, sigmoid = mixed.layers[-2:]
    assert convolution.compute_dtype == "bfloat16" and sigmoid.compute_dtype == "float32"
    assert mixed.count_params() == book.count_params() and mixed.output.dtype == "float32"
    images = np.random.default_rng(0).uniform(size=(2, 28, 28, 1)).astype("float32")
    outputs = mixed(images).numpy()
    assert outputs.dtype == np.float32 and ((outputs > 0) & (outputs < 1)).all()
