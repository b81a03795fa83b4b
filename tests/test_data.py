"""Tests for autoenc.data: IDX reading and validation, search order, download, error messages."""

import gzip
import hashlib
import logging
import struct
from pathlib import Path

import numpy as np
import pytest

from autoenc import data
from autoenc.errors import DataError

TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS = data.FILES

# Saved before any test monkeypatches them.
REAL_DEBIAN_DIR = data.DEBIAN_DIR
REAL_KERAS_GET_FILE = data._keras_get_file


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The uncompressed IDX encoding of a uint8 array (magic 0x800 + ndim unless given)."""
    array = np.asarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x800 + array.ndim
    header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def make_arrays(n_train: int = 6, n_test: int = 4, seed: int = 0) -> data.FashionMNIST:
    rng = np.random.default_rng(seed)
    return data.FashionMNIST(
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=(np.arange(n_train) % 10).astype(np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=(np.arange(n_test)[::-1] % 10).astype(np.uint8),
    )


def dataset_files(arrays: data.FashionMNIST) -> dict[str, bytes]:
    """The four .gz files' contents, by file name."""
    pairs = zip(data.FILES, arrays, strict=True)
    return {name: gzip.compress(idx_bytes(array)) for name, array in pairs}


def write_dataset(directory: Path, n_train: int = 6, n_test: int = 4) -> data.FashionMNIST:
    """Writes four small valid files into `directory`; returns the arrays they hold."""
    arrays = make_arrays(n_train, n_test, seed=n_train)
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in dataset_files(arrays).items():
        (directory / name).write_bytes(content)
    return arrays


def assert_same(loaded: data.FashionMNIST, expected: data.FashionMNIST) -> None:
    for got, want in zip(loaded, expected, strict=True):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


def assert_one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "\r" not in message
    return message


@pytest.fixture(autouse=True)
def places(tmp_path, monkeypatch):
    """Points the Keras cache and the Debian dir into tmp_path; forbids real downloads."""
    keras_home = tmp_path / "keras_home"
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "debian")

    def no_network(name, origin, directory):
        raise AssertionError(f"unexpected download of {origin}")

    monkeypatch.setattr(data, "_keras_get_file", no_network)
    return {
        "cache": keras_home / "datasets" / "fashion-mnist",
        "debian": tmp_path / "debian",
        "user": tmp_path / "user",
    }


# Reading and validation.


def test_loads_synthetic_files(places):
    expected = write_dataset(places["user"], n_train=7, n_test=3)
    loaded = data.load_fashion_mnist(str(places["user"]), download=False, verify_checksums=False)
    assert isinstance(loaded, data.FashionMNIST)
    assert loaded.x_train.shape == (7, 28, 28) and loaded.y_test.shape == (3,)
    assert_same(loaded, expected)
    # Read into fresh arrays rather than wrapping a bytes buffer, so callers may modify them.
    assert all(array.flags.writeable for array in loaded)


def test_read_idx_checks_sha256_of_decompressed_content(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    raw = idx_bytes(array)
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(raw))
    good = hashlib.sha256(raw).hexdigest()
    np.testing.assert_array_equal(data.read_idx(path, ndim=1, sha256=good), array)
    with pytest.raises(DataError, match="corrupt") as error:
        data.read_idx(path, sha256="0" * 64)
    assert str(path) in assert_one_line(error)


def test_checksum_mismatch_is_an_error_when_verifying(places):
    write_dataset(places["user"])
    with pytest.raises(DataError, match="SHA-256") as error:
        data.load_fashion_mnist(str(places["user"]), download=False)
    assert str(places["user"] / TRAIN_IMAGES) in assert_one_line(error)


def _rewrite(name: str, content: bytes):
    return lambda directory: (directory / name).write_bytes(content)


def _rewrite_idx(name: str, array, magic: int | None = None, trailing: bytes = b""):
    return _rewrite(name, gzip.compress(idx_bytes(array, magic) + trailing))


