"""The chapter's two autoencoders, built exactly as the book builds them, and two beyond them.

Each builder returns an `Autoencoder`: the trainable `autoencoder` plus an `encoder` and a
`decoder` that share its layers (so training the autoencoder trains them too), as in the
book's compression example where the decoder is rebuilt from the autoencoder's last layer.
Besides the book's `dense_autoencoder` and `conv_denoiser` there are `deep_dense_autoencoder`
(hidden layers around the code) and `unet_denoiser` (skip connections, any image size).

`precision` is a Keras dtype policy name: "float32", or "mixed_float16" / "mixed_bfloat16"
(compute in 16 bits, keep float32 weights). The output's sigmoid always computes in float32, so
the output and the loss are float32 (Keras' advice for mixed precision: a 16-bit sigmoid
saturates and its BCE loses precision), and so is the dense model's activity penalty
(`L1ActivityInFloat32`). The dense models' last layer computes in float32; the
convolutional models' last convolution computes in 16 bits and a float32 sigmoid follows it
(`sigmoid_output`), since that convolution, at full resolution, is a large part of their step.

The conv model computes each of the book's UpSampling2D(2) + Conv2D pairs as one
`layers.UpsampledConv2D`: the same function of the same weights with 16 instead of 36
multiply-adds per pixel and channel pair; and each encoder ReLU after the max pooling that
follows it (`layers.MaxPoolingThenReLU`: the same numbers on a quarter of the pixels).
Checkpoints are interchangeable with the book's layers (`conv_denoiser(fused_layers=False)`
builds those, as the benchmark's `fit` does).
The U-Net does the same for each upsampling, skip concatenation and the convolution after
them (`layers.UpsampledSkipConv2D`).
"""

from typing import NamedTuple

import keras

from autoenc.layers import (
    DepthToSpace,
    MaxPoolingThenReLU,
    PassPair,
    SpaceToDepth,
    SplitChannels,
    UpsampledConv2D,
    UpsampledSkipConv2D,
)

IMAGE_SHAPE = (28, 28, 1)
FLAT_SIZE = 28 * 28


@keras.saving.register_keras_serializable("autoenc")
class L1ActivityInFloat32(keras.regularizers.L1):
    """Keras' L1 penalty, summed in float32 whatever the layer computes in.

    Keras' own sums a 16-bit layer's activations in 16 bits and returns a 16-bit loss, which
    `model.fit` then fails to add to its float32 loss ("Cannot convert a list containing a
    tensor of dtype bfloat16"), and a bfloat16 sum of 8,192 activations keeps 8 bits. For a
    float32 layer it is Keras' L1 exactly.
    """

    def __call__(self, x):
        return self.l1 * keras.ops.sum(keras.ops.absolute(keras.ops.cast(x, "float32")))


class Autoencoder(NamedTuple):
    """A trainable autoencoder and the two halves that share its weights."""

    autoencoder: keras.Model
    encoder: keras.Model
    decoder: keras.Model


def dense_autoencoder(
    encoding_dim: int = 32, activity_l1: float = 1e-4, precision: str = "float32"
) -> Autoencoder:
    """Book section 5.2: 784 -> Dense(encoding_dim, relu, L1 activity) -> Dense(784, sigmoid).

    Args:
        encoding_dim: size of the code; 32 gives the book's 24.5x compression.
        activity_l1: L1 activity regulariser on the code (the book's `l1(10e-5)` = 1e-4).
        precision: the dtype policy of the encoding layer (see the module docstring).

    Returns:
        The autoencoder (50,992 parameters at encoding_dim 32), its encoder (784 -> code) and its
        decoder (code -> 784).
    """
    encode = keras.layers.Dense(
        encoding_dim,
        activation="relu",
        activity_regularizer=L1ActivityInFloat32(activity_l1),
        name="encode",
        dtype=precision,
    )
    decode = keras.layers.Dense(FLAT_SIZE, activation="sigmoid", name="decode", dtype="float32")

    image = keras.Input(shape=(FLAT_SIZE,), name="image")
    code = encode(image)
    autoencoder = keras.Model(image, decode(code), name="dense_autoencoder")
    encoder = keras.Model(image, code, name="encoder")
    code_input = keras.Input(shape=(encoding_dim,), name="code")
    decoder = keras.Model(code_input, decode(code_input), name="decoder")
    return Autoencoder(autoencoder, encoder, decoder)


