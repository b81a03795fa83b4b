"""The denoising study: learned denoisers against classical ones over noise levels.

    python -m autoenc.studies.denoising --output_dir=DIR [--configs=conv_denoise,...]
        [--workdirs=runs/RUN,...] [--epochs=10] [--levels=0.1,0.2,...,0.8]
        [--test_images=0] [--tuning_images=200] [--workdir=runs/studies/denoising]

The learned denoisers are the configs in --configs, trained by the study for --epochs in
`WORKDIR/<config>` (the book's `conv_denoise` by default), and the runs in --workdirs, trained
elsewhere and scored as they are (`autoenc.studies.learned`). Each is scored at every level next
to the classical denoisers of `autoenc.studies.classical`, all on the very same noisy test
images: the evaluation pipeline's noise with seed 0 and batches of 128, the images
`launch.py --config=conv_denoise --mode=eval --noise_factor=X` scores. Each classical method's
main parameter is tuned per level by a grid search on PSNR over held-out *training* images with
their own noise, never the test images.

Scoring every one of the 10,000 test images with non-local means and total variation takes
minutes per level on 2 CPU cores; --test_images restricts every method to the first N test
images (the same noise), for quick runs. Finished points are cached in `WORKDIR/points.json`,
so a rerun computes only what is missing; the tables and the figure go to
`OUTPUT_DIR/denoising_study.{md,png}`.
"""

import functools
import sys
import time
from collections.abc import Callable, Sequence

# First, so that a missing studies extra is one line on stderr before TensorFlow starts.
try:
    from autoenc.studies import classical
except ImportError as error:
    if __name__ != "__main__":
        raise
    sys.exit(f"python -m autoenc.studies.denoising: error: {error}")  # one line, no traceback

import numpy as np

from autoenc.command_line import quiet_native_stderr

with quiet_native_stderr():  # TensorFlow's C++ start-up notes; Python errors still show
    import tensorflow as tf

from autoenc import data as data_lib
from autoenc import pipeline, plots
from autoenc import workdir as workdir_lib
from autoenc.errors import UsageError
from autoenc.studies import figures, learned, report
from autoenc.studies import points as study_points

MODULE = "autoenc.studies.denoising"
LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
METHODS = tuple(classical.DENOISERS)
CONFIGS = ("conv_denoise",)
NOISE_SEED = 0  # the test images' noise: conv_denoise's seed and batch size, as --mode=eval
NOISE_BATCH = 128
TUNING_SEED = NOISE_SEED + 1  # the held-out tuning images get noise of their own
IMAGE_SHAPE = (28, 28, 1)


