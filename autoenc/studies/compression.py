"""The compression study: the dense autoencoder against PCA at the same code widths.

For each width the book's dense model is trained with the `dense_compress` recipe in its own
workdir (`ROOT/dim<N>`), and PCA fitted on the 60,000 training images reconstructs the 10,000
test images through the same number of components. Both are scored on the clean test images
with the same PSNR and SSIM. PCA is the optimum (in squared error) of every *linear* code of
that width, so the autoencoder's ReLU and sigmoid are worth something exactly where it wins.
"""

import pathlib
import time
from collections.abc import Callable, Sequence

import tensorflow as tf

from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc import train as train_lib
from autoenc.studies import baselines
from autoenc.studies import points as study_points

DIMS = (8, 16, 32, 64, 128, 256, 768)
IMAGE_PIXELS = 784


def autoencoder_config(dim: int, base: str = "dense_compress", overrides: dict | None = None):
    """The `base` config with `encoding_dim = dim` and any other `{field: text}` overrides."""
    config = config_lib.load_config(base)
    config_lib.apply_overrides(config, {"encoding_dim": str(dim), **(overrides or {})})
    return config


def run(
    root,
    dims: Sequence[int] = DIMS,
    *,
    data: data_lib.FashionMNIST | None = None,
    base: str = "dense_compress",
    overrides: dict | None = None,
    log: Callable[[str], None] = print,
    make_strategy: Callable[[], tf.distribute.Strategy] | None = None,
) -> list[dict]:
    """Measures (or reads from the cache) the autoencoder and PCA at every width.

    Args:
        root: the study directory: one workdir per width and `points.json`, the cache.
        dims: code widths.
        data: Fashion-MNIST (tests pass tiny data); None loads the real files.
        base: the config the autoencoders start from.
        overrides: `{field: text}` config overrides for every autoencoder (tests: 1 epoch).
        log: where progress lines go.
        make_strategy: makes each training run's distribution strategy; None = the default of
            `train_and_evaluate` (tests give every run its own, so their collectives never mix).

    Returns:
        One row per width: dim, ratio, and `autoencoder` and `pca` points (bce, mse, psnr,
        ssim, seconds, cached; the autoencoder's also epochs, best_epoch and epoch_seconds,
        the sum of its epochs' wall times from history.csv).
    """
    root = pathlib.Path(root)
    cache = study_points.PointCache(root / "points.json")
    loaded = {}

    def dataset():
        if "data" not in loaded:
            loaded["data"] = data if data is not None else data_lib.load_fashion_mnist(None)
        return loaded["data"]

    def pca():
        if "pca" not in loaded:
            started = time.perf_counter()
            loaded["pca"] = baselines.fit_pca(dataset().x_train)
            log(
                f"PCA fitted on {len(dataset().x_train)} images in "
                f"{time.perf_counter() - started:.1f} s"
            )
        return loaded["pca"]

    rows = []
    for dim in dims:
        config = autoencoder_config(dim, base, overrides)
        log(f"--- dim {dim} (compression {IMAGE_PIXELS / dim:.1f}x) ---")

        def train_autoencoder(config=config, dim=dim):
            metrics = train_lib.train_and_evaluate(
                config,
                root / f"dim{dim}",
                data=dataset(),
                strategy=make_strategy and make_strategy(),
            )
            return dict(
                metrics["test"],
                epochs=metrics["epochs_completed"],
                best_epoch=metrics["best_epoch"],
                stopped_early=metrics["stopped_early"],
            )

        def pca_point(dim=dim):
            clean = study_points.to_unit_float(dataset().x_test)
            return study_points.score_images(clean, pca().reconstruct(clean, dim))

        autoencoder = study_points.cached_point(
            cache, f"autoencoder/{_settings_key(config)}/dim{dim}", train_autoencoder, log
        )
        # Summed from history.csv, so a run resumed over several invocations counts whole.
        autoencoder["epoch_seconds"] = study_points.epoch_seconds(root / f"dim{dim}")
        linear = study_points.cached_point(cache, f"pca/dim{dim}", pca_point, log)
        rows.append(dict(dim=dim, ratio=IMAGE_PIXELS / dim, autoencoder=autoencoder, pca=linear))
    return rows


def _settings_key(config) -> str:
    """The recipe fields in a cache key, so a study with other settings measures anew."""
    return (
        f"{config.optimizer}-lr{config.learning_rate or 'default'}-b{config.batch_size}"
        f"-e{config.epochs}-n{config.train_examples or 'all'}-s{config.seed}"
    )


def markdown_table(rows: list[dict]) -> str:
    """The study as a markdown table: one row per width, AE and PCA side by side.

    BCE is shown too: the autoencoder is trained to minimise it (plus the L1 activity penalty),
    while PCA minimises squared error, which PSNR measures.
    """
    lines = [
        "| code dim | compression 784/dim | AE PSNR (dB) | PCA PSNR (dB) | AE SSIM | PCA SSIM"
        " | AE vs PCA (PSNR, SSIM) | AE BCE | PCA BCE | AE epochs (best) | AE training minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ae, pca = row["autoencoder"], row["pca"]
        lines.append(
            f"| {row['dim']} | {row['ratio']:.1f}x | {ae['psnr']:.2f} | {pca['psnr']:.2f}"
            f" | {ae['ssim']:.3f} | {pca['ssim']:.3f} | {verdict(ae, pca)}"
            f" | {ae['bce']:.4f} | {pca['bce']:.4f}"
            f" | {ae['epochs']} ({ae['best_epoch']}) | {ae['epoch_seconds'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


def verdict(autoencoder: dict, pca: dict) -> str:
    """'AE wins', 'PCA wins' or 'split' by PSNR and SSIM, with the PSNR margin."""
    psnr_margin = autoencoder["psnr"] - pca["psnr"]
    ssim_margin = autoencoder["ssim"] - pca["ssim"]
    if psnr_margin > 0 and ssim_margin > 0:
        winner = "AE wins"
    elif psnr_margin < 0 and ssim_margin < 0:
        winner = "PCA wins"
    else:
        winner = "split"
    return f"{winner} ({psnr_margin:+.2f} dB, SSIM {ssim_margin:+.3f})"
