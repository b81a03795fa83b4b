"""The denoiser's three-row figure, clean | noisy | denoised, read back pixel by pixel.

No training: a stand-in model and a few random images, so each row can be checked against the
exact images it should show.
"""

import matplotlib.image
import numpy as np
import tensorflow as tf

from autoenc import plots
from configs import conv_denoise, deep_compress, dense_compress

TITLE = plots.TITLE_PIXELS
PAD = (plots.TILE_PIXELS - 28 * plots.SCALE) // 2


def random_pairs(count):
    """(noisy, clean) images in [0, 1] that differ everywhere, batched as evaluation does."""
    rng = np.random.default_rng(0)
    clean = rng.uniform(size=(count, 28, 28, 1)).astype(np.float32)
    noisy = rng.uniform(size=(count, 28, 28, 1)).astype(np.float32)
    return clean, noisy, tf.data.Dataset.from_tensor_slices((noisy, clean)).batch(5)


def inverting_model(images, training=False):
    """Stands in for the denoiser: an output unlike both its input and the clean image."""
    return 1.0 - images


def tile(pixels, row, column):
    top, left = TITLE + plots.TILE_PIXELS * row + PAD, plots.TILE_PIXELS * column + PAD
    return pixels[top : top + 28 * plots.SCALE, left : left + 28 * plots.SCALE]


def test_rows_are_the_clean_images_the_noisy_inputs_and_the_outputs(tmp_path):
    clean, noisy, dataset = random_pairs(16)
    paths = plots.write_figures(conv_denoise.get_config(), tmp_path, inverting_model, dataset)
    assert tmp_path / "figures" / "clean_noisy_denoised.png" in paths

    pixels = matplotlib.image.imread(tmp_path / "figures" / "clean_noisy_denoised.png")
    assert pixels.shape[:2] == plots.image_rows_size(3)[::-1]  # (340, 1200)
    grey = pixels[..., 0]
    np.testing.assert_array_equal(grey, pixels[..., 1])  # drawn in grey: R = G = B
    for row, images in enumerate([clean, noisy, inverting_model(noisy)]):
        for column in range(plots.ITEMS):
            expected = images[column, :, :, 0].repeat(plots.SCALE, 0).repeat(plots.SCALE, 1)
            # The colour map and the 8-bit PNG quantise: two grey levels of rounding at most,
            # far below the ~0.33 mean difference between two rows' random images.
            np.testing.assert_allclose(
                tile(grey, row, column), expected, atol=2.01 / 255, err_msg=f"{row}, {column}"
            )


def test_a_model_trained_on_clean_images_gets_no_three_row_figure(tmp_path):
    _, _, dataset = random_pairs(12)
    config = dense_compress.get_config()
    paths = plots.write_figures(config, tmp_path, inverting_model, dataset)
    assert [path.name for path in paths] == ["reconstructions_dim32.png"]


def test_the_reconstructions_figure_names_a_compression_models_code_size():
    deep = deep_compress.get_config()
    deep.encoding_dim = 16
    assert plots.reconstructions_name(deep) == "reconstructions_dim16.png"
    denoiser = conv_denoise.get_config()
    denoiser.noise_factor = 0.0
    assert plots.reconstructions_name(denoiser) == "reconstructions.png"
