"""The compression study: autoencoders against PCA at the same code widths.

    python -m autoenc.studies.compression --output_dir=DIR [--configs=dense_compress,...]
        [--dims=8,16,32,64,128,256,768] [--workdir=runs/studies/compression]

Each config in --configs is trained at every width with its `encoding_dim` set to it, each in
its own workdir (`WORKDIR/<config>/dim<N>`), with the config's own recipe. PCA fitted on the
60,000 training images reconstructs the 10,000 test images through the same number of
components. All are scored on the clean test images with the same PSNR and SSIM. PCA is the
optimum (in squared error) of every *linear* code of that width, so an autoencoder's
nonlinearity is worth something exactly where it wins. Each code is also probed
(`autoenc.probe`): the test accuracy of a 5-nearest-neighbour classifier fitted on the training
images' codes, beside the same classifier on the raw pixels. Finished points are cached in
`WORKDIR/points.json`, so a rerun computes only what is missing; the table and the figure go to
`OUTPUT_DIR/compression_study.{md,png}`.
"""

import pathlib
import time
from collections.abc import Callable, Sequence

from autoenc.command_line import quiet_native_stderr

with quiet_native_stderr():  # TensorFlow's C++ start-up notes; Python errors still show
    import tensorflow as tf

from autoenc import checkpoints, latent, probe
from autoenc import config as config_lib
from autoenc import data as data_lib
from autoenc import train as train_lib
from autoenc import workdir as workdir_lib
from autoenc.errors import UsageError
from autoenc.studies import figures, pca, report
from autoenc.studies import points as study_points

DIMS = (8, 16, 32, 64, 128, 256, 768)
CONFIGS = ("dense_compress",)
MODULE = "autoenc.studies.compression"
IMAGE_PIXELS = 784
CLASSIFIER = "knn5"  # the probe: a key of probe.CLASSIFIERS


def autoencoder_config(name: str, dim: int, overrides: dict | None = None):
    """The config `name` (a name in configs/ or a .py path) with `encoding_dim = dim` and any
    other `{field: text}` overrides.

    Raises:
        UsageError: an unknown config, one without an `encoding_dim` field, or a bad override.
    """
    config = config_lib.load_config(name)
    config_lib.apply_overrides(config, {"encoding_dim": str(dim), **(overrides or {})})
    config_lib.validate(config)
    return config


def config_name(name_or_path: str) -> str:
    """The name a config goes by in workdirs, tables and legends: its file's stem."""
    return pathlib.Path(name_or_path).stem


def check_sweep(configs: Sequence[str], dims: Sequence[int], overrides: dict | None) -> None:
    """Refuses a sweep that would fail part-way, before anything trains.

    Raises:
        UsageError: a width outside 1..784, two configs of the same name, or a config that
            cannot take a width (see `autoencoder_config`).
    """
    bad = [dim for dim in dims if not 1 <= dim <= IMAGE_PIXELS]
    if bad:
        raise UsageError(f"--dims: code widths must be in 1..{IMAGE_PIXELS}, got {bad}")
    names = [config_name(name) for name in configs]
    if len(set(names)) < len(names):
        raise UsageError(f"--configs: two configs share a name: {', '.join(configs)}")
    for name in configs:
        for dim in dims:
            autoencoder_config(name, dim, overrides)


