"""hwnas/data/idx.py: the idx format, read from files written from the format description."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from hwnas.data.idx import find_idx_files, parse_idx, read_idx, write_idx
from hwnas.errors import UserError


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte.gz", "train-images.idx3-ubyte"])
def test_read_idx_gzip_and_raw(tmp_path, rng, writers, name):
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    writers.write_idx_file(tmp_path / name, images)
    array, digest = read_idx(tmp_path / name)
    assert array.shape == (5, 28, 28) and array.dtype == np.uint8
    np.testing.assert_array_equal(array, images)
    import hashlib

    assert digest == hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()


def test_read_idx_multibyte_types_are_big_endian(writers):
    values = np.array([[1, -2, 70000], [3, 4, -5]], dtype=np.int32)
    array = parse_idx(writers.idx_bytes(values))
    np.testing.assert_array_equal(array, values)
    floats = np.array([0.5, -1.25, 3e9], dtype=np.float32)
    np.testing.assert_array_equal(parse_idx(writers.idx_bytes(floats)), floats)


def test_write_idx_matches_the_format_and_is_reproducible(tmp_path, rng, writers):
    labels = rng.integers(0, 10, size=100, dtype=np.uint8)
    first = write_idx(tmp_path / "a-labels-idx1-ubyte.gz", labels)
    second = write_idx(tmp_path / "b-labels-idx1-ubyte.gz", labels)
    assert first == second  # gzip with mtime 0 and no name: same bytes
    raw = gzip.decompress((tmp_path / "a-labels-idx1-ubyte.gz").read_bytes())
    assert raw == writers.idx_bytes(labels)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x00\x08", "bad magic"),
        (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "bad magic"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "bad magic"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x07", "3 bytes"),
    ],
)
def test_parse_idx_rejects_broken_files(data, message):
    with pytest.raises(UserError, match=message):
        parse_idx(data, "f.idx")


def test_corrupt_gzip_is_a_user_error(tmp_path):
    (tmp_path / "x-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8b\x08garbage")
    with pytest.raises(UserError, match="corrupt gzip"):
        read_idx(tmp_path / "x-labels-idx1-ubyte.gz")


def test_find_idx_files_roles_and_errors(tmp_path, rng, writers):
    writers.write_idx_set(tmp_path / "kmnist", rng, 10, 5, 10, test=False)
    found = find_idx_files(tmp_path / "kmnist", need_test=False)
    assert sorted(found) == ["train_images", "train_labels"]
    with pytest.raises(UserError, match="lacks idx files for test_images, test_labels"):
        find_idx_files(tmp_path / "kmnist")
    writers.write_idx_set(tmp_path / "emnist", rng, 10, 5, 10, prefix="emnist-digits-")
    writers.write_idx_set(tmp_path / "emnist", rng, 10, 5, 10, prefix="emnist-letters-")
    with pytest.raises(UserError, match="several idx files"):
        find_idx_files(tmp_path / "emnist")
    with pytest.raises(UserError, match="does not exist"):
        find_idx_files(tmp_path / "nowhere")
