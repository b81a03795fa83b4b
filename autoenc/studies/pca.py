"""PCA, the compression study's non-learned baseline.

PCA is the best a *linear* autoencoder with a k-wide code can do in squared error
(Eckart-Young), so a nonlinear autoencoder is worth its training only where it beats PCA at the
same width. Plain numpy: the compression study needs none of the studies extra. Images are
numpy arrays of shape (N, ...) with values in [0, 1]; reconstructions are clipped to [0, 1] so
they are scored exactly like a sigmoid decoder's output.
"""

import dataclasses

import numpy as np

CHUNK = 10_000  # images per float64 step: bounds the memory of a fit or an encoding


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
        restored = self.encode(images, dims) @ self.components[:dims] + self.mean
        return np.clip(restored, 0.0, 1.0).astype(np.float32).reshape(images.shape)

    def encode(self, images: np.ndarray, dims: int) -> np.ndarray:
        """The images' coordinates on the first `dims` components: PCA's code of that width.

        Args:
            images: shape (N, ...) with D values per image, in [0, 1] (floats) or 0..255
                (uint8, rescaled as `fit_pca` does).
            dims: the code width, 1..D.

        Returns:
            float64 codes, shape (N, dims), computed a chunk at a time (no float64 copy of
            every image at once).
        """
        if not 1 <= dims <= len(self.mean):
            raise ValueError(f"dims must be in 1..{len(self.mean)}, got {dims}")
        flat = images.reshape(len(images), -1)
        scale = 1.0 / 255.0 if flat.dtype == np.uint8 else 1.0
        basis = self.components[:dims].T
        chunks = [
            (flat[i : i + CHUNK].astype(np.float64) * scale - self.mean) @ basis
            for i in range(0, len(flat), CHUNK)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, dims))


def fit_pca(images: np.ndarray, chunk: int = CHUNK) -> PCA:
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
