"""The denoising study: the book's conv denoiser against classical denoisers over noise levels.

One `conv_denoise` model, trained at noise factor 0.5 (in `ROOT/conv_denoise`), is scored at
every level with `autoenc.evaluate.evaluate_workdir`, i.e. exactly what
`launch.py --mode=eval --noise_factor=X` measures. The classical denoisers of
`autoenc.studies.baselines` see the very same noisy test images (the evaluation pipeline's
noise, keyed on the run's seed and batch size) and are scored by the same code. Each
classical method's main parameter is tuned per level by a grid search on PSNR over held-out
*training* images with their own noise, never the test images.

Scoring every one of the 10,000 test images with non-local means and total variation takes
minutes per level on 2 CPU cores; `test_images` restricts every method (the autoencoder
included) to the first N test images with the same noise, for quick runs.
"""

import functools
import pathlib
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from autoenc import checkpoints, evaluate, pipeline
from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc import train as train_lib
from autoenc.studies import baselines
from autoenc.studies import points as study_points

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
METHODS = tuple(baselines.DENOISERS)
TUNING_SEED_OFFSET = 1  # the held-out images' noise seed is the run's seed + this
IMAGE_SHAPE = (28, 28, 1)


def denoiser_config(epochs: int, base: str = "conv_denoise", overrides: dict | None = None):
    """The `base` config trained for `epochs`, with any other `{field: text}` overrides."""
    config = config_lib.load_config(base)
    config_lib.apply_overrides(config, {"epochs": str(epochs), **(overrides or {})})
    return config


