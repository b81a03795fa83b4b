"""Reading a user's image files into grey float images, and writing results back (Pillow, numpy).

Two kinds of file, told apart by the suffix:

- Pictures, `.png`, `.jpg`, `.jpeg` (the content must be PNG or JPEG): one image each. Colour
  becomes grey by luminance, Pillow's ITU-R 601-2 luma L = 0.299 R + 0.587 G + 0.114 B;
  transparency is ignored; 8-bit values are divided by 255, 16-bit greyscale PNG by 65535.
  Results are written as 8-bit greyscale PNG. A picture of more pixels than Pillow opens
  (`PIL.Image.MAX_IMAGE_PIXELS`, its guard against decompression bombs) is refused.
- Arrays, `.npy`: one image of shape (H, W) or a stack (N, H, W); uint8 is read as 0..255,
  float as 0..1 (values outside [0, 1] are refused rather than guessed at). Results are written
  as float32 in [0, 1] with the input's shape.

Every problem with a file is a `FileProblem` whose message says what is wrong with it; the
caller reports it and goes on with the next file.
"""

import io
import pathlib
import struct
import warnings
from typing import NamedTuple

import numpy as np
from PIL import Image, UnidentifiedImageError

from autoenc import workdir as workdir_lib

PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIX = ".npy"
SUPPORTED_SUFFIXES = (*PICTURE_SUFFIXES, ARRAY_SUFFIX)
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")  # how Pillow opens 16-bit grey PNG


class FileProblem(Exception):
    """Why one input file cannot be used (a one-line message, without the file name)."""


class Images(NamedTuple):
    """The images of one file, and how the file held them (to write results the same way)."""

    pixels: np.ndarray  # float32 in [0, 1], shape (N, H, W); N = 1 for a picture
    from_array: bool  # a .npy file (else a picture)
    stacked: bool  # a .npy of shape (N, H, W) (else one image)


def is_array_file(path: pathlib.Path) -> bool:
    return path.suffix.lower() == ARRAY_SUFFIX


def read_images(path: pathlib.Path) -> Images:
    """A file's images, as float32 in [0, 1] of shape (N, H, W).

    Raises:
        FileProblem: the file is missing, unreadable, of an unsupported kind, or holds
            something other than grey images in the documented ranges.
    """
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise FileProblem(
            f"unsupported file type {path.suffix or '(no suffix)'!r};"
            f" expected one of {', '.join(SUPPORTED_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileProblem("no such file")
    if is_array_file(path):
        array = _read_array(path)
        return Images(array if array.ndim == 3 else array[np.newaxis], True, array.ndim == 3)
    return Images(_read_picture(path)[np.newaxis], False, False)


def _read_picture(path: pathlib.Path) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            # Pillow only warns up to twice its limit; such an image is refused all the same.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=["PNG", "JPEG"]) as picture:
                picture.load()  # decode now, so a truncated file fails here
                if picture.mode in SIXTEEN_BIT_MODES:
                    pixels, scale = np.array(picture, dtype=np.float32), 65535.0
                else:
                    pixels, scale = np.array(picture.convert("L"), dtype=np.float32), 255.0
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FileProblem(
            f"more than the {Image.MAX_IMAGE_PIXELS:,} pixels Pillow opens"
            " (PIL.Image.MAX_IMAGE_PIXELS); cut it into smaller images"
        ) from None
    except UnidentifiedImageError:
        raise FileProblem("not a PNG or JPEG image") from None
    except (OSError, SyntaxError, ValueError, struct.error) as e:
        raise FileProblem(f"cannot decode the image: {e}") from None
    pixels /= scale  # in place: a large scan's float copy is the biggest array here
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
        images = array.astype(np.float32) / 255.0
    elif np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
            raise FileProblem(
                f"float values must be in [0, 1], found {array.min():g} to {array.max():g}"
                " (for 0..255 use uint8)"
            )
        images = array.astype(np.float32)
    else:
        raise FileProblem(f"dtype {array.dtype}; expected uint8 (0..255) or float (0..1)")
    return images


def output_suffix(path: pathlib.Path) -> str:
    """The suffix of the result for an input file: .npy for an array, else .png."""
    return ARRAY_SUFFIX if is_array_file(path) else ".png"


def write_like(target: pathlib.Path, results: np.ndarray, source: Images) -> None:
    """Writes (N, H, W) results in [0, 1] the way `source` held its images: 8-bit PNG for a
    picture, float32 .npy of the source's shape for an array. Atomic: never half-written.

    Raises:
        FileProblem: the file cannot be written.
    """
    buffer = io.BytesIO()
    if source.from_array:
        np.save(buffer, (results if source.stacked else results[0]).astype(np.float32))
    else:
        pixels = np.clip(results[0], 0.0, 1.0)  # one float copy, scaled and rounded in place
        pixels *= 255.0
        pixels = np.round(pixels, out=pixels).astype(np.uint8)
        Image.fromarray(pixels).save(buffer, format="PNG")
    try:
        workdir_lib.atomic_write_bytes(target, buffer.getvalue())
    except OSError as e:
        raise FileProblem(f"cannot write {target}: {e.strerror or e}") from None
