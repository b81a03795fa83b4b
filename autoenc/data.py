"""Fashion-MNIST's four IDX `.gz` files: found in a directory the user named, Keras' cache or
Debian's `dataset-fashion-mnist`, else downloaded; read with numpy + gzip and checked (headers,
payloads, SHA-256), every problem a one-line `DataError` naming the file or the places searched."""

import gzip
import hashlib
import logging
import math
import os
import tempfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np

from autoenc.errors import DataError

ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"  # as Keras 3.15's

FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

# SHA-256 of the DECOMPRESSED files, in FILES' order: Debian recompressed the .gz files.
SHA256 = (
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")  # where dataset-fashion-mnist installs
TRAIN_COUNT = 60000
TEST_COUNT = 10000
NUM_CLASSES = 10

_MAGIC_NDIM = {2049: 1, 2051: 3}  # IDX magic of labels, images -> ndim; unsigned bytes only
_CHUNK_BYTES = 1 << 20  # decompressed a chunk at a time: a file never sits in memory twice
_MAX_GZIP_RATIO = 1100  # deflate expands at most ~1032:1; a header claiming more is corrupt

_FIXES = (
    "to fix: `apt-get install dataset-fashion-mnist`, or allow the download with an internet "
    "connection so Keras can fetch it, or pass --config.data_dir=DIR where DIR holds "
    + ", ".join(FILES)
)


class FashionMNIST(NamedTuple):
    """uint8 as stored: images (count, 28, 28) of 0..255, labels (count,) of classes 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def _error(text: object) -> DataError:
    # The CLI prints a UserError as one line; exception texts we embed may hold newlines.
    return DataError(" ".join(str(text).splitlines()))


def keras_cache_dir() -> Path:
    """Keras' Fashion-MNIST cache, reading `KERAS_HOME` on every call (Keras reads it at import)."""
    if keras_home := os.environ.get("KERAS_HOME"):
        base = Path(keras_home).expanduser()
    else:  # ~/.keras, or /tmp/.keras if the home directory is read-only
        home = Path("~").expanduser()
        base = (home if os.access(home, os.W_OK) else Path("/tmp")) / ".keras"
    return base / "datasets" / "fashion-mnist"


def search_dirs(data_dir: str | None) -> list[Path]:
    """The directories searched, in order, once each: `data_dir` if given, Keras', Debian's."""
    dirs = [Path(data_dir).expanduser()] if data_dir else []
    return list(dict.fromkeys([*dirs, keras_cache_dir(), DEBIAN_DIR]))


def read_idx(path: Path | str, *, ndim: int | None = None, sha256: str | None = None) -> np.ndarray:
    """Reads one gzip-compressed IDX file of unsigned bytes into a writable uint8 array; `ndim` 3
    requires images, 1 labels; `sha256` is that of the decompressed file, header included. Raises
    `DataError` if the file is missing, not gzip, truncated, malformed or fails the checksum."""
    path = Path(path)

    def fail(problem: str) -> DataError:
        return _error(f"{path}: {problem}")

    try:
        with gzip.open(path, "rb") as stream:
            head = stream.read(4)
            if len(head) < 4:
                raise fail(f"truncated: {len(head)}-byte IDX header")
            magic = int.from_bytes(head, "big", signed=True)
            file_ndim = _MAGIC_NDIM.get(magic)
            if file_ndim is None:
                raise fail(
                    f"not an IDX uint8 file: magic number {magic}, expected 2049 (labels) or 2051"
                    " (images)"
                )
            if ndim is not None and file_ndim != ndim:
                raise fail(f"IDX magic number {magic}, expected {2051 if ndim == 3 else 2049}")
            dims = stream.read(4 * file_ndim)
            if len(dims) < 4 * file_ndim:
                raise fail("truncated: IDX header ends inside the dimensions")
            shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">u4"))
            size = math.prod(shape)
            if size > _MAX_GZIP_RATIO * path.stat().st_size:
                raise fail(f"corrupt: header claims shape {shape}, more than the file can hold")

            data = np.empty(size, dtype=np.uint8)
            view = memoryview(data).cast("B")
            got = 0
            while got < size:
                count = stream.readinto(view[got : got + _CHUNK_BYTES])
                if not count:
                    raise fail(
                        f"truncated: header says {size} data bytes for shape {shape},"
                        f" file has {got}"
                    )
                got += count
            if stream.read(1):
                raise fail(f"extra bytes after the {size} data bytes the header describes")
    # BadGzipFile is an OSError; a stream cut short raises EOFError, damaged deflate zlib.error.
    except (OSError, EOFError, zlib.error) as exc:
        raise fail(f"cannot read: {exc}") from exc

    if sha256 is not None:
        digest = hashlib.sha256(head + dims)
        digest.update(data)
        if digest.hexdigest() != sha256:
            raise fail(
                f"corrupt: SHA-256 of the decompressed data is {digest.hexdigest()}, expected"
                f" {sha256} (damaged, or not the Fashion-MNIST file)"
            )
    return data.reshape(shape)


