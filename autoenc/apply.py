"""A trained model applied to the user's own image files (`--mode=apply`), each image as given
through `serving.ServingFunctions.reconstruct`, the function an export serves. One larger than a
call's worth of pixels goes in tiles, each run with a margin of the model's receptive field (derived
from its layers): the untiled result to float rounding, in bounded memory. A file that cannot be
used is reported in its `Outcome` and the rest still runs."""

import itertools
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
# Keras layers that act on each pixel (or pass tensors on) without looking at its neighbours.
_POINTWISE = "InputLayer Activation ReLU Identity Concatenate Add Dropout BatchNormalization"
POINTWISE_LAYERS = tuple(getattr(keras.layers, name) for name in _POINTWISE.split())


class Outcome(NamedTuple):
    """What happened to one input: its `output`, or the `problem` that stopped it."""

    source: pathlib.Path
    output: pathlib.Path | None
    problem: str | None


def list_inputs(specs: list[str]) -> list[pathlib.Path]:
    """The input files: each spec is a file (kept if missing, to be reported) or a directory,
    whose files but hidden ones are taken in name order. A UsageError if there are none."""
    paths = []
    for path in map(pathlib.Path, specs):
        if path.is_dir():
            visible = [child for child in path.iterdir() if child.name[0] != "."]
            paths += sorted(child for child in visible if child.is_file())
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
    """A feature map has a pixel per `stride` x `stride` input pixels; each sees `radius` input
    pixels beyond that footprint on every side."""

    stride: float
    radius: float

    def upsampled(self, factor: int) -> "Field":
        # A finer pixel sees what its coarse pixel saw, which reaches past its smaller footprint.
        return Field(self.stride / factor, self.radius + self.stride - self.stride / factor)

    def downsampled(self, factor: int) -> "Field":
        return Field(self.stride * factor, self.radius)

    def convolved(self, layer: keras.layers.Conv2D) -> "Field":
        if layer.padding != "same":
            raise ValueError(f"layer {layer.name}: tiling needs 'same' padding")
        reach = max(size // 2 * rate for size, rate in zip(layer.kernel_size, layer.dilation_rate))
        return Field(self.stride * max(layer.strides), self.radius + reach * self.stride)


def _merged(fields: list[Field]) -> Field:
    if len({field.stride for field in fields}) != 1:
        raise ValueError(f"inputs of different resolutions merged pixel by pixel: {fields}")
    return Field(fields[0].stride, max(field.radius for field in fields))


def _layer_field(layer, inputs: list[Field]) -> Field | list[Field]:
    """The field of a layer's output(s), from those of its inputs."""
    if isinstance(layer, layers.UpsampledConv2D):  # upsample, concatenate any skip, conv
        return _merged([inputs[0].upsampled(2), *inputs[1:]]).convolved(layer)
    if isinstance(layer, keras.layers.Conv2D):
        return inputs[0].convolved(layer)
    if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
        if tuple(layer.pool_size) != tuple(layer.strides):
            raise ValueError(f"layer {layer.name}: tiling needs pool_size == strides")
        return inputs[0].downsampled(max(layer.strides))
    if isinstance(layer, keras.layers.UpSampling2D):
        return inputs[0].upsampled(max(layer.size))
    if isinstance(layer, layers.DepthToSpace):  # before SpaceToDepth: it subclasses it
        return inputs[0].upsampled(layer.block)
    if isinstance(layer, layers.SpaceToDepth):
        return inputs[0].downsampled(layer.block)
    if isinstance(layer, layers.SplitChannels):
        return [inputs[0]] * len(layer.sizes)
    if isinstance(layer, layers.PassPair):
        return list(inputs)
    if isinstance(layer, POINTWISE_LAYERS):
        return _merged(inputs) if inputs else Field(1, 0)
    raise TypeError(f"no receptive field rule for layer {layer.name} ({type(layer).__name__})")


def receptive_field(model: keras.Model) -> tuple[int, int]:
    """(radius, alignment) of a fully convolutional model: an output pixel depends on input
    pixels at most `radius` rows and columns away (each layer's worst case added up), and the
    model commutes with shifts by multiples of `alignment` (its largest downsampling)."""
    fields = {}  # (layer name, node index) -> the fields of that call's outputs

    def field_of(tensor) -> Field:
        layer, node_index, tensor_index = tensor._keras_history
        if (layer.name, node_index) not in fields:
            node = layer._inbound_nodes[node_index]
            result = _layer_field(layer, [field_of(t) for t in node.input_tensors])
            fields[layer.name, node_index] = result if isinstance(result, list) else [result]
        return fields[layer.name, node_index][tensor_index]

    output = _merged([field_of(tensor) for tensor in model.outputs])
    if output.stride != 1:
        raise ValueError(f"{model.name}: output at another resolution than the input")
    largest_stride = max(field.stride for outputs in fields.values() for field in outputs)
    return math.ceil(output.radius), int(largest_stride)  # the input's is 1


class Tiling(NamedTuple):
    """Cores of `tile` x `tile` pixels, each run on a window `margin` pixels wider on every side."""

    tile: int
    margin: int


def tiling_for(model: keras.Model, size_multiple: int = 1, tile: int | None = None) -> Tiling:
    """The tiling of a fully convolutional model served padded to multiples of `size_multiple`:
    the margin is its receptive radius rounded up to a multiple of that and of its alignment, so a
    window at the image's edge is padded as the whole image; windows of ~PIXELS_PER_CALL pixels."""
    radius, alignment = receptive_field(model)
    step = math.lcm(alignment, size_multiple)
    margin = -(-radius // step) * step
    if tile is None:
        tile = max(1, (math.isqrt(PIXELS_PER_CALL) - 2 * margin) // step) * step
    if tile <= 0 or tile % step:
        raise ValueError(f"tile {tile} is not a positive multiple of {step}")
    return Tiling(tile, margin)


def reconstruct(functions, images: np.ndarray, tiling: Tiling | None) -> np.ndarray:
    """`functions.reconstruct` (as `serving.ServingFunctions`') of (N, H, W) images: small ones a
    few per call, one larger than a window in tiles (`tiling`; None for the dense models, 28x28
    only). A window at the image's edge starts at a multiple of the tiling's step, so it is padded
    as the whole image."""
    height, width = images.shape[1:]
    if tiling is None or max(height, width) <= tiling.tile + 2 * tiling.margin:
        per_call = max(1, PIXELS_PER_CALL // (height * width))
        starts = range(0, len(images), per_call)
        parts = [functions.reconstruct(images[i : i + per_call])["image"].numpy() for i in starts]
        return np.concatenate(parts)
    output = np.empty_like(images)
    tile, margin = tiling
    for image, result in zip(images, output):
        for top, left in itertools.product(range(0, height, tile), range(0, width, tile)):
            bottom, right = min(height, top + tile), min(width, left + tile)
            y0, x0 = max(0, top - margin), max(0, left - margin)
            y1, x1 = min(height, bottom + margin), min(width, right + margin)
            window = functions.reconstruct(image[np.newaxis, y0:y1, x0:x1])["image"].numpy()[0]
            result[top:bottom, left:right] = window[top - y0 : bottom - y0, left - x0 : right - x0]
    return output


def _targets(inputs: list[str], output_dir: pathlib.Path, overwrite: bool) -> list[tuple]:
    """(input, result) pairs, an input given twice twice. A UsageError for a result name taken in
    `output_dir` (by an earlier result or a user's file), unless `overwrite`."""
    targets = [(path, output_dir / image_files.result_name(path)) for path in list_inputs(inputs)]
    if overwrite:
        return targets
    for source, target in targets:
        # An input reported as a problem of its own writes no result.
        readable = source.suffix.lower() in image_files.SUPPORTED_SUFFIXES and source.is_file()
        if readable and (target.exists() or target.is_symlink()):
            raise UsageError(
                f"--output_dir={output_dir} already holds {target.name} (the result name of"
                f" {source}); pass --overwrite to replace such files, or another --output_dir"
            )
    return targets


def apply_to_files(
    config, workdir, inputs: list[str], output_dir, *, overwrite: bool = False, weights="best"
) -> Iterator[Outcome]:
    """Runs a run's best model (or its final one, `weights="final"`) on the files of `inputs`
    (`list_inputs`), yielding an `Outcome` per file in order once its result is written (or not).
    `NAME.png`, `.jpg` or `.jpeg` gives `OUTPUT_DIR/NAME.png`; `NAME.npy`, `OUTPUT_DIR/NAME.npy`.
    Errors before any file is read are `checkpoints.open_trained_run`'s. A file in `output_dir`
    under a result's name is refused before anything is written, unless `overwrite`; an input, or
    a result of the same call, is never replaced."""
    output_dir = pathlib.Path(output_dir)
    targets = _targets(inputs, output_dir, overwrite)
    with checkpoints.open_trained_run(config, workdir, weights=weights) as (nets, _):
        _prepare_output_dir(output_dir)
        functions = serving.ServingFunctions(nets, config.model)
        flat = models.spec(config).flat  # flat vectors: 28x28 images only
        tiling = None if flat else tiling_for(nets.autoencoder, functions.size_multiple)
        written = {}  # output path -> the input it came from
        input_files = {source.resolve() for source, _ in targets}
        for source, target in targets:
            try:
                if target in written:
                    raise image_files.FileProblem(
                        f"its result {target.name} would replace that of {written[target]};"
                        " rename one"
                    )
                if target.resolve() in input_files:
                    raise image_files.FileProblem(
                        f"its result would replace the input {target}; choose another --output_dir"
                    )
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
