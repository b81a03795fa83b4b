"""A trained model applied to the user's own image files (`--mode=apply`).

The denoiser denoises each image as given (the user's images are presumably noisy already; no
noise is added), at any size; the dense model compresses each 28x28 image to its code and
reconstructs it. Both go through `autoenc.serving.ServingFunctions.reconstruct`, the function
an export serves. `apply_to_files` yields one `Outcome` per input file as it goes, so a file
that cannot be used is reported and the rest of the batch still runs.
"""

import pathlib
import tempfile
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from autoenc import checkpoints, image_files, models, serving
from autoenc import workdir as workdir_lib
from autoenc.errors import UsageError, UserError

PIXELS_PER_CALL = 1 << 20  # bounds the denoiser's activations (32 floats per pixel per layer)


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


def _reconstruct(functions: serving.ServingFunctions, images: np.ndarray) -> np.ndarray:
    """The model's output for (N, H, W) images, a few at a time so memory stays bounded."""
    per_call = max(1, PIXELS_PER_CALL // (images.shape[1] * images.shape[2]))
    parts = [
        functions.reconstruct(images[start : start + per_call])["image"].numpy()
        for start in range(0, len(images), per_call)
    ]
    return np.concatenate(parts)


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
    checkpoints.best_checkpoint_path(workdir, weights)  # a missing run fails before the lock
    with workdir_lib.WorkdirLock(workdir):
        nets = checkpoints.load_best_model(config, workdir, weights=weights)
        _prepare_output_dir(output_dir)
        functions = serving.ServingFunctions(nets, config.model)
        written = {}  # output path -> the input it came from
        input_files = {source.resolve() for source in sources}
        for source in sources:
            target = _result_path(output_dir, source)
            try:
                _check_target(target, written, input_files)
                images = image_files.read_images(source)
                height, width = images.pixels.shape[1:]
                if config.model in models.FLAT_MODELS and (height, width) != (28, 28):
                    raise image_files.FileProblem(
                        f"{height}x{width} pixels; the dense model takes exactly 28x28"
                        " (resize the image first)"
                    )
                results = _reconstruct(functions, images.pixels)
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
