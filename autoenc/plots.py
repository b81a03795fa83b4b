"""The book's figures as PNG files in `WORKDIR/figures/`, drawn on a bare matplotlib `Figure`
with an Agg canvas (no pyplot: no global backend, no display, a fixed pixel size per file).

12 test images above their reconstructions (Figs 5-1/5-2/5-3, `reconstructions_dim<N>.png` for
a compression model, `reconstructions.png` otherwise); for a denoiser, its noisy inputs (Fig 5-4),
outputs (Fig 5-6) and the three rows together; loss and val_loss per epoch (Figs 5-7/5-8).
`write_figures` draws them from the best model at the end of training, `figures_from_workdir`
from the best checkpoint of any finished or interrupted run."""

import csv
import io
import pathlib

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from autoenc import checkpoints, models, pipeline
from autoenc import data as data_lib
from autoenc import workdir as workdir_lib
from autoenc.errors import UserError

ITEMS = 12  # images per row, as in the book
DPI = 100
SCALE = 3  # each 28x28 image is drawn 84x84 pixels...
TILE_PIXELS = 100  # ...centred in a white 100x100 tile, so neighbours stay apart
TITLE_PIXELS = 40


def image_rows_size(rows: int) -> tuple[int, int]:
    """The (width, height) in pixels of a figure of `rows` rows of `ITEMS` images."""
    return ITEMS * TILE_PIXELS, rows * TILE_PIXELS + TITLE_PIXELS


def image_rows_figure(rows: list[np.ndarray], title: str) -> Figure:
    """Draws `rows` of 28x28 images in [0, 1] ((ITEMS, 28, 28[, 1]) or (ITEMS, 784) arrays) in
    grey under a title, a figure of `image_rows_size(len(rows))` pixels: one mosaic placed pixel
    for pixel (`figimage`), each image pixel exactly SCALE x SCALE figure pixels."""
    width, height = image_rows_size(len(rows))
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    figure.suptitle(title, y=1 - 4 / height, va="top", fontsize=11)
    pad = (TILE_PIXELS - 28 * SCALE) // 2
    strips = []
    for row in rows:
        images = np.reshape(row, (-1, 28, 28))[:ITEMS]
        scaled = images.repeat(SCALE, axis=1).repeat(SCALE, axis=2)
        tiles = np.pad(scaled, ((0, 0), (pad, pad), (pad, pad)), constant_values=1.0)
        strips.append(np.concatenate(list(tiles), axis=1))
    mosaic = np.concatenate(strips, axis=0)
    figure.figimage(mosaic, xo=0, yo=0, cmap="gray", vmin=0.0, vmax=1.0, origin="upper")
    return figure


def read_history(path: pathlib.Path) -> list[dict[str, float]]:
    """The rows of history.csv as numbers ([] if there is no file yet); a one-line
    `UserError` naming the file if it is not a run's history."""
    if not path.exists():
        return []
    try:
        with open(path) as f:
            rows = list(csv.DictReader(f))
        if not rows or "val_loss" not in rows[0]:
            raise ValueError("no epoch rows with a val_loss column")
        return [{key: float(value) for key, value in row.items()} for row in rows]
    except (OSError, ValueError, TypeError) as e:  # TypeError: a row with missing fields
        raise UserError(f"cannot read {path}: {e}") from None