def _missing(directory: Path) -> str | None:
    """Why `directory` lacks the four files, or None if it holds them all."""
    missing = [name for name in FILES if not (directory / name).is_file()]
    if not missing:
        return None
    if not directory.is_dir():
        return f"{directory} (no such directory)"
    if len(missing) == len(FILES):
        return f"{directory} (no such files)"
    return f"{directory} (missing {', '.join(missing)})"


def _load_dir(directory: Path, verify_checksums: bool) -> FashionMNIST:
    """Reads the four files in `directory` (which must all exist), then checks each split. Only
    the real files have known hashes and sizes; tests load small synthetic ones unverified."""
    hashes = SHA256 if verify_checksums else (None,) * len(FILES)
    counts = (TRAIN_COUNT, TEST_COUNT) if verify_checksums else (None, None)
    paths = [directory / name for name in FILES]
    arrays = [
        read_idx(path, ndim=3 if "images" in path.name else 1, sha256=sha)
        for path, sha in zip(paths, hashes, strict=True)
    ]
    for split, count in enumerate(counts):
        images_path, labels_path = paths[2 * split : 2 * split + 2]
        images, labels = arrays[2 * split : 2 * split + 2]
        if images.shape[1:] != (28, 28):
            raise _error(
                f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
            )
        n = images.shape[0]
        if count is not None and n != count:
            raise _error(f"{images_path}: {n} images, expected {count}")
        if n < 1:
            raise _error(f"{images_path}: holds no images")
        if labels.shape[0] != n:
            raise _error(
                f"{labels_path}: {labels.shape[0]} labels, but {images_path.name} holds {n} images"
            )
        if labels.max() >= NUM_CLASSES:
            raise _error(f"{labels_path}: label {labels.max()} outside 0..{NUM_CLASSES - 1}")
    return FashionMNIST(*arrays)


def _keras_get_file(name: str, origin: str, directory: Path) -> None:
    """Downloads `origin` to `directory / name` with Keras' downloader, imported here because
    importing Keras loads TensorFlow (seconds). An absolute cache_subdir makes Keras write into
    `directory` itself, never its own cache."""
    import keras

    keras.utils.get_file(name, origin=origin, cache_dir=str(directory), cache_subdir=str(directory))


def _download(cache_dir: Path, verify_checksums: bool) -> FashionMNIST:
    """Downloads the four files into a fresh directory next to `cache_dir` (so `os.replace` is
    atomic) and moves them in once all are valid: a failed download leaves no partial file."""
    try:
        cache_dir.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix=".fashion-mnist-download-", dir=cache_dir.parent, ignore_cleanup_errors=True
        ) as staging_name:
            staging = Path(staging_name)
            try:
                for name in FILES:
                    _keras_get_file(name, ORIGIN + name, staging)
            except Exception as exc:  # Keras reports HTTP and URL errors as a bare Exception.
                raise _error(f"download failed: {exc}") from exc
            try:
                data = _load_dir(staging, verify_checksums)
            except DataError as exc:
                raise DataError(f"download failed: downloaded file invalid: {exc}") from exc
            cache_dir.mkdir(exist_ok=True)
            for name in FILES:
                os.replace(staging / name, cache_dir / name)
            return data
    except OSError as exc:  # creating the directories or moving the files
        raise _error(f"download failed: {exc}") from exc


def load_fashion_mnist(
    data_dir: str | None = None, download: bool = True, *, verify_checksums: bool = True
) -> FashionMNIST:
    """Loads Fashion-MNIST from the first of `search_dirs(data_dir)` holding all four files, else
    downloads it into Keras' cache if `download`. A directory the user named must hold valid files
    (falling back would hide their mistake); a cache or system directory with invalid ones is
    skipped with a warning. `verify_checksums` checks each SHA-256 and the real sizes; off, any
    split of at least one image passes (small synthetic files in tests). Raises a one-line
    `DataError` saying what was searched, why each place failed and how to fix it."""
    dirs = search_dirs(data_dir)
    if data_dir:
        if missing := _missing(dirs[0]):
            raise _error(f"data_dir has no Fashion-MNIST: {missing}; {_FIXES}")
        return _load_dir(dirs[0], verify_checksums)

    searched = []
    for directory in dirs:
        if missing := _missing(directory):
            searched.append(missing)
            continue
        try:
            return _load_dir(directory, verify_checksums)
        except DataError as exc:
            logging.getLogger(__name__).warning("Skipping Fashion-MNIST in %s: %s", directory, exc)
            searched.append(f"{directory} ({exc})")

    reason = "download disabled"
    if download:
        try:
            return _download(keras_cache_dir(), verify_checksums)
        except DataError as exc:
            reason = str(exc)
    raise _error(f"Fashion-MNIST not found: searched {'; '.join(searched)}; {reason}; {_FIXES}")
