"""Fashion-MNIST on disk: finding, downloading, reading and validating the four IDX `.gz` files.

This module owns everything between the files and four uint8 numpy arrays. It looks for the
files in an explicit directory, Keras' download cache and the directory Debian's
`dataset-fashion-mnist` package installs; if none holds them it downloads them with Keras' own
downloader into the Keras cache. It reads the IDX format itself (numpy + gzip), checks every
header against the payload and the SHA-256 of the decompressed content, and turns every problem
with the files into a one-line `DataError` that names the file or the places searched.
"""

import gzip
import hashlib
import logging
import math
import os
import shutil
import tempfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from autoenc.errors import DataError

log = logging.getLogger(__name__)

# The origin `keras.datasets.fashion_mnist.load_data` downloads from (Keras 3.15).
ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# SHA-256 of the DECOMPRESSED files. Keras publishes no checksums for Fashion-MNIST, and Debian
# recompressed the .gz files, so only the decompressed IDX bytes are the same for both sources.
SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"
    ),
    "train-labels-idx1-ubyte.gz": (
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"
    ),
    "t10k-images-idx3-ubyte.gz": (
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"
    ),
}

# Where Debian's `dataset-fashion-mnist` package installs the files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

TRAIN_COUNT = 60000
TEST_COUNT = 10000
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10

# IDX magic number -> number of dimensions; only unsigned-byte data (type code 0x08) is valid.
IDX_LABELS_MAGIC = 2049
IDX_IMAGES_MAGIC = 2051
_MAGIC_NDIM = {IDX_LABELS_MAGIC: 1, IDX_IMAGES_MAGIC: 3}

# Decompress into the final array a chunk at a time, so a file never sits in memory twice.
_CHUNK_BYTES = 1 << 20

# Deflate cannot expand data by more than about 1032:1; a header that claims more than this
# much data per compressed byte is corrupt, and believing it would mean a huge allocation.
_MAX_GZIP_RATIO = 1100

_FIXES = (
    "to fix: `apt-get install dataset-fashion-mnist`, or allow the download with an internet "
    "connection so Keras can fetch it, or pass --config.data_dir=DIR where DIR holds "
    + ", ".join(FILES)
)


