"""A trained model applied to the user's own image files (`--mode=apply`).

A denoiser denoises each image as given (the user's images are presumably noisy already; no
noise is added), at any size; the dense models compress each 28x28 image to its code and
reconstruct it. Both go through `autoenc.serving.ServingFunctions.reconstruct`, the function
an export serves. An image larger than one call's worth of pixels is denoised in overlapping
tiles: each tile runs with a margin of the image around it at least as wide as the model's
receptive field (`receptive_field`, derived from its layers), so the result is the untiled
one to float rounding while memory stays bounded. `apply_to_files` yields one `Outcome` per
input file as it goes, so a file that cannot be used is reported and the rest still runs.
"""

import math
import pathlib
import tempfile
from collections.abc import Iterator
from typing import NamedTuple

import keras
import numpy as np

from autoenc import checkpoints, image_files, layers, models, serving
from autoenc.errors import UsageError, UserError

PIXELS_PER_CALL = 1 << 20  # bounds a call's activations (up to 32 floats per pixel per layer)
# Layers that act on each pixel (or pass tensors on) without looking at its neighbours.
POINTWISE_LAYERS = (
    keras.layers.InputLayer,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.Identity,
    keras.layers.Concatenate,
    keras.layers.Add,
    keras.layers.Dropout,
    keras.layers.BatchNormalization,
    layers.PassPair,
    layers.SplitChannels,
)


class Outcome(NamedTuple):
    """What happened to one input: its `output`, or the `problem` that stopped it."""

    source: pathlib.Path
    output: pathlib.Path | None
    problem: str | None


def list_inputs(specs: list[str]) -> list[pathlib.Path]:
    """The input files: each spec is a file, or a directory whose files are all taken (not
    its subdirectories or hidden files), in name order. A missing path is kept, to be reported.

    Raises:
        UsageError: there is no input file at all.
    """
    paths = []
    for spec in specs:
        path = pathlib.Path(spec)
        if path.is_dir():
            paths += sorted(
                child for child in path.iterdir() if child.is_file() and child.name[0] != "."
            )
        else:
            paths.append(path)
    if not paths:
        raise UsageError(f"--inputs={','.join(specs)}: no input files")
    return paths