def run(
    root,
    dims: Sequence[int] = DIMS,
    *,
    configs: Sequence[str] = CONFIGS,
    data: data_lib.FashionMNIST | None = None,
    overrides: dict | None = None,
    log: Callable[[str], None] = print,
    make_strategy: Callable[[], tf.distribute.Strategy] | None = None,
) -> list[dict]:
    """Measures (or reads from the cache) every config and PCA at every width.

    Args:
        root: the study's workdir: one training workdir per config and width, and
            `points.json`, the cache.
        dims: code widths.
        configs: configs (names in configs/ or .py paths) with an `encoding_dim` field.
        data: Fashion-MNIST (tests pass tiny data); None loads the real files.
        overrides: `{field: text}` config overrides for every autoencoder (tests: 1 epoch).
        log: where progress lines go.
        make_strategy: makes each training run's distribution strategy; None = the default of
            `train_and_evaluate` (tests give every run its own, so their collectives never mix).

    Returns:
        One row per width: dim, ratio, `pca` (a point: bce, mse, psnr, ssim, seconds, cached,
        and `probe`, its code's probe accuracy), `autoencoders`: {config name: a point with
        also probe, epochs, best_epoch, stopped_early and epoch_seconds, the sum of its
        epochs' wall times from history.csv}, and `pixels_probe`, the probe's accuracy on
        the pixels (the same in every row).

    Raises:
        UserError: a bad config or width (before anything trains), or a study workdir that
            another study is using.
    """
    check_sweep(configs, dims, overrides)
    root = workdir_lib.prepare(root)
    with workdir_lib.WorkdirLock(root):  # the cache is one file: one study at a time
        sweep = _Sweep(root, data, log, make_strategy)
        rows = []
        for dim in dims:
            log(f"--- dim {dim} (compression {IMAGE_PIXELS / dim:.1f}x) ---")
            autoencoders = {
                config_name(name): sweep.autoencoder(name, autoencoder_config(name, dim, overrides))
                for name in configs
            }
            linear = dict(sweep.pca(dim), probe=sweep.pca_probe(dim))
            rows.append(
                dict(dim=dim, ratio=IMAGE_PIXELS / dim, pca=linear, autoencoders=autoencoders)
            )
        pixels = sweep.pixels_probe()
    return [dict(row, pixels_probe=pixels) for row in rows]


class _Sweep:
    """The points of one study: each read from the cache, or computed and cached. The data and
    the PCA fit are loaded only when a point needs them, so a rerun with every point cached
    reads neither."""

    def __init__(self, root: pathlib.Path, data, log, make_strategy):
        self.root, self.log, self.make_strategy = root, log, make_strategy
        self.cache = study_points.PointCache(root / "points.json")
        self._data, self._pca = data, None

    def data(self) -> data_lib.FashionMNIST:
        if self._data is None:
            self._data = data_lib.load_fashion_mnist(None)
        return self._data

    def autoencoder(self, name: str, config) -> dict:
        """Trains (or resumes, or reads from the cache) config `name` at its `encoding_dim`."""
        dim = config.encoding_dim
        workdir = self.root / config_name(name) / f"dim{dim}"

        def train():
            metrics = train_lib.train_and_evaluate(
                config,
                workdir,
                data=self.data(),
                strategy=self.make_strategy and self.make_strategy(),
            )
            return dict(
                metrics["test"],
                epochs=metrics["epochs_completed"],
                best_epoch=metrics["best_epoch"],
                stopped_early=metrics["stopped_early"],
            )

        identity = f"{study_points.config_key(config_name(name), config)}/dim{dim}"
        point = study_points.cached_point(self.cache, f"autoencoder/{identity}", train, self.log)
        # Summed from history.csv, so a run resumed over several invocations counts whole.
        point["epoch_seconds"] = study_points.epoch_seconds(workdir)
        # Keyed by the best weights' digest: a run that improved since is probed anew.
        weights = study_points.checkpoint_fingerprint(workdir)

        def encode():
            data = self.data()
            with checkpoints.open_trained_run(config, workdir) as (nets, _):
                return latent.codes(nets, data.x_train), latent.codes(nets, data.x_test)

        key = f"probe/{CLASSIFIER}/autoencoder/{identity}/{weights}"
        point["probe"] = self._probe(key, encode)
        return point

    def pca(self, dim: int) -> dict:
        """PCA's point at width `dim` on the clean test images."""

        def score():
            clean = study_points.to_unit_float(self.data().x_test)
            return study_points.score_images(clean, self.fitted_pca().reconstruct(clean, dim))

        return study_points.cached_point(self.cache, f"pca/dim{dim}", score, self.log)

    def fitted_pca(self):
        """The PCA of the training images, fitted on first use (once per study)."""
        if self._pca is None:
            started = time.perf_counter()
            self._pca = pca.fit_pca(self.data().x_train)
            self.log(
                f"PCA fitted on {len(self.data().x_train)} images in"
                f" {time.perf_counter() - started:.1f} s"
            )
        return self._pca

    def pca_probe(self, dim: int) -> float:
        """The probe's accuracy on PCA's code of width `dim`."""

        def encode():
            basis, data = self.fitted_pca(), self.data()
            return basis.encode(data.x_train, dim), basis.encode(data.x_test, dim)

        return self._probe(f"probe/{CLASSIFIER}/pca/dim{dim}", encode)

    def pixels_probe(self) -> float:
        """The probe's accuracy on the raw pixels: what any code is measured against."""

        def encode():
            return probe.pixels(self.data().x_train), probe.pixels(self.data().x_test)

        return self._probe(f"probe/{CLASSIFIER}/pixels", encode)

    def _probe(self, key: str, encode: Callable[[], tuple]) -> float:
        """The cached accuracy of `key`, or the probe's on the (train, test) codes `encode()`
        gives, cached."""

        def measure():
            train_codes, test_codes = encode()
            data = self.data()
            return dict(
                accuracy=probe.accuracy(
                    CLASSIFIER, train_codes, data.y_train, test_codes, data.y_test
                )
            )

        return study_points.cached_point(self.cache, key, measure, self.log)["accuracy"]


