"""The convolutional denoisers on (H, W, 1) images: the book's (section 5.3) and a U-Net.

Both compute their models' functions with layers fused where Keras' own would take longer, with
the weights, initialisers, layer names and positions (so the checkpoints) of the Keras layers
they stand for:

- each `UpSampling2D(2)` and the 3x3 convolution after it are one `layers.UpsampledConv2D`
  (16 instead of 36 multiply-adds per pixel and channel pair); in the U-Net, with the skip
  concatenated between them, one `layers.UpsampledSkipConv2D`. A no-op layer (`Identity`,
  `PassPair`) stands where the upsampling and the concatenation were;
- each encoder ReLU of the book's model is applied after the max pooling that follows it
  (`layers.MaxPoolingThenReLU`: the same numbers on a quarter of the pixels).

`precision` is a Keras dtype policy name: "float32", or "mixed_float16" / "mixed_bfloat16"
(compute in 16 bits, keep float32 weights). The last convolution computes in 16 bits and a
float32 sigmoid follows it (`sigmoid_output`), since that convolution, at full resolution, is a
large part of a step, while the output and the loss stay float32 (Keras' advice for mixed
precision: a 16-bit sigmoid saturates and its BCE loses precision).
"""

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
from autoenc.models import IMAGE_SHAPE, Autoencoder
from autoenc.models.chains import assemble, chain


def conv_denoiser(precision: str = "float32") -> Autoencoder:
    """Book section 5.3: Conv32-Pool-Conv32-Pool | Conv32-Up-Conv32-Up-Conv1, 3x3 'same', ReLU
    but for the sigmoid output, computed with fused layers (see the module docstring).

    Args:
        precision: the dtype policy of every layer but the last (see the module docstring).

    Returns:
        The denoiser (28,353 parameters), its encoder (28x28x1 -> 7x7x32) and its decoder
        (7x7x32 -> 28x28x1).
    """

    def conv(filters, activation, name, dtype=precision):
        return keras.layers.Conv2D(
            filters, 3, activation=activation, padding="same", name=name, dtype=dtype
        )

    def up(name):  # the next layer upsamples; a no-op keeps the book's layer positions
        return keras.layers.Identity(name=name, dtype=precision)

    def conv_pool(conv_name, pool_name):  # the book's Conv2D(relu) then MaxPooling2D
        pool = MaxPoolingThenReLU(2, padding="same", name=pool_name, dtype=precision)
        return [conv(32, None, conv_name), pool]  # the ReLU comes after the pooling

    encoder_layers = [
        *conv_pool("enc_conv1", "enc_pool1"),  # 28x28x32, 14x14x32
        *conv_pool("enc_conv2", "enc_pool2"),  # 14x14x32, 7x7x32
    ]
    decoder_layers = [
        conv(32, "relu", "dec_conv1"),  # 7x7x32
        up("dec_up1"),  # the book's 14x14x32; still 7x7x32
        UpsampledConv2D(32, "relu", name="dec_conv2", dtype=precision),  # 14x14x32
        up("dec_up2"),  # the book's 28x28x32; still 14x14x32
        *sigmoid_output(
            lambda act, dtype: UpsampledConv2D(1, act, name="dec_conv3", dtype=dtype), precision
        ),  # 28x28x1
    ]
    image = keras.Input(shape=IMAGE_SHAPE, name="image")
    return assemble(encoder_layers, decoder_layers, image, "conv_denoiser")


def unet_denoiser(filters: int = 16, precision: str = "float32") -> Autoencoder:
    """A small U-Net: two 3x3 ReLU convs per level at `filters`, 2x and 4x channels, with
    2x2 max pooling down, upsampling back, and the skip connections concatenated.

    A U-Net's decoder needs the encoder's full-resolution features as well as its bottleneck,
    so the code is all three levels packed at 1/4 resolution: the 28x28 and 14x14 features
    moved into channels (space-to-depth) and stacked with the 7x7 bottleneck, (7, 7, 28 *
    filters). The decoder unpacks it; `decoder(encoder(x))` is `autoencoder(x)`. Every layer
    takes any height and width divisible by 4, so the model is declared on (None, None, 1).
    Each upsampling, skip concatenation and the convolution after them are one
    `layers.UpsampledSkipConv2D` (see the module docstring).

    Args:
        filters: channels at full resolution (16 gives 16/32/64).
        precision: the dtype policy of every layer but the last (see the module docstring).

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
    full = chain(twice(widths[0], "enc1_conv"), image)
    half = chain([layer(keras.layers.MaxPooling2D, 2, name="enc_pool1")], full)
    half = chain(twice(widths[1], "enc2_conv"), half)
    quarter = layer(keras.layers.MaxPooling2D, 2, name="enc_pool2")(half)
    quarter = chain(twice(widths[2], "bottleneck_conv"), quarter)
    pack = layer(keras.layers.Concatenate, name="pack")
    full_packed = layer(SpaceToDepth, 4, name="pack_full")(full)
    code = pack([full_packed, layer(SpaceToDepth, 2, name="pack_half")(half), quarter])
    encoder = keras.Model(image, code, name="encoder")

    split = layer(SplitChannels, (16 * widths[0], 4 * widths[1], widths[2]), name="unpack")
    unpack_full = layer(DepthToSpace, 4, name="unpack_full")
    unpack_half = layer(DepthToSpace, 2, name="unpack_half")
    # No-op layers where Keras' UpSampling2D and Concatenate were keep the layer positions.
    up1, up2 = (layer(keras.layers.Identity, name=f"dec_up{i}") for i in (1, 2))
    join1, join2 = (layer(PassPair, name=f"dec_skip{i}") for i in (1, 2))
    convs1, convs2 = (
        [layer(UpsampledSkipConv2D, width, "relu", name=f"{name}a"), conv(width, f"{name}b")]
        for width, name in ((widths[1], "dec1_conv"), (widths[0], "dec2_conv"))
    )
    output = sigmoid_output(lambda act, dtype: conv(1, "dec_out", act, dtype), precision)

    def decode(code):
        full, half, quarter = split(code)
        x = chain(convs1, join1([up1(quarter), unpack_half(half)]))
        x = chain(convs2, join2([up2(x), unpack_full(full)]))
        return chain(output, x)

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


def build_conv(config) -> Autoencoder:
    """The `conv` model of a config."""
    return conv_denoiser(config.precision)


def build_unet(config) -> Autoencoder:
    """The `unet` model of a config."""
    return unet_denoiser(config.filters, config.precision)