def noisy_images(
    images_uint8: np.ndarray, *, noise_factor: float, seed: int = NOISE_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(noisy, clean) float images (N, 28, 28, 1) with the evaluation pipeline's noise.

    The noise of each batch of `NOISE_BATCH` is keyed on (seed, batch index), so these are the
    noisy test images an evaluation with that seed and batch size scores.
    """
    dataset = pipeline.eval_dataset(
        tf.constant(images_uint8),
        batch_size=NOISE_BATCH,
        seed=seed,
        noise_factor=noise_factor,
        input_shape=IMAGE_SHAPE,
    )
    pairs = [(np.asarray(noisy), np.asarray(clean)) for noisy, clean in dataset]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def denoisers(
    root, configs: Sequence[str], workdirs: Sequence[str], epochs: int, overrides=None
) -> list[learned.Denoiser]:
    """The learned denoisers of a study, checked before anything trains or is scored.

    Raises:
        UserError: a bad config or workdir, none at all, or two with the same label.
    """
    result = [learned.from_config(name, root, epochs, overrides) for name in configs]
    result += [learned.from_workdir(path) for path in workdirs]
    labels = [denoiser.label for denoiser in result]
    if not result:
        raise UsageError("no learned denoiser: give --configs or --workdirs")
    if len(set(labels)) < len(labels):
        raise UsageError(f"two learned denoisers share a name: {', '.join(labels)}")
    return result


def run(
    root,
    levels: Sequence[float] = LEVELS,
    *,
    configs: Sequence[str] = CONFIGS,
    workdirs: Sequence[str] = (),
    epochs: int = 10,
    methods: Sequence[str] = METHODS,
    test_images: int = 0,
    tuning_images: int = 200,
    data: data_lib.FashionMNIST | None = None,
    overrides: dict | None = None,
    log: Callable[[str], None] = print,
    make_strategy: Callable[[], tf.distribute.Strategy] | None = None,
) -> dict:
    """Trains (or resumes, or reuses) the study's denoisers, then scores every denoiser and
    classical method at every level.

    Args:
        root: the study's workdir: its own denoisers' workdirs and `points.json`, the cache.
        levels: noise factors to score at.
        configs: configs the study trains (names in configs/ or .py paths).
        workdirs: runs trained elsewhere, scored as they are.
        epochs: training epochs of the study's own denoisers; 0 = each config's own.
        methods: keys of `classical.DENOISERS`.
        test_images: score only the first N test images (0 = all), for every method alike.
        tuning_images: held-out images per tuning grid search: the last N training images.
        data: Fashion-MNIST (tests pass tiny data); None loads the real files.
        overrides: `{field: text}` overrides for the study's own denoisers (tests).
        log: where progress lines go.
        make_strategy: makes each training run's distribution strategy; None = the default of
            `train_and_evaluate` (tests give every run its own, so their collectives never mix).

    Returns:
        {"learned": the `learned.Denoiser`s, "methods": the classical methods,
         "training": {label: epochs and epoch_seconds from its history.csv, and for the
         study's own denoisers their training point},
         "test_images": N scored, "rows": one per level: {"level", "noisy input": point,
         "learned": {label: point}, "classical": {method: point with the tuned `value` of its
         parameter and the grid's PSNRs}}}.
    """
    _check_arguments(levels, methods, epochs, test_images, tuning_images)
    contenders = denoisers(root, configs, workdirs, epochs, overrides)
    root = workdir_lib.prepare(root)
    with workdir_lib.WorkdirLock(root):  # the cache is one file: one study at a time
        cache = study_points.PointCache(root / "points.json")
        if data is None:
            data = data_lib.load_fashion_mnist(None)
        training = _train(contenders, cache, data, make_strategy, log)
        count = min(test_images or len(data.x_test), len(data.x_test))
        scorer = _Scorer(cache, contenders, methods, count, log)
        tuning = data.x_train[-tuning_images:]
        rows = [scorer.row(level, data.x_test[:count], tuning) for level in levels]
    return dict(
        learned=contenders, methods=list(methods), training=training, test_images=count, rows=rows
    )


def _train(contenders, cache, data, make_strategy, log) -> dict:
    """Trains the study's own denoisers (or reads their cached training points), and adds every
    denoiser's training time from its history.csv.

    Returns:
        {label: {"epochs", "epoch_seconds", and for the study's own, the test metrics}}.
    """
    training = {}
    for denoiser in contenders:
        if denoiser.trained_here:
            log(f"--- training {denoiser.title()} for {denoiser.config.epochs} epochs ---")
            training[denoiser.label] = study_points.cached_point(
                cache,
                f"training/{study_points.config_key(denoiser.label, denoiser.config)}",
                functools.partial(learned.train, denoiser, data, make_strategy),
                log,
            )
        # Summed from history.csv, so a run resumed over several invocations counts whole.
        history = plots.read_history(denoiser.workdir / "history.csv")
        training.setdefault(denoiser.label, {"epochs": len(history)})
        training[denoiser.label]["epoch_seconds"] = sum(epoch["seconds"] for epoch in history)
    return training


def _check_arguments(levels, methods, epochs, test_images, tuning_images) -> None:
    """Refuses settings that would fail or mislead part-way, before anything runs."""
    unknown = [name for name in methods if name not in classical.DENOISERS]
    if unknown:
        raise UsageError(f"--methods: unknown {unknown}; valid: {', '.join(classical.DENOISERS)}")
    if not all(0 <= level < float("inf") for level in levels):
        raise UsageError(f"--levels: noise factors must be finite, 0 or more; got {list(levels)}")
    for flag, value, least in (
        ("epochs", epochs, 0),
        ("test_images", test_images, 0),
        ("tuning_images", tuning_images, 1),
    ):
        if value < least:
            raise UsageError(f"--{flag}={value}: must be {least} or more")


class _Scorer:
    """Scores one level's row; each point read from the cache, or computed and cached."""

    def __init__(self, cache, contenders, methods, count, log):
        self.cache, self.contenders, self.methods, self.log = cache, contenders, methods, log
        self.subset = f"seed{NOISE_SEED}/n{count}"
        self.models = {}  # loaded on first use: a rerun with every point cached loads none
        self.identities = {d.label: learned.identity(d) for d in contenders}

    def row(self, level: float, test_uint8: np.ndarray, tuning_uint8: np.ndarray) -> dict:
        self.log(f"--- noise factor {level} ---")
        noisy, clean = noisy_images(test_uint8, noise_factor=level)
        row = {"level": level, "learned": {}, "classical": {}}
        row["noisy input"] = self._point(
            f"noisy/{self.subset}/noise{level}",
            lambda: study_points.score_images(clean, noisy),
        )
        for denoiser in self.contenders:
            key = f"learned/{self.identities[denoiser.label]}/{self.subset}/noise{level}"
            row["learned"][denoiser.label] = self._point(
                key, functools.partial(self._score_model, denoiser, noisy, clean)
            )
        tuning = noisy_images(tuning_uint8, noise_factor=level, seed=TUNING_SEED)
        for name in self.methods:
            denoiser = classical.DENOISERS[name]
            grid = "-".join(f"{v:g}" for v in denoiser.grid)
            key = f"{name}/grid{grid}/t{len(tuning_uint8)}/{self.subset}/noise{level}"
            row["classical"][name] = self._point(
                key, functools.partial(_classical_point, denoiser, tuning, (noisy, clean))
            )
        return row

    def _point(self, key: str, compute: Callable[[], dict]) -> dict:
        return study_points.cached_point(self.cache, key, compute, self.log)

    def _score_model(self, denoiser: learned.Denoiser, noisy, clean) -> dict:
        if denoiser.label not in self.models:
            self.models[denoiser.label] = learned.load(denoiser)
        outputs = learned.denoise(self.models[denoiser.label], denoiser.config, noisy)
        return study_points.score_images(clean, outputs)


def _classical_point(denoiser: classical.Denoiser, tuning: tuple, test: tuple) -> dict:
    """Tunes `denoiser` on the (noisy, clean) tuning images, then scores it on the test ones."""
    (tuning_noisy, tuning_clean), (noisy, clean) = tuning, test
    value, grid_psnr = classical.tune(
        denoiser, tuning_noisy[..., 0], tuning_clean[..., 0], denoiser.grid
    )
    outputs = denoiser(noisy[..., 0], value)
    return dict(
        study_points.score_images(clean, outputs[..., None]),
        value=value,
        grid_psnr={f"{v:g}": round(p, 3) for v, p in grid_psnr.items()},
    )


def markdown_tables(result: dict) -> str:
    """PSNR and SSIM tables (one row per level) and the tuned parameter of each method."""
    methods = result["methods"]
    text = [_metric_table(result, "psnr", " (dB)", 2), _metric_table(result, "ssim", "", 3)]
    text += ["Tuned parameter per level (grid search on PSNR over held-out training images):", ""]
    names = [f"{classical.DENOISERS[m].label}: {classical.DENOISERS[m].parameter}" for m in methods]
    text.append("| noise factor | " + " | ".join(names) + " |")
    text.append("|---" * (len(methods) + 1) + "|")
    for row in result["rows"]:
        tuned = [_tuned(row["classical"][name], name) for name in methods]
        text.append(f"| {row['level']:g} | " + " | ".join(tuned) + " |")
    return "\n".join(text) + "\n"


def _metric_table(result: dict, metric: str, unit: str, digits: int) -> str:
    """One metric's table: a row per level, the best classical method bold, and each learned
    denoiser's margin over it at the end of the row."""
    methods, labels = result["methods"], [d.label for d in result["learned"]]
    titles = ["noisy input", *(d.title() for d in result["learned"])]
    titles += [classical.DENOISERS[name].label for name in methods]
    titles += [f"{label} minus best classical" for label in labels]
    lines = [
        f"Test {metric.upper()}{unit}; **bold** = best classical method at that level.",
        "",
        "| noise factor | " + " | ".join(titles) + " |",
        "|---" * (len(titles) + 1) + "|",
    ]
    for row in result["rows"]:
        scores = {name: row["classical"][name][metric] for name in methods}
        best = max(methods, key=scores.get)
        values = [row["noisy input"][metric], *(row["learned"][x][metric] for x in labels)]
        cells = [f"{value:.{digits}f}" for value in values]
        cells += [
            f"**{scores[n]:.{digits}f}**" if n == best else f"{scores[n]:.{digits}f}"
            for n in methods
        ]
        cells += [f"{row['learned'][x][metric] - scores[best]:+.{digits}f}" for x in labels]
        lines.append(f"| {row['level']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _tuned(point: dict, name: str) -> str:
    """The chosen value, flagged when it sits at an end of the grid (the grid may be short)."""
    grid = classical.DENOISERS[name].grid
    edge = " (grid edge)" if point["value"] in (grid[0], grid[-1]) else ""
    return f"{point['value']:g}{edge}"


def timing_lines(result: dict) -> str:
    """Training minutes of each learned denoiser, and seconds per point summed by method over
    the levels, as a markdown list."""
    lines = []
    for denoiser in result["learned"]:
        training = result["training"][denoiser.label]
        where = "by the study" if denoiser.trained_here else "elsewhere"
        lines.append(
            f"- training {denoiser.label} ({where}): {training['epochs']} epochs,"
            f" {training['epoch_seconds'] / 60:.1f} min (sum of history.csv's epoch times)"
        )
    columns = {"noisy input": [row["noisy input"] for row in result["rows"]]}
    for denoiser in result["learned"]:
        columns[denoiser.label] = [row["learned"][denoiser.label] for row in result["rows"]]
    for name in result["methods"]:
        columns[name] = [row["classical"][name] for row in result["rows"]]
    for label, points in columns.items():
        seconds = [point["seconds"] for point in points]
        lines.append(
            f"- {label}: {sum(seconds):.0f} s over {len(seconds)} levels"
            f" ({min(seconds):.1f}-{max(seconds):.1f} s per level)"
        )
    return "\n".join(lines) + "\n"


def figure(result: dict):
    """The study's figure: PSNR and SSIM per level of the noisy input and every denoiser."""
    rows = result["rows"]
    curves = {"noisy input": [row["noisy input"] for row in rows]}
    for denoiser in result["learned"]:
        curves[denoiser.title()] = [row["learned"][denoiser.label] for row in rows]
    for name in result["methods"]:
        curves[classical.DENOISERS[name].label] = [row["classical"][name] for row in rows]
    learned_titles = [denoiser.title() for denoiser in result["learned"]]
    return figures.denoising_figure([row["level"] for row in rows], curves, learned_titles)


def main(argv: list[str]) -> None:
    """`python -m autoenc.studies.denoising`: runs the study and writes its tables and figure."""
    parser = report.parser(MODULE, __doc__.splitlines()[0], "runs/studies/denoising")
    add = parser.add_argument
    add(
        "--configs",
        type=report.comma_list(str, allow_empty=True),
        default=list(CONFIGS),
        help=f"configs the study trains and scores (default: {','.join(CONFIGS)}); empty: none",
    )
    add(
        "--workdirs",
        type=report.comma_list(str, allow_empty=True),
        default=[],
        help="runs trained elsewhere (e.g. by launch.py) to score as they are",
    )
    add("--epochs", type=int, default=10, help="training epochs of --configs; 0 = their own")
    add(
        "--levels",
        type=report.comma_list(float),
        default=list(LEVELS),
        help=f"noise factors (default: {','.join(map(str, LEVELS))})",
    )
    add(
        "--methods",
        type=report.comma_list(str),
        default=list(METHODS),
        help=f"classical methods (default: all of {','.join(METHODS)})",
    )
    add("--test_images", type=int, default=0, help="score the first N test images; 0 = all")
    add("--tuning_images", type=int, default=200, help="held-out training images for tuning")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result = run(
        args.workdir,
        args.levels,
        configs=args.configs,
        workdirs=args.workdirs,
        epochs=args.epochs,
        methods=args.methods,
        test_images=args.test_images,
        tuning_images=args.tuning_images,
        log=lambda line: print(line, flush=True),
    )
    text = report.provenance(MODULE, argv) + "\n" + markdown_tables(result)
    text += f"\nTime per method (when computed):\n\n{timing_lines(result)}"
    paths = report.write(args.output_dir or args.workdir, "denoising_study", text, figure(result))
    print(text)
    print(
        f"{result['test_images']} test images; this run took"
        f" {(time.perf_counter() - started) / 60:.1f} min; wrote {paths[0]} and {paths[1]}"
    )


if __name__ == "__main__":
    report.run_command(MODULE, main)
