"""Deterministic splits, geometry and normalisation: :class:`RawData` -> :class:`DataSplits`.

Split rule (all randomness from ``numpy.random.default_rng(config.seed)``):

1. The official train labels are put in a *stratified random order*: a random permutation,
   re-sorted so that every prefix holds each class in (nearly) its overall proportion.
2. Without an official test split, the first ``round(test_fraction * N)`` (at most
   ``test_limit``) of that order are the test split; the rest go on.
3. The next ``train_limit`` images (all if ``None``) are the pool; its first
   ``round(val_fraction * pool)`` are val, the remainder train.
4. With an official test split: all of it, or a stratified draw of ``test_limit`` images.

Geometry (in uint8, before normalising): a source smaller than ``resolution`` is upsampled by
the largest whole factor ``k = resolution // max(H, W)`` (nearest neighbour; k = 1 for 28 -> 32,
k = 4 for 8 -> 32), then centre zero-padded (28 -> 32: 2 px each side). A larger source is resized
down with Pillow (bilinear, antialiased). Zero padding equals the MNIST-style black background.

Normalisation: pixels / ``pixel_max`` into [0, 1], then per channel ``(x - mean) / std`` with
the mean and std of the train split (padding included); both are recorded in ``info``.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import numpy as np

from hwnas.data.config import DataConfig, DataSplits, RawData
from hwnas.errors import UserError

log = logging.getLogger(__name__)

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def stratified_order(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``range(len(labels))`` whose every prefix is class-stratified.

    Args:
        labels: (N,) integer labels.
        rng: the random generator (consumed: two draws).

    Returns:
        (N,) int64 indices.
    """
    perm = rng.permutation(len(labels))
    permuted = labels[perm]
    position = np.empty(len(labels), dtype=np.float64)
    for label in np.unique(permuted):
        members = np.flatnonzero(permuted == label)
        position[members] = (np.arange(len(members)) + 0.5) / len(members)
    order = np.lexsort((rng.random(len(labels)), position))
    return perm[order].astype(np.int64)


