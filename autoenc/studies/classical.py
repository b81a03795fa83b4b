"""The classical denoisers the denoising study compares the learned ones with.

scikit-image's and SciPy's filters (Gaussian, median, total variation, wavelet shrinkage
(VisuShrink), non-local means), each with its one main parameter picked by a small grid search
on PSNR over held-out images (`tune`), never the test images. Each works on a numpy stack
(N, 28, 28) of float images in [0, 1], one image at a time, and its output is clipped to [0, 1]
so it is scored exactly like a sigmoid decoder's output.

scikit-image, SciPy and PyWavelets are the studies extra, not dependencies of the training
library: without them, importing this module raises an ImportError that says how to install
them.
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

MISSING_EXTRA = "the studies need scikit-image, SciPy and PyWavelets: pip install -e '.[studies]'"
try:
    import pywt  # noqa: F401  (scikit-image's wavelet denoiser imports it only when called)
    from scipy import ndimage
    from skimage import restoration
except ImportError as error:
    raise ImportError(MISSING_EXTRA) from error


def gaussian_filter(images: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of each image (standard deviation `sigma` pixels), reflecting edges."""
    return ndimage.gaussian_filter(images, sigma=(0.0, sigma, sigma), mode="reflect")


def median_filter(images: np.ndarray, size: float) -> np.ndarray:
    """Median over a `size` x `size` window of each image (size an odd integer)."""
    size = int(size)
    return ndimage.median_filter(images, size=(1, size, size), mode="reflect")


def total_variation(images: np.ndarray, weight: float) -> np.ndarray:
    """Chambolle's total-variation denoising of each image; larger `weight` = smoother."""
    return np.stack([restoration.denoise_tv_chambolle(image, weight=weight) for image in images])


def wavelet_visu_shrink(images: np.ndarray, sigma: float) -> np.ndarray:
    """VisuShrink soft thresholding of each image's Symlet-4 wavelet coefficients.

    The threshold is the universal one, `sigma`·sqrt(2 log n), with `sigma` the noise standard
    deviation it assumes. scikit-image would estimate it from the finest coefficients, but the
    book's clipped noise is neither Gaussian nor zero-mean, so tuning it finds what works.
    VisuShrink and Symlet-4 scored above BayesShrink and the other wavelets tried on held-out
    images (docs/studies.md).
    """
    return np.stack(
        [
            restoration.denoise_wavelet(
                image, sigma=sigma, wavelet="sym4", mode="soft", method="VisuShrink"
            )
            for image in images
        ]
    )


def non_local_means(images: np.ndarray, h: float) -> np.ndarray:
    """Non-local means of each image (5x5 patches searched within 6 pixels); `h` is the
    patch-distance cut-off: larger = more averaging."""
    return np.stack(
        [
            restoration.denoise_nl_means(image, h=h, patch_size=5, patch_distance=6, fast_mode=True)
            for image in images
        ]
    )


@dataclasses.dataclass(frozen=True)
class Denoiser:
    """A classical denoiser, the name of its main parameter, and the grid `tune` searches."""

    label: str
    function: Callable[[np.ndarray, float], np.ndarray]
    parameter: str
    grid: tuple[float, ...]

    def __call__(self, images: np.ndarray, value: float) -> np.ndarray:
        """Denoises a stack with the parameter at `value`, clipped to [0, 1], float32."""
        images = np.asarray(images, dtype=np.float32)
        return np.clip(self.function(images, value), 0.0, 1.0).astype(np.float32)


# Grids span from too little to too much smoothing for noise factors 0.1..0.8 on 28x28 images
# (checked on the real data: the tuned values fall inside them).
SMOOTHING_GRID = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6)
DENOISERS = {
    "gaussian": Denoiser(
        "Gaussian filter", gaussian_filter, "sigma", (0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
    ),
    "median": Denoiser("median filter", median_filter, "size", (3, 5, 7, 9)),
    "tv": Denoiser("total variation (Chambolle)", total_variation, "weight", SMOOTHING_GRID),
    "wavelet": Denoiser("wavelet (VisuShrink)", wavelet_visu_shrink, "sigma", SMOOTHING_GRID),
    "nlm": Denoiser("non-local means", non_local_means, "h", SMOOTHING_GRID),
}


def mean_psnr(clean: np.ndarray, outputs: np.ndarray) -> float:
    """Mean over images of 10 log10(1 / MSE_i), the definition of `autoenc.metrics`."""
    axes = tuple(range(1, clean.ndim))
    mse = np.mean((clean.astype(np.float64) - outputs) ** 2, axis=axes)
    return float(np.mean(10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))))


def tune(
    denoise: Callable[[np.ndarray, float], np.ndarray],
    noisy: np.ndarray,
    clean: np.ndarray,
    grid: Sequence[float],
) -> tuple[float, dict[float, float]]:
    """Grid-searches the parameter value that maximises mean PSNR on held-out images.

    Args:
        denoise: (images, value) -> denoised images, e.g. a `Denoiser`.
        noisy: held-out noisy images (never the test images).
        clean: their clean originals.
        grid: the values to try.

    Returns:
        (the best value, {value: mean PSNR} for every value tried); ties go to the earlier value.
    """
    scores = {value: mean_psnr(clean, denoise(noisy, value)) for value in grid}
    best = max(grid, key=lambda value: scores[value])
    return best, scores
