"""Per-example metrics against TensorFlow's own definitions."""

import numpy as np
import tensorflow as tf

from autoenc import metrics


def test_fast_ssim_equals_tf_image_ssim():
    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(64, 28, 28, 1)).astype("float32")
    noisy = np.clip(clean + rng.normal(scale=0.3, size=clean.shape), 0, 1).astype("float32")
    for a, b in [(clean, noisy), (clean, clean), (noisy, np.zeros_like(noisy))]:
        want = tf.image.ssim(a, b, max_val=1.0).numpy()
        np.testing.assert_allclose(metrics.ssim_28x28(a, b).numpy(), want, atol=2e-5)


def test_quality_columns():
    rng = np.random.default_rng(1)
    target = rng.uniform(size=(8, 28, 28, 1)).astype("float32")
    output = np.clip(target + 0.1, 0, 1).astype("float32")
    bce, mse, psnr, ssim = metrics.per_example_quality(target, output).numpy().T
    want_mse = np.mean((target - output) ** 2, axis=(1, 2, 3))
    np.testing.assert_allclose(mse, want_mse, rtol=1e-5)
    np.testing.assert_allclose(psnr, 10 * np.log10(1 / want_mse), rtol=1e-5)
    want_bce = tf.reduce_mean(
        tf.keras.losses.binary_crossentropy(target, output), axis=[1, 2]
    ).numpy()
    np.testing.assert_allclose(bce, want_bce, rtol=1e-5)
    perfect = metrics.per_example_quality(target, target).numpy()
    np.testing.assert_allclose(perfect[:, 2], 100.0, rtol=1e-6)  # MSE floor: 100 dB, not inf
    np.testing.assert_allclose(perfect[:, 3], 1.0, rtol=1e-5)
