"""What a trained autoencoder's code (the encoder's output, when it is one vector per image as
in the dense models) looks like: `write_projector` writes `LOGDIR/projector/`, a run that
`tensorboard --logdir=LOGDIR` shows in its Projector tab; `write_figures` draws a 2-D map of the
codes by class and decoded walks between images; `describe` and `from_workdir` do both for a
trained model and probe its code (`autoenc.probe`)."""

import math
import pathlib

import numpy as np
import tensorflow as tf
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.plugins import projector

from autoenc import checkpoints, plots, probe
from autoenc import data as data_lib
from autoenc import workdir as workdir_lib
from autoenc.errors import UserError

# Fashion-MNIST's classes, by label.
CLASS_NAMES = tuple(
    "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot".split(",")
)
# The checkpoint key of `tf.train.Checkpoint(codes=variable)`'s variable.
TENSOR_NAME = "codes/.ATTRIBUTES/VARIABLE_VALUE"
THUMBNAIL = 28
MAX_SPRITE_PIXELS = 8192  # the Projector's limit on either side of the sprite image
PREDICT_BATCH = 1000  # images per encoder call: bounds the activations' memory
# Class pairs of the walks: close garments, then ones far apart.
WALK_CLASSES = ((7, 9), (0, 3), (2, 4), (1, 8))
WALK_STEPS = plots.ITEMS - 2  # decoded codes between the two images of a row


def has_code(nets) -> bool:
    """Whether a `models.Autoencoder`'s encoder gives one code vector per image."""
    return len(nets.encoder.output_shape) == 2


def check_code(nets) -> None:
    """Raises UserError, naming their shape, for an encoder that gives feature maps: flattened,
    a probe of the conv model's scores no better than an untrained encoder's."""
    if not has_code(nets):
        shape = "x".join(str(size) for size in nets.encoder.output_shape[1:])
        raise UserError(
            f"no code to show for this model: its encoder gives {shape} feature maps, not one"
            " code vector per image (the dense models have one)"
        )


def codes(nets, images_uint8: np.ndarray) -> np.ndarray:
    """The encoder's codes of uint8 images (N, 28, 28) as float32 (N, width); the images are
    scaled to [0, 1] and shaped as the pipeline feeds them. UserError for feature maps."""
    check_code(nets)
    encoder = nets.encoder
    shape = (-1, *(THUMBNAIL if size is None else size for size in encoder.input_shape[1:]))
    splits = range(PREDICT_BATCH, len(images_uint8), PREDICT_BATCH)
    batches = [
        np.asarray(encoder(images.reshape(shape) / np.float32(255), training=False), np.float32)
        for images in np.array_split(images_uint8, splits)
    ]
    return np.concatenate(batches)


def sprite(images_uint8: np.ndarray) -> np.ndarray:
    """The images as one square uint8 mosaic (side, side, 1), row by row: the Projector's sprite.
    ValueError if it would be more than `MAX_SPRITE_PIXELS` a side."""
    per_side = max(1, math.ceil(math.sqrt(len(images_uint8))))
    if per_side * THUMBNAIL > MAX_SPRITE_PIXELS:
        raise ValueError(f"{len(images_uint8)} thumbnails do not fit one Projector sprite")
    tiles = np.zeros((per_side * per_side, THUMBNAIL, THUMBNAIL), np.uint8)
    tiles[: len(images_uint8)] = images_uint8.reshape(-1, THUMBNAIL, THUMBNAIL)
    grid = tiles.reshape(per_side, per_side, THUMBNAIL, THUMBNAIL).swapaxes(1, 2)
    return grid.reshape(per_side * THUMBNAIL, per_side * THUMBNAIL, 1)


def write_projector(nets, images_uint8: np.ndarray, labels: np.ndarray, logdir) -> pathlib.Path:
    """Writes the images' codes for TensorBoard's Embedding Projector into `LOGDIR/projector/`
    and returns that directory.

    The codes are a checkpoint variable (a TSV of 10,000 rows would be megabytes of text), which a
    rerun replaces; the classes go to `metadata.tsv` as `CLASS_NAMES` (one column, no header), the
    thumbnails to `sprite.png`. One text summary makes the directory a run TensorBoard finds.
    """
    values = codes(nets, images_uint8)
    directory = pathlib.Path(logdir) / "projector"
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = tf.train.Checkpoint(codes=tf.Variable(values, trainable=False))
    tf.train.CheckpointManager(checkpoint, str(directory), max_to_keep=1).save()
    (directory / "metadata.tsv").write_text("".join(f"{CLASS_NAMES[i]}\n" for i in labels))
    tf.io.write_file(str(directory / "sprite.png"), tf.io.encode_png(sprite(images_uint8)))
    thumbnails = projector.SpriteMetadata(image_path="sprite.png", single_image_dim=[THUMBNAIL] * 2)
    embedding = projector.EmbeddingInfo(
        tensor_name=TENSOR_NAME, metadata_path="metadata.tsv", sprite=thumbnails
    )
    config = projector.ProjectorConfig(embeddings=[embedding])
    projector.visualize_embeddings(str(directory), config)
    with tf.summary.create_file_writer(str(directory)).as_default():
        text = f"Codes ({values.shape[1]} numbers) of {len(values)} images, labelled by class"
        tf.summary.text("projector", text, step=0)
    return directory


