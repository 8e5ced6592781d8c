"""hwnas/data/loaders.py: seeded, reproducible DataLoaders."""

from __future__ import annotations

import pytest
import torch

from hwnas.data import DataConfig, load_dataset, make_loaders
from hwnas.errors import UserError


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig("digits", resolution=8, channels=1, seed=0))


def _epoch_labels(loader):
    return torch.cat([labels for _, labels in loader])


def test_train_order_depends_only_on_seed(digits):
    first = make_loaders(digits, batch_size=64, seed=3)
    second = make_loaders(digits, batch_size=64, seed=3)
    torch.manual_seed(999)  # the global RNG must not matter
    a1, a2 = _epoch_labels(first.train), _epoch_labels(first.train)
    b1, b2 = _epoch_labels(second.train), _epoch_labels(second.train)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    assert not torch.equal(a1, a2)  # reshuffled each epoch
    other = _epoch_labels(make_loaders(digits, batch_size=64, seed=4).train)
    assert not torch.equal(a1, other)
    assert torch.equal(a1.sort().values, digits.train.tensors[1].sort().values)


def test_val_and_test_in_order_and_batch_shapes(digits):
    loaders = make_loaders(digits, batch_size=100, seed=0)
    assert torch.equal(_epoch_labels(loaders.test), digits.test.tensors[1])
    assert torch.equal(_epoch_labels(loaders.val), digits.val.tensors[1])
    images, labels = next(iter(loaders.train))
    assert images.shape == (100, 1, 8, 8) and images.dtype == torch.float32
    assert labels.shape == (100,) and labels.dtype == torch.int64
    sizes = [len(labels) for _, labels in loaders.test]
    assert sizes[:-1] == [100] * (len(sizes) - 1) and sum(sizes) == len(digits.test)


def test_bad_arguments(digits):
    with pytest.raises(UserError, match="batch size must be positive"):
        make_loaders(digits, batch_size=0, seed=0)
    with pytest.raises(UserError, match="num_workers"):
        make_loaders(digits, batch_size=8, seed=0, num_workers=-1)
