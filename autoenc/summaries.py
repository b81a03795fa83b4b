"""TensorBoard summaries, written from the host loop with one writer per split.

The layout matches Keras' TensorBoard callback (`WORKDIR/train`, `WORKDIR/validation`), so
`tensorboard --logdir WORKDIR` overlays training and validation curves under the same tags.
Nothing here runs inside `strategy.run`, where tf.summary has no default writer or step.
"""

import pathlib

import numpy as np
import tensorflow as tf


def image_grid(rows: list[np.ndarray]) -> np.ndarray:
    """Tiles equally long rows of 28x28 images into one [1, H, W, 1] image for tf.summary.

    Args:
        rows: e.g. [clean, noisy, reconstruction], each shape (N, 28, 28[, 1]) in [0, 1].
    """
    tiles = [np.concatenate(list(np.reshape(row, (-1, 28, 28))), axis=1) for row in rows]
    return np.concatenate(tiles, axis=0)[None, :, :, None]


class Summaries:
    """The train/ and validation/ event files of one run."""

    def __init__(self, workdir: pathlib.Path):
        self._writers = {
            split: tf.summary.create_file_writer(str(pathlib.Path(workdir) / split))
            for split in ("train", "validation")
        }

    def scalars(self, split: str, values: dict[str, float], step: int) -> None:
        """Writes each value as `epoch_<name>` (Keras' tag names) at `step` (the epoch)."""
        with self._writers[split].as_default(step=step):
            for name, value in values.items():
                tf.summary.scalar(f"epoch_{name}", value)

    def image(self, name: str, grid: np.ndarray, step: int, description: str = "") -> None:
        """Writes one image (from `image_grid`) to the validation run."""
        with self._writers["validation"].as_default(step=step):
            tf.summary.image(name, grid, step=step, description=description)

    def flush(self) -> None:
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