def _prepare_output_dir(output_dir: pathlib.Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise UsageError(f"--output_dir={output_dir} is a file, not a directory")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test").close()
    except OSError as e:
        raise UserError(f"--output_dir={output_dir} is not writable: {e.strerror or e}") from None


class Field(NamedTuple):
    """What one pixel of a feature map sees of the input image: the feature map has one pixel
    per `stride` x `stride` input pixels, and each sees `radius` input pixels beyond that
    footprint on every side."""

    stride: float
    radius: float


def _upsampled(field: Field, factor: int) -> Field:
    # A finer pixel sees what its coarse pixel saw, which reaches past its smaller footprint.
    return Field(field.stride / factor, field.radius + field.stride - field.stride / factor)


def _merged(fields: list[Field]) -> Field:
    if len({field.stride for field in fields}) != 1:
        raise ValueError(f"inputs of different resolutions merged pixel by pixel: {fields}")
    return Field(fields[0].stride, max(field.radius for field in fields))


def _convolved(field: Field, layer: keras.layers.Conv2D) -> Field:
    if layer.padding != "same":
        raise ValueError(f"layer {layer.name}: tiling needs 'same' padding")
    reach = max(size // 2 * rate for size, rate in zip(layer.kernel_size, layer.dilation_rate))
    return Field(field.stride * max(layer.strides), field.radius + reach * field.stride)


def _layer_field(layer, inputs: list[Field]) -> Field | list[Field]:
    """The field of a layer's output(s), from those of its inputs."""
    if isinstance(layer, layers.UpsampledSkipConv2D):  # upsample the first, concatenate, conv
        return _convolved(_merged([_upsampled(inputs[0], 2), inputs[1]]), layer)
    if isinstance(layer, layers.UpsampledConv2D):  # UpSampling2D(2), then a 3x3 'same' conv
        return _convolved(_upsampled(inputs[0], 2), layer)
    if isinstance(layer, keras.layers.Conv2D):
        return _convolved(inputs[0], layer)
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        if tuple(layer.pool_size) != tuple(layer.strides):
            raise ValueError(f"layer {layer.name}: tiling needs pool_size == strides")
        return Field(inputs[0].stride * max(layer.strides), inputs[0].radius)
    if isinstance(layer, keras.layers.UpSampling2D):
        return _upsampled(inputs[0], max(layer.size))
    if isinstance(layer, layers.DepthToSpace):  # before SpaceToDepth: it subclasses it
        return _upsampled(inputs[0], layer.block)
    if isinstance(layer, layers.SpaceToDepth):
        return Field(inputs[0].stride * layer.block, inputs[0].radius)
    if isinstance(layer, layers.SplitChannels):
        return [inputs[0]] * len(layer.sizes)
    if isinstance(layer, layers.PassPair):
        return list(inputs)
    if isinstance(layer, POINTWISE_LAYERS):
        return _merged(inputs) if inputs else Field(1, 0)
    raise TypeError(f"no receptive field rule for layer {layer.name} ({type(layer).__name__})")


def receptive_field(model: keras.Model) -> tuple[int, int]:
    """(radius, alignment) of a fully convolutional model, derived from its layers.

    An output pixel depends on input pixels at most `radius` rows and columns away; the model
    commutes with shifts of the image by multiples of `alignment` (its largest downsampling).
    The radius adds up each layer's worst case, so it may exceed what the model needs.
    """
    fields, largest_stride = {}, [1.0]

    def field_of(tensor) -> Field:
        layer, node_index, tensor_index = tensor._keras_history
        if (layer.name, node_index) not in fields:
            node = layer._inbound_nodes[node_index]
            result = _layer_field(layer, [field_of(t) for t in node.input_tensors])
            for field in result if isinstance(result, list) else [result]:
                largest_stride[0] = max(largest_stride[0], field.stride)
            fields[layer.name, node_index] = result
        result = fields[layer.name, node_index]
        return result[tensor_index] if isinstance(result, list) else result

    output = _merged([field_of(tensor) for tensor in model.outputs])
    if output.stride != 1:
        raise ValueError(f"{model.name}: output at another resolution than the input")
    return math.ceil(output.radius), int(largest_stride[0])


class Tiling(NamedTuple):
    """How a large image is cut: cores of `tile` x `tile` pixels, each run on a window that
    adds `margin` pixels of the image on every side (both multiples of the model's alignment
    and of the size its serving function pads to)."""

    tile: int
    margin: int


def tiling_for(model: keras.Model, size_multiple: int = 1, tile: int | None = None) -> Tiling:
    """The tiling of a fully convolutional model whose serving function pads images to
    multiples of `size_multiple`: the margin is its receptive radius rounded up to a multiple
    of that and of its alignment (so a window that reaches the image's edge is padded as the
    whole image is), and windows hold about PIXELS_PER_CALL pixels unless `tile` is given."""
    radius, alignment = receptive_field(model)
    step = math.lcm(alignment, size_multiple)
    margin = -(-radius // step) * step
    if tile is None:
        tile = max(1, (math.isqrt(PIXELS_PER_CALL) - 2 * margin) // step) * step
    if tile <= 0 or tile % step:
        raise ValueError(f"tile {tile} is not a positive multiple of {step}")
    return Tiling(tile, margin)


def reconstruct(
    functions: serving.ServingFunctions, images: np.ndarray, tiling: Tiling | None
) -> np.ndarray:
    """The model's output for (N, H, W) images: small ones a few per call, one larger than a
    window in tiles (`tiling`; None for the dense models, which take 28x28 only)."""
    height, width = images.shape[1:]
    if tiling is not None and max(height, width) > tiling.tile + 2 * tiling.margin:
        output = np.empty_like(images)
        for image, result in zip(images, output):
            _reconstruct_tiled(functions, image, tiling, result)
        return output
    per_call = max(1, PIXELS_PER_CALL // (height * width))
    parts = [
        functions.reconstruct(images[start : start + per_call])["image"].numpy()
        for start in range(0, len(images), per_call)
    ]
    return np.concatenate(parts)


def _reconstruct_tiled(functions, image: np.ndarray, tiling: Tiling, output: np.ndarray) -> None:
    """One (H, W) image into `output`, tile by tile. A window starts at a multiple of the
    tiling's step, so one that reaches the image's edge is padded as the whole image is; the
    padding of one that stops inside is beyond every core pixel's receptive field."""
    height, width = image.shape
    tile, margin = tiling
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            bottom, right = min(height, top + tile), min(width, left + tile)
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, bottom + margin), min(width, right + margin)
            window = functions.reconstruct(image[np.newaxis, y0:y1, x0:x1])["image"].numpy()
            output[top:bottom, left:right] = window[
                0, top - y0 : bottom - y0, left - x0 : right - x0
            ]


def _result_path(output_dir: pathlib.Path, source: pathlib.Path) -> pathlib.Path:
    return output_dir / (source.stem + image_files.output_suffix(source))


def _refuse_existing_results(output_dir: pathlib.Path, sources: list[pathlib.Path]) -> None:
    """Refuses, before anything is written, a result name already taken in `output_dir` (by
    an earlier apply or by a file of the user's: this call cannot tell them apart)."""
    for source in sources:
        if source.suffix.lower() not in image_files.SUPPORTED_SUFFIXES or not source.is_file():
            continue  # reported as a problem of its own; no result is written for it
        target = _result_path(output_dir, source)
        if target.exists() or target.is_symlink():
            raise UsageError(
                f"--output_dir={output_dir} already holds {target.name} (the result name of"
                f" {source}); pass --overwrite to replace such files, or another --output_dir"
            )


def apply_to_files(
    config, workdir, inputs: list[str], output_dir, *, overwrite: bool = False, weights="best"
) -> Iterator[Outcome]:
    """Runs a run's best model (or its final one) on image files, one result file per input.

    An input `NAME.png`/`.jpg`/`.jpeg` gives `OUTPUT_DIR/NAME.png`, `NAME.npy` gives
    `OUTPUT_DIR/NAME.npy` (see `autoenc.image_files` for the formats). A file already in
    OUTPUT_DIR under a result's name is replaced only with `overwrite`; an input file, or a
    result written earlier in the same call, never is.

    Args:
        config: the config the run was trained with (only the model fields must match).
        workdir: a finished or interrupted run's work directory.
        inputs: files and directories (see `list_inputs`).
        output_dir: where the results go; created if missing.
        overwrite: replace files in `output_dir` that have a result's name.
        weights: "best" (the best checkpoint) or "final" (the weights training ended with).

    Yields:
        One `Outcome` per input file, in order, after its result is written (or not).

    Raises:
        UserError: no best checkpoint, a run still using the workdir, an unwritable output
            directory, or no inputs: before any file is read.
        UsageError: a config with another model, or (without `overwrite`) a result name
            already taken in `output_dir`: before any file is written.
    """
    output_dir = pathlib.Path(output_dir)
    sources = list_inputs(inputs)
    if not overwrite:
        _refuse_existing_results(output_dir, sources)
    with checkpoints.open_trained_run(config, workdir, weights=weights) as (nets, _):
        _prepare_output_dir(output_dir)
        functions = serving.ServingFunctions(nets, config.model)
        flat = models.spec(config).flat  # flat vectors: 28x28 images only
        tiling = None if flat else tiling_for(nets.autoencoder, functions.size_multiple)
        written = {}  # output path -> the input it came from
        input_files = {source.resolve() for source in sources}
        for source in sources:
            target = _result_path(output_dir, source)
            try:
                _check_target(target, written, input_files)
                images = image_files.read_images(source)
                height, width = images.pixels.shape[1:]
                if flat and (height, width) != (28, 28):
                    raise image_files.FileProblem(
                        f"{height}x{width} pixels; the {config.model} model takes exactly 28x28"
                        " (resize the image first)"
                    )
                results = reconstruct(functions, images.pixels, tiling)
                image_files.write_like(target, results, images)
            except image_files.FileProblem as problem:
                yield Outcome(source, None, str(problem))
                continue
            written[target] = source
            yield Outcome(source, target, None)


def _check_target(target, written, input_files) -> None:
    """Refuses an output that would replace an input file or another input's output."""
    if target in written:
        raise image_files.FileProblem(
            f"its result {target.name} would replace that of {written[target]}; rename one"
        )
    if target.resolve() in input_files:
        raise image_files.FileProblem(
            f"its result would replace the input {target}; choose another --output_dir"
        )
