"""The non-learned baselines the studies compare the autoencoders with.

For compression, PCA: the best a *linear* autoencoder with a k-wide code can do in squared
error (Eckart-Young), so a nonlinear autoencoder is worth its training only where it beats PCA
at the same width. For denoising, the classical filters of scikit-image (Gaussian, median,
total variation, wavelet shrinkage (VisuShrink), non-local means), each with its one main
parameter picked by a small grid search on PSNR over held-out images (`tune`), never the test
images.

Everything here works on numpy float images in [0, 1] of shape (N, 28, 28); outputs are
clipped to [0, 1] so they are scored exactly like a sigmoid decoder's output.
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
from scipy import ndimage
from skimage import restoration


@dataclasses.dataclass(frozen=True)
class PCA:
    """A principal-component basis of flattened images.

    Attributes:
        mean: the training images' mean, shape (D,).
        components: unit eigenvectors of their covariance as rows, by decreasing variance,
            shape (D, D).
        explained_variance: the matching eigenvalues, shape (D,).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray

    def reconstruct(self, images: np.ndarray, dims: int) -> np.ndarray:
        """Projects images onto the first `dims` components and back, clipped to [0, 1].

        Args:
            images: shape (N, ...) with D values per image.
            dims: the code width, 1..D.

        Returns:
            float32 reconstructions of the input's shape.
        """
        if not 1 <= dims <= len(self.mean):
            raise ValueError(f"dims must be in 1..{len(self.mean)}, got {dims}")
        flat = images.reshape(len(images), -1).astype(np.float64) - self.mean
        basis = self.components[:dims]
        codes = flat @ basis.T
        restored = codes @ basis + self.mean
        return np.clip(restored, 0.0, 1.0).astype(np.float32).reshape(images.shape)


def fit_pca(images: np.ndarray, chunk: int = 10_000) -> PCA:
    """Fits PCA to images by an eigendecomposition of their covariance.

    The D x D covariance (D = 784) is accumulated in float64 chunks, so the 60,000 training
    images never exist as one float64 copy; one fit serves every code width.

    Args:
        images: shape (N, ...) with values in [0, 1] (floats) or 0..255 (uint8, rescaled).
        chunk: images per accumulation step.
    """
    flat = images.reshape(len(images), -1)
    scale = 1.0 / 255.0 if flat.dtype == np.uint8 else 1.0
    total = np.zeros(flat.shape[1])
    for start in range(0, len(flat), chunk):
        total += flat[start : start + chunk].sum(axis=0, dtype=np.float64) * scale
    mean = total / len(flat)
    scatter = np.zeros((flat.shape[1], flat.shape[1]))
    for start in range(0, len(flat), chunk):
        centred = flat[start : start + chunk].astype(np.float64) * scale - mean
        scatter += centred.T @ centred
    eigenvalues, eigenvectors = np.linalg.eigh(scatter / len(flat))
    order = np.argsort(eigenvalues)[::-1]
    return PCA(
        mean=mean,
        components=eigenvectors[:, order].T,
        explained_variance=np.maximum(eigenvalues[order], 0.0),
    )


# --- Classical denoisers -------------------------------------------------------------------
# Each takes a stack (N, 28, 28) and its main parameter and returns the denoised stack.


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
    book's clipped noise is neither Gaussian nor zero-mean, so tuning it finds what works. On
    held-out Fashion-MNIST images VisuShrink scored 0.1-0.8 dB above BayesShrink (noise 0.5
    and 0.2) and Symlet-4 slightly above Daubechies-1, 2 and Coiflet-1.
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
