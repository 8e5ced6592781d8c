"""Datasets: real, offline, in the CIFAR geometry of the reference LUTs, split from a seed.

``load_dataset(DataConfig("fashion-mnist"))`` returns :class:`DataSplits` (train/val/test
``TensorDataset`` s of float32 (N, 3, 32, 32) images and int64 labels, plus provenance);
``make_loaders`` wraps them in seeded DataLoaders. Importing this package does not import torch
(the registry and the configs are torch-free; torch is imported when data is loaded).
"""

from __future__ import annotations

from hwnas.data.config import DataConfig, DataSplits
from hwnas.data.datasets import DATASETS, load_dataset
from hwnas.data.loaders import DataLoaders, make_loaders

__all__ = ["DATASETS", "DataConfig", "DataLoaders", "DataSplits", "load_dataset", "make_loaders"]
