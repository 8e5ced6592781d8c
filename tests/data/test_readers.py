"""hwnas/data/readers.py: CIFAR python batches, idx folders and image folders, on real formats."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hwnas.data.readers import read_cifar, read_idx_folder, read_image_folder
from hwnas.data.safe_pickle import safe_load
from hwnas.errors import UserError


@pytest.mark.parametrize("style", ["py2", "py3"])
def test_cifar10_layout_and_pixel_order(tmp_path, rng, writers, style):
    folder = writers.write_cifar10(tmp_path, rng, per_batch=4, style=style)
    raw = read_cifar(tmp_path, classes=10)  # the parent of cifar-10-batches-py
    assert raw.train_images.shape == (20, 32, 32, 3) and raw.train_images.dtype == np.uint8
    assert raw.test_images.shape == (10, 32, 32, 3)
    assert raw.class_names[0] == "airplane" and raw.class_names[9] == "truck"
    batch = safe_load(folder / "data_batch_2")
    row = batch[b"data"][1]  # 1024 red, 1024 green, 1024 blue, each row-major 32x32
    y, x = 5, 17
    expected = [row[c * 1024 + y * 32 + x] for c in range(3)]
    np.testing.assert_array_equal(raw.train_images[4 + 1, y, x], expected)
    np.testing.assert_array_equal(raw.train_labels[:4], batch_labels(folder / "data_batch_1"))
    assert sorted(raw.info["files_sha256"]) == sorted(
        [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
    )
    assert read_cifar(folder, classes=10).train_labels.tolist() == raw.train_labels.tolist()


def batch_labels(path):
    return safe_load(path)[b"labels"]


def test_cifar100_uses_fine_labels(tmp_path, rng, writers):
    writers.write_cifar100(tmp_path, rng)
    raw = read_cifar(tmp_path, classes=100)
    assert raw.num_classes == 100 and raw.class_names[42] == "fine42"
    assert raw.train_labels.max() == 99  # fine labels (coarse labels stop at 19)
    assert raw.train_images.shape == (200, 32, 32, 3) and raw.test_labels.shape == (100,)


def test_cifar_malicious_batch_is_refused(tmp_path, rng, writers):
    folder = writers.write_cifar10(tmp_path, rng)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    writers.write_pickle(folder / "data_batch_3", {b"data": Evil(), b"labels": []}, "py3")
    with pytest.raises(UserError, match="data_batch_3: refused to unpickle global"):
        read_cifar(folder, classes=10)
    assert not (tmp_path / "pwned").exists()


def test_cifar_wrong_content_and_missing_files(tmp_path, rng, writers):
    folder = writers.write_cifar10(tmp_path, rng)
    bad = {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}
    writers.write_pickle(folder / "test_batch", bad, "py3")
    with pytest.raises(UserError, match=r"want data \(N, 3072\)"):
        read_cifar(folder, classes=10)
    writers.write_pickle(folder / "test_batch", {b"labels": [0]}, "py3")
    with pytest.raises(UserError, match="no 'data' entry"):
        read_cifar(folder, classes=10)
    with pytest.raises(UserError, match="no CIFAR python files"):
        read_cifar(tmp_path, classes=100)


def test_idx_folder_without_test_files(tmp_path, rng, writers):
    writers.write_idx_set(tmp_path, rng, 30, 0, 3, test=False)
    raw = read_idx_folder(tmp_path, need_test=False)
    assert raw.train_images.shape == (30, 28, 28, 1) and raw.test_images is None
    assert raw.num_classes == 3 and raw.train_labels.dtype == np.int64


def test_idx_folder_count_mismatch(tmp_path, rng, writers):
    writers.write_idx_set(tmp_path, rng, 30, 10, 3)
    writers.write_idx_file(tmp_path / "t10k-labels-idx1-ubyte.gz", np.zeros(9, np.uint8))
    with pytest.raises(UserError, match="10 test images but 9 labels"):
        read_idx_folder(tmp_path)


def test_image_folder_labels_crop_and_resize(tmp_path, rng, writers):
    from PIL import Image

    writers.write_image_folder(tmp_path / "imgs", rng, per_class=4)
    # a 40x20 image, left/right quarters red, centre square blue: the centre crop keeps the blue
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, :10, 0] = wide[:, 30:, 0] = 255
    wide[:, 10:30, 2] = 255
    Image.fromarray(wide).save(tmp_path / "imgs" / "dog" / "wide.png")
    raw = read_image_folder(tmp_path / "imgs", resolution=8, channels=3)
    assert raw.class_names == ("cat", "dog", "emu")
    assert raw.train_labels.tolist() == [0] * 4 + [1] * 5 + [2] * 4
    assert raw.test_images is None and raw.info["files_sha256"]["count"] == 13
    wide_row = [p.name for p in raw.train_images.paths].index("wide.png")
    picked = raw.train_images[np.array([wide_row, 0])]
    assert picked.shape == (2, 8, 8, 3) and picked.dtype == np.uint8
    assert (picked[0, :, :, 2] == 255).all() and (picked[0, :, :, 0] == 0).all()
    grey = read_image_folder(tmp_path / "imgs", resolution=8, channels=1)
    assert grey.train_images[np.array([wide_row])].shape == (1, 8, 8, 1)


def test_image_folder_train_test_layout(tmp_path, rng, writers):
    writers.write_image_folder(tmp_path / "train", rng, per_class=3)
    writers.write_image_folder(tmp_path / "test", rng, per_class=2)
    raw = read_image_folder(tmp_path, resolution=16, channels=3)
    assert len(raw.train_labels) == 9 and raw.test_labels.tolist() == [0, 0, 1, 1, 2, 2]
    (tmp_path / "test" / "fox").mkdir()
    with pytest.raises(UserError, match="has classes"):
        read_image_folder(tmp_path, resolution=16, channels=3)


def test_image_folder_errors(tmp_path, rng, writers):
    (tmp_path / "only").mkdir()
    with pytest.raises(UserError, match="one sub-folder of images per class"):
        read_image_folder(tmp_path, resolution=16, channels=3)
    writers.write_image_folder(tmp_path / "imgs", rng, per_class=2)
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"not a png")
    raw = read_image_folder(tmp_path / "imgs", resolution=16, channels=3)
    with pytest.raises(UserError, match=r"cannot decode image .*broken\.png"):
        raw.train_images[np.arange(len(raw.train_labels))]
