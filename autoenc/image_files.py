"""A user's image files read as grey float images in [0, 1], and results written back (Pillow).

Pictures (`.png`, `.jpg`, `.jpeg` of PNG or JPEG content) go grey by Pillow's luma 0.299 R +
0.587 G + 0.114 B, transparency ignored, from 8-bit values or 16-bit grey PNG, up to
`PIL.Image.MAX_IMAGE_PIXELS`; results are 8-bit grey PNG. Arrays (`.npy`) hold an (H, W) image or
an (N, H, W) stack, uint8 as 0..255, float as 0..1 (values outside are refused, not guessed at);
results are float32 of the input's shape. A `FileProblem` says what is wrong with one file.
"""

import io
import pathlib
import struct
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from autoenc import workdir as workdir_lib

ARRAY_SUFFIX = ".npy"
SUPPORTED_SUFFIXES = (".png", ".jpg", ".jpeg", ARRAY_SUFFIX)


class FileProblem(Exception):
    """Why one input file cannot be used (a one-line message, without the file name)."""


class Images(NamedTuple):
    """The images of one file, and how the file held them (to write results the same way)."""

    pixels: np.ndarray  # float32 in [0, 1], shape (N, H, W); N = 1 for a picture
    array_shape: tuple | None  # the shape of a .npy file's array; None for a picture


def read_images(path: pathlib.Path) -> Images:
    """A file's `Images`; a FileProblem if it is missing, unreadable, of a wrong type or range."""
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise FileProblem(
            f"unsupported file type {path.suffix or '(no suffix)'!r};"
            f" expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileProblem("no such file")
    if path.suffix.lower() == ARRAY_SUFFIX:
        array = _read_array(path)
        return Images(array.reshape(-1, *array.shape[-2:]), array.shape)
    return Images(_read_picture(path)[np.newaxis], None)


def _read_picture(path: pathlib.Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow only warns up to twice its limit; such an image is refused all the same.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG", "JPEG"]) as picture:
                picture.load()  # decode now, so a truncated file fails here
                deep = picture.mode in ("I;16", "I;16B", "I;16L", "I")  # 16-bit grey PNG
                pixels = np.array(picture if deep else picture.convert("L"), dtype=np.float32)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FileProblem(
            f"more than the {Image.MAX_IMAGE_PIXELS:,} pixels Pillow opens"
            " (PIL.Image.MAX_IMAGE_PIXELS); cut it into smaller images"
        ) from None
    except UnidentifiedImageError:
        raise FileProblem("not a PNG or JPEG image") from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise FileProblem(f"cannot decode the image: {e}") from None
    pixels /= 65535.0 if deep else 255.0  # in place: the float copy is a scan's largest array
    return pixels


def _read_array(path: pathlib.Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        reason = " ".join(str(e).split())[:200]
        raise FileProblem(f"not a readable .npy array: {reason}") from None
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise FileProblem(f"array of shape {array.shape}; expected one HxW image or NxHxW")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise FileProblem(f"dtype {array.dtype}; expected uint8 (0..255) or float (0..1)")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise FileProblem(
            f"float values must be in [0, 1], found {array.min():g} to {array.max():g}"
            " (for 0..255 use uint8)"
        )
    return array.astype(np.float32)


def result_name(path: pathlib.Path) -> str:
    """The file name of an input file's result: NAME.npy for an array, else NAME.png."""
    return path.stem + (ARRAY_SUFFIX if path.suffix.lower() == ARRAY_SUFFIX else ".png")


def write_like(target: pathlib.Path, results: np.ndarray, source: Images) -> None:
    """Writes (N, H, W) results in [0, 1] atomically as `source` held its images (8-bit PNG or
    float32 .npy of its shape); a FileProblem if it cannot."""
    buffer = io.BytesIO()
    if source.array_shape is not None:
        np.save(buffer, results.reshape(source.array_shape).astype(np.float32))
    else:
        pixels = np.clip(results[0], 0.0, 1.0)  # one float copy, scaled and rounded in place
        pixels *= 255.0
        pixels = np.round(pixels, out=pixels).astype(np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
    try:
        workdir_lib.atomic_write_bytes(target, buffer.getvalue())
    except OSError as e:
        raise FileProblem(f"cannot write {target}: {e.strerror or e}") from None