def markdown_table(rows: list[dict], name: str) -> str:
    """One config's results as a markdown table: one row per width, AE and PCA side by side.

    BCE is shown too: the book's autoencoders are trained to minimise it (plus the L1 activity
    penalty), while PCA minimises squared error, which PSNR measures. The k-NN columns are the
    probe's test accuracies on each code.
    """
    lines = [
        "| code dim | compression 784/dim | AE PSNR (dB) | PCA PSNR (dB) | AE SSIM | PCA SSIM"
        " | AE vs PCA (PSNR, SSIM) | AE BCE | PCA BCE | AE k-NN accuracy | PCA k-NN accuracy"
        " | AE epochs (best) | AE training minutes |",
        "|---" * 13 + "|",
    ]
    for row in rows:
        ae, linear = row["autoencoders"][name], row["pca"]
        lines.append(
            f"| {row['dim']} | {row['ratio']:.1f}x | {ae['psnr']:.2f} | {linear['psnr']:.2f}"
            f" | {ae['ssim']:.3f} | {linear['ssim']:.3f} | {verdict(ae, linear)}"
            f" | {ae['bce']:.4f} | {linear['bce']:.4f} | {ae['probe']:.3f} | {linear['probe']:.3f}"
            f" | {ae['epochs']} ({ae['best_epoch']}) | {ae['epoch_seconds'] / 60:.1f} |"
        )
    return "\n".join(lines) + "\n"


def verdict(autoencoder: dict, linear: dict) -> str:
    """'AE wins', 'PCA wins' or 'split' by PSNR and SSIM, with the margins."""
    psnr_margin = autoencoder["psnr"] - linear["psnr"]
    ssim_margin = autoencoder["ssim"] - linear["ssim"]
    if psnr_margin > 0 and ssim_margin > 0:
        winner = "AE wins"
    elif psnr_margin < 0 and ssim_margin < 0:
        winner = "PCA wins"
    else:
        winner = "split"
    return f"{winner} ({psnr_margin:+.2f} dB, SSIM {ssim_margin:+.3f})"


def report_text(rows: list[dict], heading: str) -> str:
    """The study's markdown: `heading`, what the probe is and its accuracy on the pixels, then
    one table per config."""
    names = list(rows[0]["autoencoders"])
    probe_line = (
        "\nk-NN accuracy: the test images' classes as the 5 nearest training images' codes"
        f" (Euclidean) vote them; on the raw pixels it is {rows[0]['pixels_probe']:.3f}.\n"
    )
    tables = "".join(f"\n### {name}\n\n{markdown_table(rows, name)}" for name in names)
    return heading + probe_line + tables


def main(argv: list[str]) -> None:
    """`python -m autoenc.studies.compression`: runs the study and writes its table and figure."""
    parser = report.parser(MODULE, __doc__.splitlines()[0], "runs/studies/compression")
    parser.add_argument(
        "--configs",
        type=report.comma_list(str),
        default=list(CONFIGS),
        help=f"configs to sweep, each with an encoding_dim field (default: {','.join(CONFIGS)})",
    )
    parser.add_argument(
        "--dims",
        type=report.comma_list(int),
        default=list(DIMS),
        help=f"code widths (default: {','.join(map(str, DIMS))})",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = run(args.workdir, args.dims, configs=args.configs, log=_print)
    text = report_text(rows, report.provenance(MODULE, argv))
    paths = report.write(
        args.output_dir or args.workdir, "compression_study", text, figures.compression_figure(rows)
    )
    print(text)
    print(
        f"this run took {(time.perf_counter() - started) / 60:.1f} min;"
        f" wrote {paths[0]} and {paths[1]}"
    )


def _print(line: str) -> None:
    print(line, flush=True)


if __name__ == "__main__":
    report.run_command(MODULE, main)