def principal_plane(values: np.ndarray) -> tuple[np.ndarray, float]:
    """The codes on their first two principal axes, and the share of variance those axes hold."""
    centred = values.astype(np.float64) - values.mean(axis=0)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    share = float(np.sum(singular[:2] ** 2) / max(np.sum(singular**2), np.finfo(float).tiny))
    plane = centred @ axes[:2].T
    return np.pad(plane, ((0, 0), (0, 2 - plane.shape[1]))), share


def code_map_figure(values: np.ndarray, labels: np.ndarray) -> Figure:
    """The codes on their two principal axes, one colour per class."""
    plane, share = principal_plane(values)
    figure = Figure(figsize=(8.0, 6.0), dpi=plots.DPI)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, name in enumerate(CLASS_NAMES):
        chosen = labels == label
        if np.any(chosen):
            axes.scatter(*plane[chosen].T, s=2, alpha=0.5, color=f"C{label}", label=name)
    title = f"Test codes ({values.shape[1]} numbers) on their first two principal axes"
    axes.set_title(f"{title} ({share:.0%} of their variance)", fontsize=10)
    axes.set(xlabel="first principal axis", ylabel="second principal axis")
    # Beside the axes: inside, it would hide a cluster.
    axes.legend(markerscale=5, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    return figure


def walk_pairs(labels: np.ndarray) -> list[tuple[int, int]]:
    """The first image of each class of each `WALK_CLASSES` pair the labels hold both classes
    of; else the first and the last image."""
    first = {int(label): int(np.argmax(labels == label)) for label in np.unique(labels)}
    pairs = [(first[a], first[b]) for a, b in WALK_CLASSES if a in first and b in first]
    return pairs or [(0, len(labels) - 1)]


def walk_rows(nets, images_uint8: np.ndarray, pairs: list[tuple[int, int]]) -> list:
    """One row of `plots.ITEMS` images in [0, 1] per pair: the left image, `WALK_STEPS` decoded
    codes on the line from its code to the right image's (ends included, so the second and the
    second-last are the two reconstructions), the right image."""
    ends = codes(nets, images_uint8[np.ravel(pairs)]).reshape(len(pairs), 2, -1)
    steps = np.linspace(0.0, 1.0, WALK_STEPS, dtype=np.float32)[None, :, None]
    line = (1 - steps) * ends[:, :1] + steps * ends[:, 1:]
    decoded = np.asarray(nets.decoder(line.reshape(-1, line.shape[-1]), training=False))
    decoded = decoded.reshape(len(pairs), WALK_STEPS, THUMBNAIL, THUMBNAIL)
    originals = images_uint8[np.asarray(pairs)].astype(np.float32) / 255
    return [np.concatenate([o[:1], d, o[1:]]) for o, d in zip(originals, decoded)]


def write_figures(nets, images_uint8: np.ndarray, labels: np.ndarray, figures_dir) -> list:
    """Draws `code_map.png` and `code_walks.png` of the images (e.g. the test set) into
    `figures_dir`, created if missing, and returns the two paths."""
    figures_dir = pathlib.Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    title = "Walks in code space: a test image at each end, the decoded codes on the line between"
    code_map = code_map_figure(codes(nets, images_uint8), labels)
    walks = plots.image_rows_figure(walk_rows(nets, images_uint8, walk_pairs(labels)), title)
    drawn = {"code_map.png": code_map, "code_walks.png": walks}
    for name, figure in drawn.items():
        plots.save_png(figure, figures_dir / name)
    return [figures_dir / name for name in drawn]


def from_workdir(config, workdir, *, data=None, classifier: str = "knn5") -> dict:
    """`describe` for a trained run's best checkpoint, with the probe also in `probe.json`.

    Args:
        config: the config the run was trained with.
        workdir: a finished or interrupted run's work directory.
        data: a `data.FashionMNIST` to use instead of loading the real files (tests).
        classifier: the probe's classifier, a key of `probe.CLASSIFIERS`.

    Raises:
        UserError: no best checkpoint, a run training there, missing data, or no code vector.
    """
    workdir = pathlib.Path(workdir)
    with checkpoints.open_trained_run(config, workdir) as (nets, _):
        check_code(nets)  # before the data is read
        if data is None:
            data = data_lib.load_fashion_mnist(config.data_dir or None)
        result = describe(nets, data, workdir, classifier)
    workdir_lib.write_json(workdir / "probe.json", result)
    return result


def describe(nets, data, logdir, classifier: str = "knn5") -> dict:
    """Writes the test images' Projector files (with the probe's accuracies as scalars) and code
    figures under `logdir`; returns `probe.compare` of the training and test codes."""
    logdir = pathlib.Path(logdir)
    directory = write_projector(nets, data.x_test, data.y_test, logdir)
    write_figures(nets, data.x_test, data.y_test, logdir / "figures")
    result = probe.compare(codes(nets, data.x_train), codes(nets, data.x_test), data, classifier)
    with tf.summary.create_file_writer(str(directory)).as_default():
        for name in ("code", "pca", "pixels"):
            if result[name] is not None:
                tf.summary.scalar(f"probe/{classifier}_{name}", result[name], step=0)
    return result
