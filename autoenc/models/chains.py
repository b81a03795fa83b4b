"""Autoencoders whose encoder and decoder are each a chain of layers, as most models are."""

import keras

from autoenc.models import Autoencoder


def chain(layers, x):
    """`x` through each layer in turn."""
    for layer in layers:
        x = layer(x)
    return x


def assemble(encoder_layers, decoder_layers, image, name) -> Autoencoder:
    """The autoencoder `image` -> encoder layers -> decoder layers, named `name`, with an
    encoder and a decoder made of the same layer objects (so they share its weights)."""
    code = chain(encoder_layers, image)
    autoencoder = keras.Model(image, chain(decoder_layers, code), name=name)
    encoder = keras.Model(image, code, name="encoder")
    code_input = keras.Input(shape=code.shape[1:], name="code")
    decoder = keras.Model(code_input, chain(decoder_layers, code_input), name="decoder")
    return Autoencoder(autoencoder, encoder, decoder)
