"""The dense models on flat 784-vectors: the book's compression autoencoder (section 5.2) and a
deeper MLP around a linear code. `precision` is a Keras dtype policy name; the last layer (so the
output and the loss) stays float32, as Keras advises, and so does the activity penalty."""

import keras

from autoenc.models import FLAT_SIZE, Autoencoder
from autoenc.models.chains import assemble


@keras.saving.register_keras_serializable("autoenc")
class L1ActivityInFloat32(keras.regularizers.L1):
    """Keras' L1 penalty, summed in float32 whatever the layer computes in: Keras' own sums a
    16-bit layer's activations in 16 bits into a 16-bit loss, which `model.fit` fails to add to
    its float32 loss. For a float32 layer it is Keras' L1 exactly."""

    def __call__(self, x):
        return self.l1 * keras.ops.sum(keras.ops.absolute(keras.ops.cast(x, "float32")))


def _image():
    return keras.Input(shape=(FLAT_SIZE,), name="image")


def dense_autoencoder(
    encoding_dim: int = 32, activity_l1: float = 1e-4, precision: str = "float32"
) -> Autoencoder:
    """Book section 5.2: 784 -> Dense(encoding_dim, relu, L1 activity) -> Dense(784, sigmoid).

    Args:
        encoding_dim: size of the code; 32 gives the book's 24.5x compression.
        activity_l1: L1 activity regulariser on the code (the book's `l1(10e-5)` = 1e-4).
        precision: the dtype policy of the encoding layer.

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
    return assemble([encode], [decode], _image(), "dense_autoencoder")


def deep_dense_autoencoder(
    encoding_dim: int = 32, hidden_units: int = 512, precision: str = "float32"
) -> Autoencoder:
    """An MLP around a linear code: 784 -> 512 -> 256 -> code -> 256 -> 512 -> 784, ReLU hidden
    layers, a linear code (no ReLU, no L1, so all of it carries information), a sigmoid output.

    Args:
        encoding_dim: size of the code.
        hidden_units: width of the first hidden layer; the second has half as many units.
        precision: the dtype policy of every layer but the last.

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
    return assemble(encoder_layers, decoder_layers, _image(), "deep_dense")


def build_dense(config) -> Autoencoder:
    """The `dense` model of a config."""
    return dense_autoencoder(config.encoding_dim, config.activity_l1, config.precision)


def build_deep_dense(config) -> Autoencoder:
    """The `deep_dense` model of a config."""
    return deep_dense_autoencoder(config.encoding_dim, config.hidden_units, config.precision)
