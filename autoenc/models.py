"""The chapter's two autoencoders, built exactly as the book builds them.

Each builder returns an `Autoencoder`: the trainable `autoencoder` plus an `encoder` and a
`decoder` that share its layers (so training the autoencoder trains them too), as in the
book's compression example where the decoder is rebuilt from the autoencoder's last layer.

`precision` is a Keras dtype policy name for every layer but the last: "float32", or
"mixed_float16" / "mixed_bfloat16" (compute in 16 bits, keep float32 weights). The last layer
always computes in float32, so the sigmoid output and the loss are float32 (Keras' advice for
mixed precision: a 16-bit sigmoid saturates and its BCE loses precision).
"""

from typing import NamedTuple

import keras

IMAGE_SHAPE = (28, 28, 1)
FLAT_SIZE = 28 * 28


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
        activity_regularizer=keras.regularizers.L1(activity_l1),
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


def conv_denoiser(precision: str = "float32") -> Autoencoder:
    """Book section 5.3: Conv32-Pool-Conv32-Pool | Conv32-Up-Conv32-Up-Conv1, 3x3 'same'.

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

    encoder_layers = [
        conv(32, "relu", "enc_conv1"),  # 28x28x32
        keras.layers.MaxPooling2D(2, padding="same", name="enc_pool1", dtype=precision),  # 14x14x32
        conv(32, "relu", "enc_conv2"),  # 14x14x32
        keras.layers.MaxPooling2D(2, padding="same", name="enc_pool2", dtype=precision),  # 7x7x32
    ]
    decoder_layers = [
        conv(32, "relu", "dec_conv1"),  # 7x7x32
        keras.layers.UpSampling2D(2, name="dec_up1", dtype=precision),  # 14x14x32
        conv(32, "relu", "dec_conv2"),  # 14x14x32
        keras.layers.UpSampling2D(2, name="dec_up2", dtype=precision),  # 28x28x32
        conv(1, "sigmoid", "dec_conv3", dtype="float32"),  # 28x28x1
    ]

    def apply(layers, x):
        for layer in layers:
            x = layer(x)
        return x

    image = keras.Input(shape=IMAGE_SHAPE, name="image")
    code = apply(encoder_layers, image)
    autoencoder = keras.Model(image, apply(decoder_layers, code), name="conv_denoiser")
    encoder = keras.Model(image, code, name="encoder")
    code_input = keras.Input(shape=code.shape[1:], name="code")
    decoder = keras.Model(code_input, apply(decoder_layers, code_input), name="decoder")
    return Autoencoder(autoencoder, encoder, decoder)


def build(config) -> Autoencoder:
    """Builds the model a config names (`config.model` is 'dense' or 'conv')."""
    if config.model == "dense":
        return dense_autoencoder(config.encoding_dim, config.activity_l1, config.precision)
    if config.model == "conv":
        return conv_denoiser(config.precision)
    raise ValueError(f"unknown model {config.model!r}")  # validate_config catches this first


def input_shape(config) -> tuple:
    """The shape of one model input: flat 784 vectors for the dense model, images otherwise."""
    return (FLAT_SIZE,) if config.model == "dense" else IMAGE_SHAPE
