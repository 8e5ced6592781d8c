"""Deterministic torch DataLoaders over :class:`~hwnas.data.config.DataSplits`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwnas.data.config import DataSplits
from hwnas.errors import UserError

if TYPE_CHECKING:
    from torch.utils.data import DataLoader


@dataclass(frozen=True)
class DataLoaders:
    """Train (shuffled by a seeded generator), val and test (in order) loaders."""

    train: DataLoader
    val: DataLoader
    test: DataLoader


def make_loaders(
    splits: DataSplits, batch_size: int, seed: int, num_workers: int = 0
) -> DataLoaders:
    """Build loaders whose batches depend only on ``seed`` (and the splits).

    The train loader reshuffles every epoch from its own ``torch.Generator`` seeded with
    ``seed``, so the sequence of epochs is reproducible and independent of the global torch RNG.
    The data need no per-sample randomness, so worker processes do not change the batches.

    Args:
        splits: the dataset.
        batch_size: images per batch (the last batch may be smaller).
        seed: seeds the train shuffling.
        num_workers: loader worker processes (0: load in the calling process).

    Returns:
        The three loaders; each batch is ``(images (B, C, H, W) float32, labels (B,) int64)``.
    """
    import torch
    from torch.utils.data import DataLoader

    if batch_size < 1:
        raise UserError(f"batch size must be positive, got {batch_size}")
    if num_workers < 0:
        raise UserError(f"num_workers must be 0 or more, got {num_workers}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    common = {"batch_size": batch_size, "num_workers": num_workers}
    return DataLoaders(
        train=DataLoader(splits.train, shuffle=True, generator=generator, **common),
        val=DataLoader(splits.val, shuffle=False, **common),
        test=DataLoader(splits.test, shuffle=False, **common),
    )