def noisy_images(
    images_uint8: np.ndarray, *, noise_factor: float, seed: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float images (N, 28, 28, 1) with the evaluation pipeline's noise.

    The noise of each batch is keyed on (seed, batch index), so with a run's seed and batch size
    these are the noisy test images its evaluation scores.
    """
    dataset = pipeline.eval_dataset(
        tf.constant(images_uint8),
        batch_size=batch_size,
        seed=seed,
        noise_factor=noise_factor,
        input_shape=IMAGE_SHAPE,
    )
    pairs = [(np.asarray(noisy), np.asarray(clean)) for noisy, clean in dataset]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def run(
    root,
    levels: Sequence[float] = LEVELS,
    *,
    epochs: int = 10,
    methods: Sequence[str] = METHODS,
    test_images: int = 0,
    tuning_images: int = 200,
    data: data_lib.FashionMNIST | None = None,
    base: str = "conv_denoise",
    overrides: dict | None = None,
    log: Callable[[str], None] = print,
    make_strategy: Callable[[], tf.distribute.Strategy] | None = None,
) -> dict:
    """Trains (or resumes, or reuses) the denoiser, then scores every method at every level.

    Args:
        root: the study directory: the denoiser's workdir and `points.json`, the cache.
        levels: noise factors to score at.
        epochs: the denoiser's training epochs.
        methods: keys of `baselines.DENOISERS`.
        test_images: score only the first N test images (0 = all), for every method alike.
        tuning_images: held-out images per tuning grid search: the last N training images.
        data: Fashion-MNIST (tests pass tiny data); None loads the real files.
        base: the denoiser's config.
        overrides: `{field: text}` config overrides for the denoiser (tests).
        log: where progress lines go.
        make_strategy: makes each training run's distribution strategy; None = the default of
            `train_and_evaluate` (tests give every run its own, so their collectives never mix).

    Returns:
        {"training": the denoiser's training point, "test_images": N scored,
         "rows": one per level: {"level", "noisy input", "autoencoder", and one point per
         method, with the tuned `value` of its parameter and the grid's PSNRs}}.
    """
    root = pathlib.Path(root)
    cache = study_points.PointCache(root / "points.json")
    if data is None:
        data = data_lib.load_fashion_mnist(None)
    config = denoiser_config(epochs, base, overrides)
    workdir = root / base
    settings = (
        f"{base}-e{epochs}-b{config.batch_size}-n{config.train_examples or 'all'}-s{config.seed}"
    )

    def train_denoiser():
        metrics = train_lib.train_and_evaluate(
            config, workdir, data=data, strategy=make_strategy and make_strategy()
        )
        return dict(metrics["test"], epochs=metrics["epochs_completed"], best=metrics["best_epoch"])

    log(f"--- training {base} for {epochs} epochs at noise {config.noise_factor} ---")
    training = study_points.cached_point(cache, f"training/{settings}", train_denoiser, log)
    training["epoch_seconds"] = study_points.epoch_seconds(workdir)
    count = test_images or len(data.x_test)
    subset = f"n{count}"
    tuning_clean_uint8 = data.x_train[-tuning_images:]
    model = []  # loaded on first use: only a subset run scores the model itself

    rows = []
    for level in levels:
        log(f"--- noise factor {level} ---")
        noisy, clean = noisy_images(
            data.x_test, noise_factor=level, seed=config.seed, batch_size=config.batch_size
        )
        noisy, clean = noisy[:count], clean[:count]
        row = {"level": level}
        row["noisy input"] = study_points.cached_point(
            cache,
            f"noisy/{subset}/noise{level}",
            lambda noisy=noisy, clean=clean: study_points.score_images(clean, noisy),
            log,
        )

        def score_autoencoder(level=level, noisy=noisy, clean=clean):
            if count == len(data.x_test):
                result = evaluate.evaluate_workdir(config, workdir, noise_factor=level, data=data)
                return dict(result["test"], noisy_input_psnr=result["noisy_input"]["psnr"])
            if not model:
                model.append(checkpoints.load_best_model(config, workdir).autoencoder)
            outputs = np.concatenate(
                [model[0](noisy[i : i + 1000], training=False) for i in range(0, count, 1000)]
            )
            return study_points.score_images(clean, outputs)

        row["autoencoder"] = study_points.cached_point(
            cache, f"autoencoder/{settings}/{subset}/noise{level}", score_autoencoder, log
        )
        _check_same_noise(row, log)

        tuning_noisy, tuning_clean = noisy_images(
            tuning_clean_uint8,
            noise_factor=level,
            seed=config.seed + TUNING_SEED_OFFSET,
            batch_size=config.batch_size,
        )
        for name in methods:
            denoiser = baselines.DENOISERS[name]
            score = functools.partial(
                _classical_point, denoiser, (tuning_noisy, tuning_clean), (noisy, clean)
            )
            grid = "-".join(f"{v:g}" for v in denoiser.grid)
            key = f"{name}/grid{grid}/t{tuning_images}/{subset}/noise{level}"
            row[name] = study_points.cached_point(cache, key, score, log)
        rows.append(row)
    return dict(training=training, test_images=count, rows=rows)


def _classical_point(denoiser: baselines.Denoiser, tuning: tuple, test: tuple) -> dict:
    """Tunes `denoiser` on the (noisy, clean) tuning images, then scores it on the test ones."""
    (tuning_noisy, tuning_clean), (noisy, clean) = tuning, test
    value, grid_psnr = baselines.tune(
        denoiser, tuning_noisy[..., 0], tuning_clean[..., 0], denoiser.grid
    )
    outputs = denoiser(noisy[..., 0], value)
    return dict(
        study_points.score_images(clean, outputs[..., None]),
        value=value,
        grid_psnr={f"{v:g}": round(p, 3) for v, p in grid_psnr.items()},
    )


def _check_same_noise(row: dict, log: Callable[[str], None]) -> None:
    """Warns if `evaluate_workdir` scored other noisy images than the classical methods see."""
    theirs = row["autoencoder"].get("noisy_input_psnr")
    if theirs is not None and abs(theirs - row["noisy input"]["psnr"]) > 1e-3:
        log(
            f"WARNING: noisy input PSNR {row['noisy input']['psnr']:.4f} here but {theirs:.4f}"
            " in evaluate_workdir: the methods did not see the same noisy images"
        )


def markdown_tables(result: dict, methods: Sequence[str] = METHODS) -> str:
    """PSNR and SSIM tables (one row per level) and the tuned parameter of each method."""
    rows = result["rows"]
    labels = ["noisy input", "autoencoder", *methods]
    titles = ["noisy input", "conv AE (trained at 0.5)"] + [
        baselines.DENOISERS[name].label for name in methods
    ]
    text = []
    for metric, unit, digits in (("psnr", " (dB)", 2), ("ssim", "", 3)):
        text.append(f"Test {metric.upper()}{unit}; **bold** = best classical method at that level.")
        text.append("")
        text.append("| noise factor | " + " | ".join(titles) + " | AE minus best classical |")
        text.append("|---" * (len(titles) + 2) + "|")
        for row in rows:
            best = max(methods, key=lambda name, row=row, metric=metric: row[name][metric])
            cells = [
                f"**{row[label][metric]:.{digits}f}**"
                if label == best
                else f"{row[label][metric]:.{digits}f}"
                for label in labels
            ]
            cells.append(f"{row['autoencoder'][metric] - row[best][metric]:+.{digits}f}")
            text.append(f"| {row['level']:g} | " + " | ".join(cells) + " |")
        text.append("")
    text.append("Tuned parameter per level (grid search on PSNR over held-out training images):")
    text.append("")
    names = [f"{baselines.DENOISERS[m].label}: {baselines.DENOISERS[m].parameter}" for m in methods]
    text.append("| noise factor | " + " | ".join(names) + " |")
    text.append("|---" * (len(methods) + 1) + "|")
    for row in rows:
        text.append(
            f"| {row['level']:g} | " + " | ".join(_tuned(row[m], m) for m in methods) + " |"
        )
    text.append("")
    return "\n".join(text)


def _tuned(point: dict, name: str) -> str:
    """The chosen value, flagged when it sits at an end of the grid (the grid may be short)."""
    grid = baselines.DENOISERS[name].grid
    edge = " (grid edge)" if point["value"] in (grid[0], grid[-1]) else ""
    return f"{point['value']:g}{edge}"


def timing_lines(result: dict, methods: Sequence[str] = METHODS) -> str:
    """Seconds per point, summed by method over the levels, as a markdown list."""
    training = result["training"]
    lines = [
        f"- training the denoiser: {training['epochs']} epochs,"
        f" {training['epoch_seconds'] / 60:.1f} min (sum of history.csv's epoch times)"
    ]
    for label in ("noisy input", "autoencoder", *methods):
        seconds = [row[label]["seconds"] for row in result["rows"]]
        lines.append(
            f"- {label}: {sum(seconds):.0f} s over {len(seconds)} levels"
            f" ({min(seconds):.1f}-{max(seconds):.1f} s per level)"
        )
    return "\n".join(lines) + "\n"
