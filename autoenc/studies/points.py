"""What the studies share: a cache of finished points, its keys, timing, and scoring images.

A study is a list of points (one model or baseline at one setting). Each finished point goes
into a JSON file as soon as it is measured, written atomically, so an interrupted or repeated
study computes only what is missing. Points that are trained models live in their own
workdirs too, which `train_and_evaluate` resumes or returns as finished.

`score_images` measures outputs with `autoenc.metrics.per_example_quality`, the code training
and evaluation use, so baselines, the noisy input and the autoencoders are scored alike.
"""

import hashlib
import json
import pathlib
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from autoenc import checkpoints, metrics, plots
from autoenc import config as config_lib
from autoenc import workdir as workdir_lib


class PointCache:
    """A JSON object of finished points on disk, keyed by strings.

    Every `put` rewrites the whole file atomically: the studies store tens of points, and a
    kill between two points must leave every earlier point readable.
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self._points = json.loads(self.path.read_text()) if self.path.exists() else {}

    def __contains__(self, key: str) -> bool:
        return key in self._points

    def get(self, key: str) -> dict:
        return self._points[key]

    def put(self, key: str, value: dict) -> None:
        self._points[key] = value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        workdir_lib.write_json(self.path, self._points)


def cached_point(
    cache: PointCache, key: str, compute: Callable[[], dict], log: Callable[[str], None]
) -> dict:
    """The cached value of `key`, or `compute()`'s, timed, stored and logged.

    The value gets a `seconds` field: the wall time of the call that computed it (a cached
    point keeps the time it took when it was computed) and `cached`: whether this call
    reused it.
    """
    if key in cache:
        point = cache.get(key)
        log(f"{key}: cached ({point['seconds']:.1f} s when computed)")
        return {**point, "cached": True}
    started = time.perf_counter()
    point = compute()
    point["seconds"] = round(time.perf_counter() - started, 2)
    cache.put(key, point)
    summary = ", ".join(f"{k} {point[k]:.3f}" for k in ("psnr", "ssim", "accuracy") if k in point)
    log(f"{key}: {summary} in {point['seconds']:.1f} s")
    return {**point, "cached": False}


def score_images(clean: np.ndarray, outputs: np.ndarray, batch_size: int = 1000) -> dict:
    """Mean bce, mse, psnr and ssim of `outputs` against `clean`, as training reports them.

    Args:
        clean: float images in [0, 1], shape (N, 28, 28[, 1]) or (N, 784).
        outputs: the same shape and range.
        batch_size: images per call of `per_example_quality` (bounds memory).

    Returns:
        {name: mean over the N images} for the names of `metrics.QUALITY_NAMES`.
    """
    sums = np.zeros(len(metrics.QUALITY_NAMES))
    for start in range(0, len(clean), batch_size):
        per_example = metrics.per_example_quality(
            tf.constant(clean[start : start + batch_size], tf.float32),
            tf.constant(outputs[start : start + batch_size], tf.float32),
        )
        sums += np.sum(per_example.numpy(), axis=0, dtype=np.float64)
    return {name: float(total / len(clean)) for name, total in zip(metrics.QUALITY_NAMES, sums)}


def epoch_seconds(workdir) -> float:
    """The summed wall time of a run's epochs (training and per-epoch evaluation) from its
    history.csv: the whole training, however many invocations it took to finish."""
    return sum(row["seconds"] for row in plots.read_history(pathlib.Path(workdir) / "history.csv"))


def to_unit_float(images_uint8: np.ndarray) -> np.ndarray:
    """uint8 images as float32 in [0, 1], the pipeline's conversion (x / 255)."""
    return images_uint8.astype(np.float32) / 255.0


def config_key(name: str, config) -> str:
    """`name` and a digest of every field of `config`, for cache keys: a point measured with
    other settings (a config file edited, another epoch count) is measured anew."""
    digest = hashlib.sha256(config_lib.to_json(config).encode()).hexdigest()[:10]
    return f"{name}-{digest}"


def checkpoint_fingerprint(workdir) -> str:
    """A digest of a run's best checkpoint, for cache keys of points that score it.

    The checkpoint's `.index` file holds a checksum of every saved tensor, so its digest
    changes whenever the best weights do (a run that improved, or was trained afresh).

    Raises:
        UserError: the workdir has no best checkpoint.
    """
    index = pathlib.Path(checkpoints.best_checkpoint_path(workdir) + ".index")
    return hashlib.sha256(index.read_bytes()).hexdigest()[:10]
