"""The book's two architectures: parameter counts, shapes, and shared encoder/decoder weights."""

import numpy as np

from autoenc import models


def test_dense_autoencoder_matches_book():
    nets = models.dense_autoencoder(encoding_dim=32)
    assert nets.autoencoder.count_params() == 50_992
    assert nets.encoder.output.shape == (None, 32)
    assert nets.decoder.input.shape == (None, 32)
    assert nets.decoder.output.shape == (None, 784)
    assert [l.name for l in nets.autoencoder.layers] == ["image", "encode", "decode"]


def test_dense_sanity_variant_has_768_code():
    nets = models.dense_autoencoder(encoding_dim=768)
    assert nets.autoencoder.count_params() == 784 * 768 + 768 + 768 * 784 + 784


def test_conv_denoiser_matches_book():
    nets = models.conv_denoiser()
    assert nets.autoencoder.count_params() == 28_353
    shapes = [tuple(l.output.shape[1:]) for l in nets.autoencoder.layers[1:]]
    assert shapes == [
        (28, 28, 32), (14, 14, 32), (14, 14, 32), (7, 7, 32),
        (7, 7, 32), (14, 14, 32), (14, 14, 32), (28, 28, 32), (28, 28, 1),
    ]  # fmt: skip
    assert nets.encoder.output.shape == (None, 7, 7, 32)
    assert nets.decoder.output.shape == (None, 28, 28, 1)


def test_encoder_then_decoder_equals_autoencoder_and_shares_weights():
    for nets in (models.dense_autoencoder(), models.conv_denoiser()):
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