def _truncate_gzip(name: str):
    def corrupt(directory):
        content = (directory / name).read_bytes()
        (directory / name).write_bytes(content[: len(content) // 2])

    return corrupt


IMAGES_6 = np.zeros((6, 28, 28), dtype=np.uint8)

CORRUPTIONS = {
    # name: (corrupt the directory, file the message must name, text it must contain)
    "truncated-gzip": (_truncate_gzip(TRAIN_IMAGES), TRAIN_IMAGES, "cannot read"),
    "garbage": (_rewrite(TEST_LABELS, b"this is not gzip" * 8), TEST_LABELS, "cannot read"),
    "empty-stream": (_rewrite(TEST_IMAGES, gzip.compress(b"")), TEST_IMAGES, "truncated"),
    "cut-in-header": (
        _rewrite(TEST_IMAGES, gzip.compress(struct.pack(">ii", 2051, 4))),
        TEST_IMAGES,
        "truncated",
    ),
    "labels-magic-in-images": (
        _rewrite_idx(TRAIN_IMAGES, np.zeros(6, dtype=np.uint8)),
        TRAIN_IMAGES,
        "magic number 2049, expected 2051",
    ),
    "unknown-magic": (
        _rewrite_idx(TRAIN_LABELS, np.zeros(6, dtype=np.uint8), magic=0x0D01),
        TRAIN_LABELS,
        "not an IDX uint8 file",
    ),
    "wrong-dims": (
        _rewrite_idx(TRAIN_IMAGES, np.zeros((6, 27, 28), dtype=np.uint8)),
        TRAIN_IMAGES,
        "27x28",
    ),
    "label-count-mismatch": (
        _rewrite_idx(TRAIN_LABELS, np.zeros(5, dtype=np.uint8)),
        TRAIN_LABELS,
        "5 labels",
    ),
    "no-images": (
        _rewrite_idx(TEST_IMAGES, np.zeros((0, 28, 28), dtype=np.uint8)),
        TEST_IMAGES,
        "no images",
    ),
    "label-out-of-range": (
        _rewrite_idx(TEST_LABELS, np.array([0, 1, 10, 2], dtype=np.uint8)),
        TEST_LABELS,
        "label 10",
    ),
    "extra-trailing-bytes": (
        _rewrite_idx(TRAIN_IMAGES, IMAGES_6, trailing=b"\0"),
        TRAIN_IMAGES,
        "extra bytes",
    ),
    "short-payload": (
        _rewrite(TRAIN_IMAGES, gzip.compress(idx_bytes(IMAGES_6)[:-1])),
        TRAIN_IMAGES,
        "truncated",
    ),
    "header-claims-huge-count": (
        _rewrite(
            TRAIN_IMAGES, gzip.compress(struct.pack(">iIII", 2051, 2**31, 28, 28) + bytes(784))
        ),
        TRAIN_IMAGES,
        "more than the file can hold",
    ),
}


@pytest.mark.parametrize("case", CORRUPTIONS, ids=list(CORRUPTIONS))
def test_invalid_file_is_an_error_naming_it(places, case):
    corrupt, bad_file, text = CORRUPTIONS[case]
    write_dataset(places["user"])
    corrupt(places["user"])
    with pytest.raises(DataError) as error:
        data.load_fashion_mnist(str(places["user"]), download=False, verify_checksums=False)
    message = assert_one_line(error)
    assert str(places["user"] / bad_file) in message
    assert text in message


# Where the files are looked for.


def test_search_dirs_order(places, tmp_path):
    assert data.search_dirs(str(places["user"])) == [
        places["user"],
        places["cache"],
        places["debian"],
    ]
    assert data.search_dirs(None) == [places["cache"], places["debian"]]
    assert data.search_dirs("") == [places["cache"], places["debian"]]


def test_search_dirs_without_keras_home_uses_home_dot_keras(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert data.search_dirs(None)[0] == tmp_path / ".keras" / "datasets" / "fashion-mnist"
    assert data.search_dirs("~/fm")[0] == tmp_path / "fm"


def test_first_complete_directory_wins(places):
    # Different sizes tell which directory the data came from.
    write_dataset(places["user"], n_train=3)
    write_dataset(places["cache"], n_train=4)
    write_dataset(places["debian"], n_train=5)

    def train_count(data_dir=None):
        loaded = data.load_fashion_mnist(data_dir, download=False, verify_checksums=False)
        return len(loaded.x_train)

    assert train_count(str(places["user"])) == 3
    assert train_count() == 4
    (places["cache"] / TEST_LABELS).unlink()  # an incomplete directory is passed over
    assert train_count() == 5


def test_invalid_cache_is_skipped_with_a_warning(places, caplog):
    write_dataset(places["cache"])
    _truncate_gzip(TRAIN_IMAGES)(places["cache"])
    expected = write_dataset(places["debian"], n_train=5)
    with caplog.at_level(logging.WARNING, logger="autoenc.data"):
        loaded = data.load_fashion_mnist(download=False, verify_checksums=False)
    assert_same(loaded, expected)
    assert str(places["cache"]) in caplog.text


def test_explicit_data_dir_missing_files_does_not_fall_back(places):
    write_dataset(places["cache"])
    write_dataset(places["user"])
    (places["user"] / TRAIN_LABELS).unlink()
    with pytest.raises(DataError) as error:
        data.load_fashion_mnist(str(places["user"]), verify_checksums=False)
    message = assert_one_line(error)
    assert str(places["user"]) in message and TRAIN_LABELS in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_explicit_data_dir_that_does_not_exist(places):
    missing = places["user"] / "nope"
    with pytest.raises(DataError, match="no such directory") as error:
        data.load_fashion_mnist(str(missing), verify_checksums=False)
    assert str(missing) in assert_one_line(error)


def test_nothing_found_and_download_disabled_lists_places_and_fixes(places):
    places["cache"].mkdir(parents=True)
    (places["cache"] / TRAIN_IMAGES).write_bytes(b"")
    with pytest.raises(DataError) as error:
        data.load_fashion_mnist(download=False)
    message = assert_one_line(error)
    assert str(places["cache"]) in message and str(places["debian"]) in message
    assert "missing" in message and "no such directory" in message
    assert "download disabled" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "internet" in message and "--config.data_dir=DIR" in message


# Downloading.


def fake_get_file(files: dict[str, bytes], fail_at: str | None = None, error=None):
    """A stand-in for `_keras_get_file` that writes `files`, failing half-way at `fail_at`."""
    calls = []

    def get_file(name, origin, directory):
        calls.append((name, origin, directory))
        content = files[name]
        if name == fail_at:
            (directory / name).write_bytes(content[: len(content) // 2])
            raise error
        (directory / name).write_bytes(content)

    return get_file, calls


def leftovers(places) -> list[str]:
    """Everything in the cache's parent except a cache dir holding no files."""
    parent = places["cache"].parent
    entries = sorted(p.name for p in parent.iterdir()) if parent.exists() else []
    if places["cache"].is_dir() and not any(places["cache"].iterdir()):
        entries.remove(places["cache"].name)
    return entries


def test_download_lands_in_keras_cache(places, monkeypatch):
    expected = make_arrays()
    get_file, calls = fake_get_file(dataset_files(expected))
    monkeypatch.setattr(data, "_keras_get_file", get_file)
    assert_same(data.load_fashion_mnist(verify_checksums=False), expected)

    assert [origin for _, origin, _ in calls] == [data.ORIGIN + name for name in data.FILES]
    # Fetched into a staging dir next to the cache, not into the cache itself...
    assert {directory.parent for _, _, directory in calls} == {places["cache"].parent}
    # ...which is gone, leaving exactly the four files in the cache.
    assert leftovers(places) == ["fashion-mnist"]
    assert sorted(p.name for p in places["cache"].iterdir()) == sorted(data.FILES)

    monkeypatch.setattr(data, "_keras_get_file", fake_get_file({})[0])
    assert_same(data.load_fashion_mnist(download=False, verify_checksums=False), expected)


def test_download_replaces_corrupt_cache(places, monkeypatch):
    write_dataset(places["cache"])
    _truncate_gzip(TRAIN_IMAGES)(places["cache"])
    expected = make_arrays(n_train=8)
    files = dataset_files(expected)
    monkeypatch.setattr(data, "_keras_get_file", fake_get_file(files)[0])
    assert_same(data.load_fashion_mnist(verify_checksums=False), expected)
    assert (places["cache"] / TRAIN_IMAGES).read_bytes() == files[TRAIN_IMAGES]


def test_failed_download_leaves_nothing_in_cache(places, monkeypatch):
    get_file, calls = fake_get_file(
        dataset_files(make_arrays()), fail_at=TEST_IMAGES, error=Exception("connection reset")
    )
    monkeypatch.setattr(data, "_keras_get_file", get_file)
    with pytest.raises(DataError) as error:
        data.load_fashion_mnist(verify_checksums=False)
    message = assert_one_line(error)
    assert "download failed: connection reset" in message
    assert str(places["cache"]) in message and "apt-get install" in message
    assert len(calls) == 3
    assert leftovers(places) == []


def test_interrupted_download_leaves_nothing_in_cache(places, monkeypatch):
    get_file, _ = fake_get_file(
        dataset_files(make_arrays()), fail_at=TRAIN_LABELS, error=KeyboardInterrupt()
    )
    monkeypatch.setattr(data, "_keras_get_file", get_file)
    with pytest.raises(KeyboardInterrupt):
        data.load_fashion_mnist(verify_checksums=False)
    assert leftovers(places) == []


def test_invalid_download_is_not_moved_into_cache(places, monkeypatch):
    files = dataset_files(make_arrays())
    files[TEST_LABELS] = b"<html>not found</html>"
    monkeypatch.setattr(data, "_keras_get_file", fake_get_file(files)[0])
    with pytest.raises(DataError) as error:
        data.load_fashion_mnist(verify_checksums=False)
    message = assert_one_line(error)
    assert "downloaded file invalid" in message and TEST_LABELS in message
    assert leftovers(places) == []


def test_download_with_the_real_keras_downloader(places, monkeypatch, tmp_path):
    # Keras fixes its home directory when first imported: import it with the real environment.
    monkeypatch.delenv("KERAS_HOME")
    pytest.importorskip("keras")
    monkeypatch.setenv("KERAS_HOME", str(places["cache"].parent.parent))

    expected = write_dataset(tmp_path / "server")
    monkeypatch.setattr(data, "ORIGIN", (tmp_path / "server").as_uri() + "/")
    monkeypatch.setattr(data, "_keras_get_file", REAL_KERAS_GET_FILE)
    assert_same(data.load_fashion_mnist(verify_checksums=False), expected)
    assert leftovers(places) == ["fashion-mnist"]
    assert sorted(p.name for p in places["cache"].iterdir()) == sorted(data.FILES)


# The real data set.


@pytest.mark.skipif(
    not all((REAL_DEBIAN_DIR / name).is_file() for name in data.FILES),
    reason=f"Fashion-MNIST not installed in {REAL_DEBIAN_DIR}",
)
def test_real_fashion_mnist():
    loaded = data.load_fashion_mnist(str(REAL_DEBIAN_DIR), download=False)
    assert loaded.x_train.shape == (60000, 28, 28) and loaded.y_train.shape == (60000,)
    assert loaded.x_test.shape == (10000, 28, 28) and loaded.y_test.shape == (10000,)
    assert all(array.dtype == np.uint8 for array in loaded)
    assert loaded.x_train.min() == 0 and loaded.x_train.max() == 255
    assert loaded.x_test.min() == 0 and loaded.x_test.max() == 255
    np.testing.assert_array_equal(np.bincount(loaded.y_train, minlength=10), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(loaded.y_test, minlength=10), [1000] * 10)