def split_indices(
    train_labels: np.ndarray, test_labels: Optional[np.ndarray], config: DataConfig
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Indices of the train, val and test splits (see the module docstring for the rule).

    Returns:
        ``(train, val, test, test_from_train)``: sorted int64 index arrays; ``test`` indexes
        the official test split, or the train split when ``test_from_train``.
    """
    rng = np.random.default_rng(config.seed)
    order = stratified_order(train_labels, rng)
    if test_labels is None:
        n_test = max(1, round(config.test_fraction * len(order)))
        n_test = min(n_test, config.test_limit or n_test)
        test, order = order[:n_test], order[n_test:]
    elif config.test_limit is not None and config.test_limit < len(test_labels):
        test = stratified_order(test_labels, rng)[: config.test_limit]
    else:
        test = np.arange(len(test_labels), dtype=np.int64)
    pool = order[: config.train_limit] if config.train_limit is not None else order
    n_val = round(config.val_fraction * len(pool))
    val, train = pool[:n_val], pool[n_val:]
    if len(train) == 0:
        raise UserError(f"no training images left: {len(pool)} used, {n_val} held out for val")
    return np.sort(train), np.sort(val), np.sort(test), test_labels is None


def fit_geometry(images: np.ndarray, resolution: int) -> Tuple[np.ndarray, str]:
    """Bring (N, H, W, C) uint8 images to (N, resolution, resolution, C) uint8.

    Returns:
        The images and a one-line description of what was done.
    """
    n, height, width, channels = images.shape
    if height == width == resolution:
        return images, f"{height}x{width} kept"
    if height <= resolution and width <= resolution:
        k = resolution // max(height, width)
        if k > 1:
            images = images.repeat(k, axis=1).repeat(k, axis=2)
        top, left = (resolution - k * height) // 2, (resolution - k * width) // 2
        out = np.zeros((n, resolution, resolution, channels), dtype=images.dtype)
        out[:, top : top + k * height, left : left + k * width] = images
        steps = [f"nearest x{k} upsample"] if k > 1 else []
        if k * height < resolution or k * width < resolution:
            steps.append(f"centre zero-pad ({top} px top, {left} px left)")
        return out, f"{height}x{width} -> {', '.join(steps)} to {resolution}x{resolution}"
    from PIL import Image

    out = np.empty((n, resolution, resolution, channels), dtype=np.uint8)
    for i in range(n):
        image = Image.fromarray(images[i, :, :, 0] if channels == 1 else images[i])
        resized = np.asarray(image.resize((resolution, resolution), Image.BILINEAR))
        out[i] = resized.reshape(resolution, resolution, channels)
    return out, f"{height}x{width} -> bilinear resize to {resolution}x{resolution}"


def _to_float_chw(images: np.ndarray, pixel_max: float, channels: int) -> np.ndarray:
    """(N, H, W, C) uint8 -> (N, C', H, W) float32 in [0, 1]; RGB -> grey when ``channels == 1``."""
    x = images.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(pixel_max)
    if channels == 1 and x.shape[1] == 3:
        x = np.tensordot(x, _LUMA, axes=([1], [0]))[:, None]
    return np.ascontiguousarray(x)


def _tensor_dataset(x: np.ndarray, labels: np.ndarray, channels: int) -> Any:
    import torch
    from torch.utils.data import TensorDataset

    images = torch.from_numpy(x)
    if images.shape[1] == 1 and channels == 3:
        images = images.expand(-1, 3, -1, -1)
    return TensorDataset(images, torch.from_numpy(labels.astype(np.int64)))


def _prepare(images: Any, index: np.ndarray, raw: RawData, config: DataConfig) -> np.ndarray:
    picked = images[index]
    if picked.ndim != 4 or picked.dtype != np.uint8:
        raise ValueError(f"reader returned {picked.dtype} {picked.shape}, want uint8 (N,H,W,C)")
    fitted, _ = fit_geometry(picked, config.resolution)
    return _to_float_chw(fitted, raw.pixel_max, config.channels)


def build_splits(raw: RawData, config: DataConfig) -> DataSplits:
    """Split, reshape and normalise ``raw`` as ``config`` says.

    Returns:
        The :class:`DataSplits`, with ``info`` = ``raw.info`` plus counts, split rule and
        preprocessing.
    """
    train_idx, val_idx, test_idx, test_from_train = split_indices(
        raw.train_labels, raw.test_labels, config
    )
    if test_from_train:
        test_images, test_labels = raw.train_images, raw.train_labels
    else:
        test_images, test_labels = raw.test_images, raw.test_labels
    parts = {
        "train": (_prepare(raw.train_images, train_idx, raw, config), raw.train_labels[train_idx]),
        "val": (_prepare(raw.train_images, val_idx, raw, config), raw.train_labels[val_idx]),
        "test": (_prepare(test_images, test_idx, raw, config), test_labels[test_idx]),
    }
    x_train = parts["train"][0]
    mean = x_train.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    std = x_train.std(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    std[std < 1e-6] = 1.0
    datasets = {}
    for name, (x, labels) in parts.items():
        x -= mean[None, :, None, None]
        x /= std[None, :, None, None]
        datasets[name] = _tensor_dataset(x, labels, config.channels)
    sample = raw.train_images[train_idx[:1]]
    info = dict(raw.info)
    info.update(
        _describe(raw, config, sample, {k: v[1] for k, v in parts.items()}, test_from_train)
    )
    repeat = config.channels // len(mean)
    info["normalisation"] = {
        "rule": "x / pixel_max, then (x - mean) / std per channel, train-split statistics",
        "pixel_max": raw.pixel_max,
        "mean": [float(v) for v in mean for _ in range(repeat)],
        "std": [float(v) for v in std for _ in range(repeat)],
    }
    log.info("dataset %s: %s", config.name, info["counts"])
    shape = (config.channels, config.resolution, config.resolution)
    return DataSplits(
        datasets["train"], datasets["val"], datasets["test"], raw.num_classes, shape, info
    )


def _describe(
    raw: RawData,
    config: DataConfig,
    sample: np.ndarray,
    labels: Dict[str, np.ndarray],
    test_from_train: bool,
) -> Dict[str, Any]:
    _, geometry = fit_geometry(sample, config.resolution)
    src_channels = sample.shape[3]
    if src_channels == config.channels:
        channel_note = f"{src_channels} channel(s) kept"
    elif src_channels == 1:
        channel_note = "grey repeated to 3 channels (stride-0 view)"
    else:
        channel_note = "RGB -> grey by ITU-R 601 luma (0.299, 0.587, 0.114)"
    per_class = {k: np.bincount(v, minlength=raw.num_classes).tolist() for k, v in labels.items()}
    return {
        "config": config.to_dict(),
        "num_classes": raw.num_classes,
        "class_names": list(raw.class_names),
        "counts": {k: len(v) for k, v in labels.items()},
        "per_class": per_class,
        "official_train_size": len(raw.train_labels),
        "split": (
            f"seed {config.seed}: class-stratified draw; val = {config.val_fraction:g} of the "
            "used official-train images; test = "
            + (f"{config.test_fraction:g} carved from train" if test_from_train else "official")
        ),
        "preprocessing": f"{geometry}; {channel_note}",
    }