def loss_curves_figure(history: list[dict[str, float]]) -> Figure:
    """Draws loss and val_loss per epoch from history.csv's rows, the best epoch marked."""
    figure = Figure(figsize=(6.4, 4.0), dpi=DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    epochs = [int(row["epoch"]) for row in history]
    axes.plot(epochs, [row["loss"] for row in history], "o-", label="training loss")
    axes.plot(epochs, [row["val_loss"] for row in history], "s-", label="validation loss")
    best = history[int(np.argmin([row["val_loss"] for row in history]))]
    axes.axvline(
        best["epoch"], color="grey", linestyle=":", label=f"best epoch ({best['epoch']:.0f})"
    )
    axes.set_xlabel("epoch")
    axes.set_ylabel("binary cross-entropy")
    axes.set_title("Figs 5-7/5-8: loss per epoch")
    axes.xaxis.get_major_locator().set_params(integer=True)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return figure


def save_png(figure: Figure, path: pathlib.Path) -> None:
    """Writes `figure` to `path` as PNG, atomically (readers never see a part)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    workdir_lib.atomic_write_bytes(path, buffer.getvalue())


def first_examples(dataset, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` (input, target) pairs (fewer if there are fewer) of a `tf.data`
    evaluation dataset of (inputs, targets) batches, in order, as numpy arrays."""
    inputs, targets = next(iter(dataset.unbatch().take(count).batch(count)))
    return inputs.numpy(), targets.numpy()


def reconstructions_name(config) -> str:
    """The originals-vs-reconstructions figure's file (a compression model's names its code)."""
    field = models.spec(config).code_size_field
    return f"reconstructions_dim{config[field]}.png" if field else "reconstructions.png"


def write_figures(config, workdir, model, dataset) -> list[pathlib.Path]:
    """Draws a run's figures into `WORKDIR/figures/` (loss_curves.png once history.csv has a
    row) and returns the paths written. `model` holds the weights to show; `dataset` is the
    evaluation dataset val_loss was measured on, before distribution."""
    workdir = pathlib.Path(workdir)
    inputs, targets = first_examples(dataset, ITEMS)
    outputs = np.asarray(model(inputs, training=False))
    figures = {}
    if config.noise_factor > 0:
        figures["noisy_inputs.png"] = image_rows_figure(
            [inputs], f"Fig 5-4: noisy test images, clip(x + {config.noise_factor:g}·N(0,1), 0, 1)"
        )
        figures["denoised_outputs.png"] = image_rows_figure(
            [outputs], "Fig 5-6: the denoiser's outputs for those noisy images (best checkpoint)"
        )
        figures["clean_noisy_denoised.png"] = image_rows_figure(
            [targets, inputs, outputs],
            f"Test images: clean (top), noisy input with noise factor {config.noise_factor:g}"
            " (middle), denoised by the best checkpoint (bottom)",
        )
    else:
        field = models.spec(config).code_size_field
        book = "Fig 5-3" if field and config[field] == 768 else "Figs 5-1/5-2"
        code = f", {field} {config[field]}" if field else ""
        figures[reconstructions_name(config)] = image_rows_figure(
            [targets, outputs], f"{book}: test images (top) and reconstructions (bottom){code}"
        )
    history = read_history(workdir / "history.csv")
    if history:
        figures["loss_curves.png"] = loss_curves_figure(history)

    out_dir = workdir / "figures"
    out_dir.mkdir(exist_ok=True)
    for name, figure in figures.items():
        save_png(figure, out_dir / name)
    return [out_dir / name for name in figures]


def figures_from_workdir(config, workdir, *, data=None) -> list[pathlib.Path]:
    """Redraws a run's figures from its best checkpoint (`--mode=figures`) with the config it
    was trained with, on the noisy test images val_loss was measured on (`data`: a
    `data.FashionMNIST` instead of the real files); returns the paths written.

    Raises:
        UserError: no best checkpoint, a config that differs from the run's in a field that
            changes the figures, a run still using the workdir, or missing data.
    """
    workdir = pathlib.Path(workdir)
    trained = checkpoints.open_trained_run(config, workdir, also=checkpoints.TEST_NOISE_FIELDS)
    with trained as (nets, _):
        if data is None:
            data = data_lib.load_fashion_mnist(config.data_dir or None)
        eval_data = pipeline.eval_dataset(
            tf.constant(data.x_test),
            batch_size=config.batch_size,
            seed=config.seed,
            noise_factor=config.noise_factor,
            input_shape=models.input_shape(config),
        )
        return write_figures(config, workdir, nets.autoencoder, eval_data)
