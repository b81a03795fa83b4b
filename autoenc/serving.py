"""A trained model as three image-level functions: reconstruct, encode and decode.

The SavedModel export and `--mode=apply` both call these, so an export gives what apply gives.
Images are float32 in [0, 1] of shape (N, H, W), grey without a channel axis (a flat model's
784-vectors stay inside). `reconstruct` takes 28x28 for a flat model, any H and W for an image
model: it pads to a multiple of the model's `size_multiple` by repeating the last row and column
(which keeps a dark background dark, where reflecting would mirror garment detail into the
margin), runs, and crops back. `encode` takes 28x28 images to codes, `decode` codes to images.
"""

import keras
import tensorflow as tf

from autoenc import models


def pad_edges(images: tf.Tensor, multiple: int) -> tf.Tensor:
    """Pads (N, H, W) images at the bottom and right to multiples of `multiple` by repeating
    the last row and column."""
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    rows = tf.repeat(images[:, -1:, :], (-height) % multiple, axis=1)
    images = tf.concat([images, rows], axis=1)
    columns = tf.repeat(images[:, :, -1:], (-width) % multiple, axis=2)
    return tf.concat([images, columns], axis=2)


def any_size_denoiser(autoencoder: keras.Model) -> keras.Model:
    """The conv denoiser's layers (shared, so the same weights) on inputs of any H and W: its
    input is declared 28x28x1, which Keras enforces, though each layer takes any size. A model
    declared on any size already (the U-Net, whose skips are not one chain) is returned as is.
    """
    if autoencoder.input.shape[1:3] == (None, None):
        return autoencoder
    x = image = keras.Input(shape=(None, None, 1), name="image")
    for layer in autoencoder.layers[1:]:  # [0] is the InputLayer; the model is one chain
        x = layer(x)
    return keras.Model(image, x, name="any_size_denoiser")


class ServingFunctions(tf.Module):
    """`reconstruct`, `encode` and `decode` as `tf.function`s with fixed signatures; a
    `tf.Module`, so `tf.saved_model.save` saves the models' weights with the functions."""

    def __init__(self, nets: models.Autoencoder, model: str):
        """`nets` built as the model named `model` builds them (`models.build`)."""
        super().__init__()
        spec = models.spec(model)
        self.flat, self.size_multiple = spec.flat, spec.size_multiple
        self.autoencoder, self.encoder, self.decoder = nets
        if not self.flat:
            self.any_size = any_size_denoiser(nets.autoencoder)
        image = tf.TensorSpec([None, 28, 28], tf.float32, "image")
        any_image = image if self.flat else tf.TensorSpec([None, None, None], tf.float32, "image")
        code = tf.TensorSpec([None, *self.encoder.output.shape[1:]], tf.float32, "code")
        self.reconstruct = tf.function(self._reconstruct, input_signature=[any_image])
        self.encode = tf.function(self._encode, input_signature=[image])
        self.decode = tf.function(self._decode, input_signature=[code])

    def _reconstruct(self, image):
        if self.flat:
            flat = tf.reshape(image, [-1, models.FLAT_SIZE])
            return {"image": tf.reshape(self.autoencoder(flat, training=False), [-1, 28, 28])}
        height, width = tf.shape(image)[1], tf.shape(image)[2]
        padded = pad_edges(image, self.size_multiple)[..., tf.newaxis]
        output = self.any_size(padded, training=False)[..., 0]
        return {"image": output[:, :height, :width]}

    def _encode(self, image):
        shape = (models.FLAT_SIZE,) if self.flat else models.IMAGE_SHAPE
        image = tf.reshape(image, [-1, *shape])
        # float32 whatever the layers compute in (a mixed-precision code would be float16).
        return {"code": tf.cast(self.encoder(image, training=False), tf.float32)}

    def _decode(self, code):
        return {"image": tf.reshape(self.decoder(code, training=False), [-1, 28, 28])}

    def signatures(self) -> dict:
        """The serving signatures of an export, by name (`serving_default` = `reconstruct`)."""
        named = {"reconstruct": self.reconstruct, "encode": self.encode, "decode": self.decode}
        return {"serving_default": self.reconstruct, **named}
