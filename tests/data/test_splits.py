"""hwnas/data/splits.py: deterministic stratified splits, geometry, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.data.config import DataConfig, RawData
from hwnas.data.splits import build_splits, fit_geometry, split_indices, stratified_order
from hwnas.errors import UserError

# 1,000 labels in 5 unbalanced classes of 100, 150, 200, 250 and 300 images.
LABELS = np.repeat(np.arange(5), [100, 150, 200, 250, 300])


def test_stratified_order_every_prefix_keeps_proportions():
    order = stratified_order(LABELS, np.random.default_rng(0))
    assert sorted(order.tolist()) == list(range(len(LABELS)))
    share = np.bincount(LABELS) / len(LABELS)
    for k in (10, 37, 100, 333, 999):
        counts = np.bincount(LABELS[order[:k]], minlength=5)
        assert np.abs(counts - k * share).max() <= 1.0 + 1e-9, (k, counts)


def test_split_indices_deterministic_disjoint_and_sized():
    test_labels = np.arange(300) % 5
    config = DataConfig(seed=3, val_fraction=0.2)
    train, val, test, carved = split_indices(LABELS, test_labels, config)
    again = split_indices(LABELS, test_labels, config)
    for a, b in zip((train, val, test), again[:3]):
        np.testing.assert_array_equal(a, b)
    assert not carved and len(test) == 300 and len(val) == 200 and len(train) == 800
    assert not set(train) & set(val)
    other = split_indices(LABELS, test_labels, DataConfig(seed=4, val_fraction=0.2))
    assert set(other[1]) != set(val)
    np.testing.assert_array_equal(other[2], test)  # the official test split does not move


def test_limits_and_carved_test():
    config = DataConfig(seed=0, train_limit=100, val_fraction=0.1, test_limit=50)
    train, val, test, carved = split_indices(LABELS, np.arange(300) % 5, config)
    assert (len(train), len(val), len(test)) == (90, 10, 50)
    assert np.bincount((np.arange(300) % 5)[test]).tolist() == [10] * 5
    train, val, test, carved = split_indices(LABELS, None, DataConfig(seed=0, test_fraction=0.25))
    assert carved and len(test) == 250 and len(val) == 75 and len(train) == 675
    assert len(set(train) | set(val) | set(test)) == len(LABELS)
    assert np.abs(np.bincount(LABELS[test]) - [25, 37.5, 50, 62.5, 75]).max() <= 1


def test_no_training_images_left_is_a_user_error():
    with pytest.raises(UserError, match="no training images left"):
        split_indices(LABELS, None, DataConfig(train_limit=1, val_fraction=0.9))


def test_fit_geometry_pads_28_to_32_with_two_pixels():
    images = np.full((2, 28, 28, 1), 7, np.uint8)
    images[0, 0, 0, 0] = 200
    out, note = fit_geometry(images, 32)
    assert out.shape == (2, 32, 32, 1) and out[0, 2, 2, 0] == 200
    assert out[:, :2].sum() == 0 and out[:, 30:].sum() == 0 and out[:, :, :2].sum() == 0
    assert (out[:, 2:30, 2:30] > 0).all()
    assert "zero-pad (2 px top, 2 px left)" in note


def test_fit_geometry_upsamples_8_by_4_nearest():
    images = np.arange(64, dtype=np.uint8).reshape(1, 8, 8, 1)
    out, note = fit_geometry(images, 32)
    np.testing.assert_array_equal(out[0, ::4, ::4, 0], images[0, :, :, 0])
    np.testing.assert_array_equal(out[0, 3::4, 3::4, 0], images[0, :, :, 0])
    assert "nearest x4" in note and "pad" not in note
    out, note = fit_geometry(images, 28)  # x3 = 24, then 2 px of padding each side
    assert out[0, 2, 2, 0] == 0 and out[0, 25, 25, 0] == 63 and out[0, 26, 26, 0] == 0


def test_fit_geometry_shrinks_large_images():
    images = np.full((1, 64, 64, 3), 90, np.uint8)
    out, note = fit_geometry(images, 32)
    assert out.shape == (1, 32, 32, 3) and (out == 90).all() and "bilinear" in note


def _raw(images, labels, pixel_max=255.0):
    return RawData(images, labels, None, None, tuple("abcde"), pixel_max, {"source": "test"})


def test_build_splits_normalises_with_train_statistics(rng):
    images = rng.integers(0, 256, size=(200, 10, 10, 3), dtype=np.uint8)
    labels = np.arange(200) % 5
    splits = build_splits(_raw(images, labels), DataConfig(resolution=10, seed=1))
    x = splits.train.tensors[0]
    assert x.dtype.is_floating_point and tuple(x.shape[1:]) == (3, 10, 10)
    np.testing.assert_allclose(x.mean(dim=(0, 2, 3)).numpy(), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(dim=(0, 2, 3), unbiased=False).numpy(), 1, atol=1e-4)
    mean = splits.info["normalisation"]["mean"]
    std = splits.info["normalisation"]["std"]
    raw_test = images[splits_test_rows(labels, DataConfig(resolution=10, seed=1))] / 255.0
    expected = (raw_test.transpose(0, 3, 1, 2) - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(
        std, (1, 3, 1, 1)
    )
    np.testing.assert_allclose(splits.test.tensors[0].numpy(), expected, atol=1e-5)


def splits_test_rows(labels, config):
    return split_indices(labels, None, config)[2]


def test_build_splits_channel_conversions(rng):
    grey = rng.integers(0, 17, size=(50, 8, 8, 1), dtype=np.uint8)
    splits = build_splits(_raw(grey, np.arange(50) % 5, 16.0), DataConfig(resolution=16))
    x = splits.train.tensors[0]
    assert tuple(x.shape[1:]) == (3, 16, 16) and x.stride(1) == 0  # a view, no copy
    assert splits.input_shape == (3, 16, 16) and len(splits.info["normalisation"]["mean"]) == 3
    rgb = np.zeros((50, 4, 4, 3), np.uint8)
    rgb[..., 1] = np.arange(50, dtype=np.uint8)[:, None, None] * 5
    config = DataConfig(resolution=4, channels=1)
    splits = build_splits(_raw(rgb, np.arange(50) % 5), config)
    train = splits.train.tensors[0]
    assert tuple(train.shape[1:]) == (1, 4, 4)
    rows = split_indices(np.arange(50) % 5, None, config)[0]
    luma = 0.587 * rgb[rows, 0, 0, 1] / 255.0  # ITU-R 601: only green is non-zero here
    norm = splits.info["normalisation"]
    expected = (luma - norm["mean"][0]) / norm["std"][0]
    np.testing.assert_allclose(train[:, 0, 0, 0].numpy(), expected, atol=1e-5)
