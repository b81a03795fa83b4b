"""PCA and the classical denoisers: exactness, monotonic error, denoising that helps, tuning.

PCA is plain numpy and always tested; the classical denoisers need the studies extra, and
without it their tests are skipped with the install command as the reason. Whether the extra's
absence is reported properly is tested in test_studies.py.
"""

import numpy as np
import pytest
import tensorflow as tf
from conftest import synthetic_images

from autoenc import metrics
from autoenc.studies import pca


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b) ** 2))


@pytest.fixture(scope="module")
def garments() -> np.ndarray:
    """300 garment-like float images in [0, 1], (300, 28, 28)."""
    return synthetic_images(300, seed=5).astype(np.float32) / 255.0


def test_pca_at_full_rank_reconstructs_exactly():
    # Values inside (0, 1), so the final clip cannot hide an error.
    images = np.random.default_rng(0).uniform(0.2, 0.8, size=(900, 28, 28)).astype(np.float32)
    basis = pca.fit_pca(images)
    np.testing.assert_allclose(basis.reconstruct(images, 784), images, atol=1e-5)


def test_pca_error_falls_as_the_code_widens(garments):
    basis = pca.fit_pca(garments)
    errors = [_mse(garments, basis.reconstruct(garments, dims)) for dims in (1, 4, 16, 64, 256)]
    assert all(wider < narrower for narrower, wider in zip(errors, errors[1:])), errors
    assert np.all(np.diff(basis.explained_variance) <= 1e-12)  # components by falling variance


def test_pca_reads_uint8_as_pixels_over_255(garments):
    as_uint8 = pca.fit_pca((garments * 255).round().astype(np.uint8))
    as_float = pca.fit_pca(np.round(garments * 255) / 255)
    np.testing.assert_allclose(as_uint8.mean, as_float.mean, atol=1e-12)
    np.testing.assert_allclose(
        as_uint8.reconstruct(garments, 10), as_float.reconstruct(garments, 10), atol=1e-5
    )


def test_pca_rejects_a_width_outside_the_image():
    basis = pca.fit_pca(np.random.default_rng(0).random((50, 28, 28)))
    for dims in (0, 785):
        with pytest.raises(ValueError, match="dims"):
            basis.reconstruct(np.zeros((1, 28, 28)), dims)


# A mid-grid value per method: enough smoothing for noise 0.2 without erasing the garments.
REASONABLE_VALUES = {"gaussian": 1.0, "median": 3, "tv": 0.1, "wavelet": 0.05, "nlm": 0.2}


@pytest.fixture(scope="module")
def classical():
    """`autoenc.studies.classical`, or a skip naming the extra to install."""
    try:
        from autoenc.studies import classical
    except ImportError as e:
        pytest.skip(str(e))
    return classical


def test_every_classical_denoiser_is_tested(classical):
    assert sorted(classical.DENOISERS) == sorted(REASONABLE_VALUES)


@pytest.mark.parametrize("name", sorted(REASONABLE_VALUES))
def test_each_classical_denoiser_improves_psnr(name, garments, classical):
    clean = garments[:20]
    noise = np.random.default_rng(1).normal(0.0, 0.2, size=clean.shape)
    noisy = np.clip(clean + noise, 0, 1).astype(np.float32)
    denoised = classical.DENOISERS[name](noisy, REASONABLE_VALUES[name])
    assert denoised.shape == clean.shape and denoised.dtype == np.float32
    assert denoised.min() >= 0.0 and denoised.max() <= 1.0
    gain = classical.mean_psnr(clean, denoised) - classical.mean_psnr(clean, noisy)
    assert gain > 1.0, f"{name} gained only {gain:.2f} dB"


def test_denoisers_treat_each_image_alone(garments, classical):
    # Non-local means must not borrow patches from the neighbouring images in the stack.
    noisy = np.clip(garments[:3] + 0.1, 0, 1).astype(np.float32)
    for name, denoiser in classical.DENOISERS.items():
        together = denoiser(noisy, REASONABLE_VALUES[name])
        alone = denoiser(noisy[1:2], REASONABLE_VALUES[name])
        np.testing.assert_allclose(together[1:2], alone, atol=1e-6, err_msg=name)


def test_tune_picks_the_grid_value_with_the_best_psnr(classical):
    clean = np.random.default_rng(2).uniform(0.3, 0.6, size=(8, 28, 28))
    noisy = clean + 0.3  # an offset that subtracting exactly 0.3 removes

    def subtract(images, value):
        return images - value

    best, scores = classical.tune(subtract, noisy, clean, (0.1, 0.2, 0.3, 0.4, 0.5))
    assert best == 0.3
    assert scores[0.3] == max(scores.values()) and scores[0.2] > scores[0.1]
    assert scores[0.3] == 100.0  # exact: the PSNR floor of a perfect copy


def test_tune_breaks_ties_towards_the_earlier_value(classical):
    clean = np.full((2, 28, 28), 0.5)
    best, _ = classical.tune(lambda images, value: images, clean + 0.1, clean, (3, 1, 2))
    assert best == 3


def test_mean_psnr_is_the_training_metric(garments, classical):
    outputs = np.clip(garments[:16] + 0.05, 0, 1).astype(np.float32)
    quality = metrics.per_example_quality(tf.constant(garments[:16]), tf.constant(outputs))
    psnr = float(np.mean(quality.numpy()[:, metrics.QUALITY_NAMES.index("psnr")]))
    assert classical.mean_psnr(garments[:16], outputs) == pytest.approx(psnr, abs=1e-4)