def conv_denoiser(precision: str = "float32", fused_layers: bool = True) -> Autoencoder:
    """Book section 5.3: Conv32-Pool-Conv32-Pool | Conv32-Up-Conv32-Up-Conv1, 3x3 'same'.

    Args:
        precision: the dtype policy of every layer but the last (see the module docstring).
        fused_layers: compute each UpSampling2D(2) with the convolution after it as one
            `layers.UpsampledConv2D` (fewer multiply-adds), and each encoder ReLU after the
            max pooling that follows it (`layers.MaxPoolingThenReLU`, a quarter of the
            pixels): the same function and gradients of the same weights. False builds the
            book's Keras layers as they are. The weights and checkpoints of both are
            interchangeable.

    Returns:
        The denoiser (28,353 parameters), its encoder (28x28x1 -> 7x7x32) and its decoder
        (7x7x32 -> 28x28x1).
    """

    def conv(filters, activation, name, dtype=precision):
        return keras.layers.Conv2D(
            filters, 3, activation=activation, padding="same", name=name, dtype=dtype
        )

    def up(name):
        if fused_layers:  # the next layer upsamples; a no-op keeps the book's layer positions
            return keras.layers.Identity(name=name, dtype=precision)  # (checkpoints record them)
        return keras.layers.UpSampling2D(2, name=name, dtype=precision)

    def up_conv(filters, activation, name, dtype=precision):
        if not fused_layers:
            return conv(filters, activation, name, dtype)
        return UpsampledConv2D(filters, activation, name=name, dtype=dtype)

    def conv_pool(conv_name, pool_name):  # Conv2D(relu) then MaxPooling2D
        if not fused_layers:
            pool = keras.layers.MaxPooling2D(2, padding="same", name=pool_name, dtype=precision)
            return [conv(32, "relu", conv_name), pool]
        pool = MaxPoolingThenReLU(2, padding="same", name=pool_name, dtype=precision)
        return [conv(32, None, conv_name), pool]  # the ReLU comes after the pooling

    encoder_layers = [
        *conv_pool("enc_conv1", "enc_pool1"),  # 28x28x32, 14x14x32
        *conv_pool("enc_conv2", "enc_pool2"),  # 14x14x32, 7x7x32
    ]
    decoder_layers = [
        conv(32, "relu", "dec_conv1"),  # 7x7x32
        up("dec_up1"),  # 14x14x32 (fused: still 7x7x32)
        up_conv(32, "relu", "dec_conv2"),  # 14x14x32
        up("dec_up2"),  # 28x28x32 (fused: still 14x14x32)
        *sigmoid_output(
            lambda act, dtype: up_conv(1, act, "dec_conv3", dtype), precision
        ),  # 28x28x1
    ]
    return _assemble(
        encoder_layers,
        decoder_layers,
        keras.Input(shape=IMAGE_SHAPE, name="image"),
        "conv_denoiser",
    )


