"""The convolutional denoisers on (H, W, 1) images: the book's (section 5.3) and a U-Net.

They use `autoenc.layers`' fused stand-ins for Keras' layers (the same weights, names and
positions, so the same checkpoints), with a no-op layer (`Identity`, `PassPair`) where an
upsampling or a concatenation was. `precision` is a Keras dtype policy name, for every layer but
the output's sigmoid (`sigmoid_output`).
"""

import keras

from autoenc import layers
from autoenc.models import IMAGE_SHAPE, Autoencoder
from autoenc.models.chains import assemble, chain


def _conv(width, name, dtype, act="relu"):
    return keras.layers.Conv2D(width, 3, activation=act, padding="same", name=name, dtype=dtype)


def conv_denoiser(precision: str = "float32") -> Autoencoder:
    """Book section 5.3: Conv32-Pool-Conv32-Pool | Conv32-Up-Conv32-Up-Conv1, 3x3 'same', ReLU
    but for the sigmoid output.

    Args:
        precision: the dtype policy of every layer but the sigmoid.

    Returns:
        The denoiser (28,353 parameters), its encoder (28x28x1 -> 7x7x32) and its decoder
        (7x7x32 -> 28x28x1).
    """

    def up(name):  # the next layer upsamples; a no-op keeps the book's layer positions
        return keras.layers.Identity(name=name, dtype=precision)

    def conv_pool(i):  # the book's Conv2D(relu) then MaxPooling2D, the ReLU after the pooling
        pool = layers.MaxPoolingThenReLU(2, padding="same", name=f"enc_pool{i}", dtype=precision)
        return [_conv(32, f"enc_conv{i}", precision, None), pool]

    def last(activation, dtype):
        return layers.UpsampledConv2D(1, activation, name="dec_conv3", dtype=dtype)

    encoder_layers = [*conv_pool(1), *conv_pool(2)]  # 28x28x32, 14x14x32; 14x14x32, 7x7x32
    decoder_layers = [
        _conv(32, "dec_conv1", precision),  # 7x7x32
        up("dec_up1"),  # the book's 14x14x32; still 7x7x32
        layers.UpsampledConv2D(32, "relu", name="dec_conv2", dtype=precision),  # 14x14x32
        up("dec_up2"),  # the book's 28x28x32; still 14x14x32
        *sigmoid_output(last, precision),  # 28x28x1
    ]
    image = keras.Input(shape=IMAGE_SHAPE, name="image")
    return assemble(encoder_layers, decoder_layers, image, "conv_denoiser")


def unet_denoiser(filters: int = 16, precision: str = "float32") -> Autoencoder:
    """A small U-Net: two 3x3 ReLU convs per level at `filters`, 2x and 4x channels, with 2x2
    max pooling down, upsampling back, and the skip connections concatenated.

    Its decoder needs all three levels, so the code packs them into channels at 1/4 resolution
    and the decoder unpacks it: `decoder(encoder(x))` is `autoencoder(x)`. It takes any height
    and width divisible by 4, so it is declared on (None, None, 1).

    Args:
        filters: channels at full resolution (16 gives 16/32/64).
        precision: the dtype policy of every layer but the sigmoid.

    Returns:
        The denoiser (118,113 parameters at filters 16), its encoder (H x W x 1 -> H/4 x W/4 x
        28 * filters) and its decoder (the code -> H x W x 1).
    """
    widths = (filters, 2 * filters, 4 * filters)

    def twice(width, name):
        return [_conv(width, f"{name}a", precision), _conv(width, f"{name}b", precision)]

    def layer(cls, *args, name):
        return cls(*args, name=name, dtype=precision)

    image = keras.Input(shape=(None, None, 1), name="image")
    full = chain(twice(widths[0], "enc1_conv"), image)
    half = chain([layer(keras.layers.MaxPooling2D, 2, name="enc_pool1")], full)
    half = chain(twice(widths[1], "enc2_conv"), half)
    quarter = layer(keras.layers.MaxPooling2D, 2, name="enc_pool2")(half)
    quarter = chain(twice(widths[2], "bottleneck_conv"), quarter)
    pack = layer(keras.layers.Concatenate, name="pack")
    full_packed = layer(layers.SpaceToDepth, 4, name="pack_full")(full)
    code = pack([full_packed, layer(layers.SpaceToDepth, 2, name="pack_half")(half), quarter])
    encoder = keras.Model(image, code, name="encoder")

    sizes = (16 * widths[0], 4 * widths[1], widths[2])
    split = layer(layers.SplitChannels, sizes, name="unpack")
    unpack_full = layer(layers.DepthToSpace, 4, name="unpack_full")
    unpack_half = layer(layers.DepthToSpace, 2, name="unpack_half")
    # No-op layers where Keras' UpSampling2D and Concatenate were keep the layer positions.
    up1, up2 = (layer(keras.layers.Identity, name=f"dec_up{i}") for i in (1, 2))
    join1, join2 = (layer(layers.PassPair, name=f"dec_skip{i}") for i in (1, 2))
    convs1, convs2 = (
        [layer(layers.UpsampledSkipConv2D, w, "relu", name=f"{n}a"), _conv(w, f"{n}b", precision)]
        for w, n in ((widths[1], "dec1_conv"), (widths[0], "dec2_conv"))
    )
    output = sigmoid_output(lambda act, dtype: _conv(1, "dec_out", dtype, act), precision)

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
    """The output layers: `make_conv(activation, dtype)`, the one-channel convolution, then the
    sigmoid. In float32 one `Conv2D(1, sigmoid)`, the book's; in mixed precision the convolution
    (a large part of a step) computes in 16 bits and a float32 `Activation` applies the sigmoid
    (Keras' advice: a 16-bit sigmoid saturates and its BCE loses precision)."""
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