class FashionMNIST(NamedTuple):
    """The Fashion-MNIST arrays, uint8 as stored (the pipeline converts to float later).

    Attributes:
        x_train: Training images, shape (60000, 28, 28), pixel values 0..255.
        y_train: Training labels, shape (60000,), classes 0..9.
        x_test: Test images, shape (10000, 28, 28).
        y_test: Test labels, shape (10000,).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _one_line(text: object) -> str:
    # The CLI prints a UserError as one line; exception texts we embed may hold newlines.
    return " ".join(str(text).splitlines())


def _file_error(path: Path, reason: str) -> DataError:
    return DataError(_one_line(f"{path}: {reason}"))


def keras_cache_dir() -> Path:
    """Returns the directory Keras caches Fashion-MNIST in.

    Mirrors Keras: `$KERAS_HOME/datasets/fashion-mnist` if `KERAS_HOME` is set, else
    `~/.keras/datasets/fashion-mnist` (`/tmp/.keras/...` if the home directory is not writable).
    Unlike Keras, which reads the environment once at import, this reads it on every call.

    Returns:
        The cache directory; it need not exist.
    """
    keras_home = os.environ.get("KERAS_HOME")
    if keras_home:
        base = Path(keras_home).expanduser()
    else:
        user_home = Path("~").expanduser()
        base = (user_home if os.access(user_home, os.W_OK) else Path("/tmp")) / ".keras"
    return base / "datasets" / "fashion-mnist"


def search_dirs(data_dir: str | None) -> list[Path]:
    """Lists the directories to look for the four files in, in order.

    Args:
        data_dir: A directory the user named, searched first; `None` or empty to skip it.

    Returns:
        `data_dir` (if given), the Keras cache directory, then `DEBIAN_DIR`, without duplicates.
    """
    dirs = [Path(data_dir).expanduser()] if data_dir else []
    dirs += [keras_cache_dir(), DEBIAN_DIR]
    return list(dict.fromkeys(dirs))


def _read_exactly(stream: gzip.GzipFile, out: np.ndarray) -> int:
    """Fills `out` from `stream`; returns how many bytes it got (fewer only at end of stream)."""
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = stream.readinto(view[got : got + _CHUNK_BYTES])
        if not n:
            break
        got += n
    return got


def _read_idx_stream(
    stream: gzip.GzipFile, path: Path, ndim: int | None, sha256: str | None
) -> np.ndarray:
    digest = hashlib.sha256()
    head = stream.read(4)
    if len(head) < 4:
        raise _file_error(path, f"truncated: {len(head)}-byte IDX header")
    digest.update(head)
    magic = int.from_bytes(head, "big", signed=True)
    file_ndim = _MAGIC_NDIM.get(magic)
    if file_ndim is None:
        raise _file_error(
            path,
            f"not an IDX uint8 file: magic number {magic}, expected "
            f"{IDX_LABELS_MAGIC} (labels) or {IDX_IMAGES_MAGIC} (images)",
        )
    if ndim is not None and file_ndim != ndim:
        wanted = IDX_IMAGES_MAGIC if ndim == 3 else IDX_LABELS_MAGIC
        raise _file_error(path, f"IDX magic number {magic}, expected {wanted}")

    dims = stream.read(4 * file_ndim)
    if len(dims) < 4 * file_ndim:
        raise _file_error(path, "truncated: IDX header ends inside the dimensions")
    digest.update(dims)
    shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
    size = math.prod(shape)
    if size > _MAX_GZIP_RATIO * path.stat().st_size:
        raise _file_error(
            path, f"corrupt: header claims shape {shape}, more than the file can hold"
        )

    data = np.empty(size, dtype=np.uint8)
    got = _read_exactly(stream, data)
    if got < size:
        raise _file_error(
            path, f"truncated: header says {size} data bytes for shape {shape}, file has {got}"
        )
    if stream.read(1):
        raise _file_error(path, f"extra bytes after the {size} data bytes the header describes")

    if sha256 is not None:
        digest.update(data)
        if digest.hexdigest() != sha256:
            raise _file_error(
                path,
                f"corrupt: SHA-256 of the decompressed data is {digest.hexdigest()}, "
                f"expected {sha256} (damaged, or not the Fashion-MNIST file)",
            )
    return data.reshape(shape)


def read_idx(path: Path | str, *, ndim: int | None = None, sha256: str | None = None) -> np.ndarray:
    """Reads one gzip-compressed IDX file of unsigned bytes.

    Args:
        path: The `.gz` file.
        ndim: 3 to require an images file (magic 2051), 1 for labels (2049); `None` for either.
        sha256: Expected SHA-256 (hex) of the decompressed file, header included; `None` skips
            the check.

    Returns:
        A writable uint8 array with the shape the header gives.

    Raises:
        DataError: The file is missing, not gzip, truncated, malformed or fails the checksum.
    """
    path = Path(path)
    try:
        with gzip.open(path, "rb") as stream:
            return _read_idx_stream(stream, path, ndim, sha256)
    # BadGzipFile is an OSError; a stream cut short raises EOFError, damaged deflate zlib.error.
    except (OSError, EOFError, zlib.error) as exc:
        raise _file_error(path, f"cannot read: {exc}") from exc


def _check_split(
    images_path: Path,
    images: np.ndarray,
    labels_path: Path,
    labels: np.ndarray,
    count: int | None,
) -> None:
    """Checks one split's images against labels; `count` is the required size, or `None`."""
    if images.shape[1:] != IMAGE_SHAPE:
        raise _file_error(
            images_path, f"images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    n = images.shape[0]
    if count is not None and n != count:
        raise _file_error(images_path, f"{n} images, expected {count}")
    if n < 1:
        raise _file_error(images_path, "holds no images")
    if labels.shape[0] != n:
        raise _file_error(
            labels_path, f"{labels.shape[0]} labels, but {images_path.name} holds {n} images"
        )
    if labels.max() >= NUM_CLASSES:
        raise _file_error(labels_path, f"label {labels.max()} outside 0..{NUM_CLASSES - 1}")


def _missing(directory: Path) -> list[str]:
    return [name for name in FILES if not (directory / name).is_file()]


def _describe_missing(directory: Path, missing: list[str]) -> str:
    if not directory.is_dir():
        return f"{directory} (no such directory)"
    if len(missing) == len(FILES):
        return f"{directory} (no such files)"
    return f"{directory} (missing {', '.join(missing)})"


def _load_dir(directory: Path, verify_checksums: bool) -> FashionMNIST:
    """Reads and validates the four files in `directory` (which must all exist)."""
    paths = [directory / name for name in FILES]
    arrays = [
        read_idx(
            path,
            ndim=3 if "images" in path.name else 1,
            sha256=SHA256[path.name] if verify_checksums else None,
        )
        for path in paths
    ]
    # Only the real files have fixed sizes; tests load small synthetic ones unverified.
    train_count, test_count = (TRAIN_COUNT, TEST_COUNT) if verify_checksums else (None, None)
    _check_split(paths[0], arrays[0], paths[1], arrays[1], train_count)
    _check_split(paths[2], arrays[2], paths[3], arrays[3], test_count)
    return FashionMNIST(*arrays)


def _keras_get_file(name: str, origin: str, directory: Path) -> None:
    """Downloads `origin` to `directory / name` with Keras' downloader."""
    # Imported here because importing Keras loads TensorFlow (seconds); only a download needs it.
    import keras

    # An absolute cache_subdir makes Keras write into `directory` itself, never its own cache.
    keras.utils.get_file(name, origin=origin, cache_dir=str(directory), cache_subdir=str(directory))


def _download(cache_dir: Path, verify_checksums: bool) -> FashionMNIST:
    """Downloads the four files, validates them, then moves them into `cache_dir`.

    They are fetched into a fresh directory next to `cache_dir` (same file system, so
    `os.replace` is atomic) and only moved once all four are valid, so a failed or interrupted
    download never leaves a partial file in the cache.
    """
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".fashion-mnist-download-", dir=cache_dir.parent))
    except OSError as exc:
        raise DataError(_one_line(f"download failed: {exc}")) from exc
    try:
        for name in FILES:
            try:
                _keras_get_file(name, ORIGIN + name, staging)
            # Keras reports HTTP and URL errors as a bare Exception.
            except Exception as exc:
                raise DataError(_one_line(f"download failed: {exc}")) from exc
        try:
            data = _load_dir(staging, verify_checksums)
        except DataError as exc:
            raise DataError(f"download failed: downloaded file invalid: {exc}") from exc
        try:
            cache_dir.mkdir(exist_ok=True)
            for name in FILES:
                os.replace(staging / name, cache_dir / name)
        except OSError as exc:
            raise DataError(_one_line(f"download failed: {exc}")) from exc
        return data
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_fashion_mnist(
    data_dir: str | None = None, download: bool = True, *, verify_checksums: bool = True
) -> FashionMNIST:
    """Loads Fashion-MNIST from the first directory holding all four files, or downloads it.

    The directories are those of `search_dirs(data_dir)`. A directory the user named must hold
    valid files; a cache or system directory with invalid files is skipped with a warning.

    Args:
        data_dir: A directory holding the four files (`FILES`); `None` or empty to search only
            the Keras cache and `DEBIAN_DIR`.
        download: Whether to download the files into the Keras cache if no directory has them.
        verify_checksums: Whether to check the SHA-256 of each file and the real sizes (60000
            and 10000). Off, only the structure is checked and any size of at least one image
            per split is accepted (for small synthetic files in tests).

    Returns:
        The four uint8 arrays.

    Raises:
        DataError: `data_dir` is missing files or holds invalid ones, or no directory has the
            files and they could not be downloaded; the one-line message says what was
            searched, why each place failed and how to fix it.
    """
    dirs = search_dirs(data_dir)
    if data_dir:
        # A directory the user named is what they want: falling back would hide their mistake.
        missing = _missing(dirs[0])
        if missing:
            raise DataError(
                _one_line(
                    f"data_dir has no Fashion-MNIST: {_describe_missing(dirs[0], missing)}; "
                    + _FIXES
                )
            )
        return _load_dir(dirs[0], verify_checksums)

    searched = []
    for directory in dirs:
        missing = _missing(directory)
        if missing:
            searched.append(_describe_missing(directory, missing))
            continue
        try:
            return _load_dir(directory, verify_checksums)
        except DataError as exc:
            log.warning("Skipping Fashion-MNIST in %s: %s", directory, exc)
            searched.append(f"{directory} ({exc})")

    if download:
        try:
            return _download(keras_cache_dir(), verify_checksums)
        except DataError as exc:
            reason = str(exc)
    else:
        reason = "download disabled"
    raise DataError(
        _one_line(f"Fashion-MNIST not found: searched {'; '.join(searched)}; {reason}; {_FIXES}")
    )