def deep_dense_autoencoder(
    encoding_dim: int = 32, hidden_units: int = 512, precision: str = "float32"
) -> Autoencoder:
    """An MLP around a linear code: 784 -> 512 -> 256 -> code -> 256 -> 512 -> 784.

    The hidden layers are ReLU; the code is linear (no ReLU, no L1), so all of it carries
    information; the output is a sigmoid as in the book. The decoder mirrors the encoder.

    Args:
        encoding_dim: size of the code.
        hidden_units: width of the first hidden layer; the second has half as many units.
        precision: the dtype policy of every layer but the last (see the module docstring).

    Returns:
        The autoencoder (1,083,696 parameters at the defaults), its encoder (784 -> code) and
        its decoder (code -> 784).
    """

    def dense(units, name, activation="relu", dtype=precision):
        return keras.layers.Dense(units, activation=activation, name=name, dtype=dtype)

    widths = (hidden_units, hidden_units // 2)
    encoder_layers = [dense(n, f"enc_dense{i + 1}") for i, n in enumerate(widths)]
    encoder_layers.append(dense(encoding_dim, "encode", activation=None))
    decoder_layers = [dense(n, f"dec_dense{i + 1}") for i, n in enumerate(widths[::-1])]
    decoder_layers.append(dense(FLAT_SIZE, "decode", activation="sigmoid", dtype="float32"))
    return _assemble(
        encoder_layers, decoder_layers, keras.Input(shape=(FLAT_SIZE,), name="image"), "deep_dense"
    )


def unet_denoiser(
    filters: int = 16, precision: str = "float32", fused_layers: bool = True
) -> Autoencoder:
    """A small U-Net: two 3x3 ReLU convs per level at `filters`, 2x and 4x channels, with
    2x2 max pooling down, upsampling back, and the skip connections concatenated.

    A U-Net's decoder needs the encoder's full-resolution features as well as its bottleneck,
    so the code is all three levels packed at 1/4 resolution: the 28x28 and 14x14 features
    moved into channels (space-to-depth) and stacked with the 7x7 bottleneck, (7, 7, 28 *
    filters). The decoder unpacks it; `decoder(encoder(x))` is `autoencoder(x)`. Every layer
    takes any height and width divisible by 4, so the model is declared on (None, None, 1).

    Args:
        filters: channels at full resolution (16 gives 16/32/64).
        precision: the dtype policy of every layer but the last (see the module docstring).
        fused_layers: compute each upsampling, skip concatenation and the convolution
            after them as one `layers.UpsampledSkipConv2D` (the same function and weights);
            False builds Keras' UpSampling2D, Concatenate and Conv2D layers.

    Returns:
        The denoiser (118,113 parameters at filters 16), its encoder (H x W x 1 -> H/4 x W/4 x
        28 * filters) and its decoder (the code -> H x W x 1).
    """
    widths = (filters, 2 * filters, 4 * filters)

    def conv(width, name, activation="relu", dtype=precision):
        return keras.layers.Conv2D(
            width, 3, activation=activation, padding="same", name=name, dtype=dtype
        )

    def twice(width, name):
        return [conv(width, f"{name}a"), conv(width, f"{name}b")]

    def layer(cls, *args, name):
        return cls(*args, name=name, dtype=precision)

    image = keras.Input(shape=(None, None, 1), name="image")
    full = _chain(twice(widths[0], "enc1_conv"), image)
    half = _chain([layer(keras.layers.MaxPooling2D, 2, name="enc_pool1")], full)
    half = _chain(twice(widths[1], "enc2_conv"), half)
    quarter = layer(keras.layers.MaxPooling2D, 2, name="enc_pool2")(half)
    quarter = _chain(twice(widths[2], "bottleneck_conv"), quarter)
    pack = layer(keras.layers.Concatenate, name="pack")
    full_packed = layer(SpaceToDepth, 4, name="pack_full")(full)
    code = pack([full_packed, layer(SpaceToDepth, 2, name="pack_half")(half), quarter])
    encoder = keras.Model(image, code, name="encoder")

    split = layer(SplitChannels, (16 * widths[0], 4 * widths[1], widths[2]), name="unpack")
    unpack_full = layer(DepthToSpace, 4, name="unpack_full")
    unpack_half = layer(DepthToSpace, 2, name="unpack_half")
    if fused_layers:  # see conv_denoiser; the no-op layers keep the layer positions
        up1, up2 = (layer(keras.layers.Identity, name=f"dec_up{i}") for i in (1, 2))
        join1, join2 = (layer(PassPair, name=f"dec_skip{i}") for i in (1, 2))
        convs1, convs2 = (
            [layer(UpsampledSkipConv2D, width, "relu", name=f"{name}a"), conv(width, f"{name}b")]
            for width, name in ((widths[1], "dec1_conv"), (widths[0], "dec2_conv"))
        )
    else:
        up1, up2 = (layer(keras.layers.UpSampling2D, 2, name=f"dec_up{i}") for i in (1, 2))
        join1, join2 = (layer(keras.layers.Concatenate, name=f"dec_skip{i}") for i in (1, 2))
        convs1, convs2 = twice(widths[1], "dec1_conv"), twice(widths[0], "dec2_conv")
    output = sigmoid_output(lambda act, dtype: conv(1, "dec_out", act, dtype), precision)

    def decode(code):
        full, half, quarter = split(code)
        x = _chain(convs1, join1([up1(quarter), unpack_half(half)]))
        x = _chain(convs2, join2([up2(x), unpack_full(full)]))
        return _chain(output, x)

    autoencoder = keras.Model(image, decode(code), name="unet_denoiser")
    code_input = keras.Input(shape=code.shape[1:], name="code")
    decoder = keras.Model(code_input, decode(code_input), name="decoder")
    return Autoencoder(autoencoder, encoder, decoder)


def sigmoid_output(make_conv, precision: str) -> list:
    """The output layers of the convolutional models: a one-channel convolution and a sigmoid.

    In float32 it is one `Conv2D(1, sigmoid)` layer, the book's. In mixed precision the
    convolution computes in 16 bits without an activation and a float32 `Activation` layer
    applies the sigmoid, as Keras' mixed-precision guide does it, so only the sigmoid and the
    loss pay for float32. `make_conv(activation, dtype)` builds the model's one-channel Conv2D.
    """
    if precision == "float32":
        return [make_conv("sigmoid", "float32")]
    convolution = make_conv(None, precision)
    name = f"{convolution.name}_sigmoid"
    return [convolution, keras.layers.Activation("sigmoid", name=name, dtype="float32")]


def _chain(layers, x):
    """`x` through each layer in turn."""
    for layer in layers:
        x = layer(x)
    return x


def _assemble(encoder_layers, decoder_layers, image, name) -> Autoencoder:
    """The triple of a chain of encoder layers followed by a chain of decoder layers."""
    chain = _chain
    code = chain(encoder_layers, image)
    autoencoder = keras.Model(image, chain(decoder_layers, code), name=name)
    encoder = keras.Model(image, code, name="encoder")
    code_input = keras.Input(shape=code.shape[1:], name="code")
    decoder = keras.Model(code_input, chain(decoder_layers, code_input), name="decoder")
    return Autoencoder(autoencoder, encoder, decoder)


# Models whose input is a flat 784 vector (28x28 images only); the others take images.
FLAT_MODELS = ("dense", "deep_dense")


def build(config, fused_layers: bool = True) -> Autoencoder:
    """Builds the model a config names (`config.model`, one of config.MODEL_FIELDS).

    `fused_layers=False` builds the conv model and the U-Net from Keras' own layers (see
    `conv_denoiser` and `unet_denoiser`); the dense models do not depend on it.
    """
    if config.model == "dense":
        return dense_autoencoder(config.encoding_dim, config.activity_l1, config.precision)
    if config.model == "conv":
        return conv_denoiser(config.precision, fused_layers)
    if config.model == "deep_dense":
        return deep_dense_autoencoder(config.encoding_dim, config.hidden_units, config.precision)
    if config.model == "unet":
        return unet_denoiser(config.filters, config.precision, fused_layers)
    raise ValueError(f"unknown model {config.model!r}")  # validate_config catches this first


def input_shape(config) -> tuple:
    """The shape of one model input: flat 784 vectors for the dense models, images otherwise."""
    return (FLAT_SIZE,) if config.model in FLAT_MODELS else IMAGE_SHAPE
