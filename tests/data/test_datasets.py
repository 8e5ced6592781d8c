"""hwnas/data/datasets.py: every registered dataset loads, splits from the seed, and is real."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hwnas.data import DATASETS, DataConfig, load_dataset
from hwnas.errors import UserError

NEEDS_ROOT = ("cifar10", "cifar100", "idx", "image-folder", "mnist-idx")


def _root_for(name, tmp_path, rng, writers, shipped):
    """A root for every registered name (files written in the real on-disk format)."""
    makers = {
        "fashion-mnist": lambda: shipped,
        "mnist": lambda: writers.write_idx_set(tmp_path, rng, 60, 20, 10) or tmp_path,
        "digits": lambda: None,
        "cifar10": lambda: writers.write_cifar10(tmp_path, rng, per_batch=12),
        "cifar100": lambda: writers.write_cifar100(tmp_path, rng),
        "idx": lambda: writers.write_idx_set(tmp_path, rng, 50, 0, 5, test=False) or tmp_path,
        "mnist-idx": lambda: writers.write_idx_set(tmp_path, rng, 50, 20, 5) or tmp_path,
        "image-folder": lambda: writers.write_image_folder(tmp_path, rng, per_class=10),
    }
    assert name in makers, f"dataset {name!r} is registered but has no test root"
    return makers[name]()


def test_registry_names():
    assert DATASETS.names() == [
        "cifar10", "cifar100", "digits", "fashion-mnist", "idx", "image-folder", "mnist",
        "mnist-idx",
    ]  # fmt: skip
    assert DataConfig().name == "fashion-mnist"


@pytest.mark.parametrize("name", DATASETS.names())
def test_every_dataset_shapes_dtypes_labels_info(name, tmp_path, rng, writers, shipped):
    root = _root_for(name, tmp_path, rng, writers, shipped)
    config = DataConfig(name, root=root, seed=5, train_limit=400, test_limit=300)
    splits = load_dataset(config)
    assert splits.input_shape == (3, 32, 32)
    for part in (splits.train, splits.val, splits.test):
        images, labels = part.tensors
        assert images.dtype == torch.float32 and tuple(images.shape[1:]) == (3, 32, 32)
        assert labels.dtype == torch.int64 and len(labels) == len(images) > 0
        assert labels.min() >= 0 and labels.max() < splits.num_classes
        assert torch.isfinite(images).all()
    info = json.loads(json.dumps(splits.info))  # JSON-able
    assert info["dataset"] == name and info["files_sha256"] and info["licence"]
    assert info["counts"] == {k: len(getattr(splits, k)) for k in ("train", "val", "test")}
    assert len(splits.train) + len(splits.val) <= 400 and len(splits.test) <= 300


@pytest.mark.parametrize("name", NEEDS_ROOT)
def test_missing_root_is_one_line_user_error(name, tmp_path):
    with pytest.raises(UserError) as err:
        load_dataset(DataConfig(name))
    assert "needs a root folder" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError) as err:
        load_dataset(DataConfig(name, root=tmp_path / "nope"))
    assert "does not exist" in str(err.value) and "\n" not in str(err.value)


def test_unknown_name_lists_known_ones():
    with pytest.raises(
        UserError, match=r"unknown dataset 'svhn'; known: cifar10, cifar100, digits"
    ):
        load_dataset(DataConfig("svhn"))


def test_splits_deterministic_per_seed_and_differ_across_seeds():
    def val_images(seed):
        return load_dataset(DataConfig("digits", seed=seed)).val.tensors[0]

    assert torch.equal(val_images(0), val_images(0))
    assert not torch.equal(val_images(0), val_images(1))


def test_digits_geometry_and_counts():
    splits = load_dataset(DataConfig("digits", resolution=32, channels=1))
    assert splits.input_shape == (1, 32, 32)
    assert sum(splits.info["counts"].values()) == 1797 and splits.info["counts"]["test"] == 359
    x = splits.train.tensors[0][0, 0]
    assert torch.equal(x[::4, ::4], x[3::4, 3::4])  # nearest x4: 4x4 constant blocks


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_fashion_shipped_subset_is_balanced_and_real(shipped):
    """The data is real: a logistic regression on 2k images beats 70 % on the shipped test
    (~0.80 here; 50 lbfgs iterations, stopped early on purpose to keep it ~1 s)."""
    from sklearn.linear_model import LogisticRegression

    config = DataConfig(root=shipped, resolution=28, channels=1, train_limit=2000, seed=0)
    splits = load_dataset(config)
    info = splits.info
    assert info["source_kind"] == "shipped subset" and info["canonical_files"] is False
    assert info["official_train_size"] == 10000 and info["subset"]["counts"]["t10k"] == 2000
    assert info["per_class"]["test"] == [200] * 10
    assert np.array(info["per_class"]["train"]).sum() == 1800
    assert max(info["per_class"]["train"]) - min(info["per_class"]["train"]) <= 1
    x_train, y_train = (t.numpy() for t in splits.train.tensors)
    x_test, y_test = (t.numpy() for t in splits.test.tensors)
    model = LogisticRegression(max_iter=50, C=0.05)
    model.fit(x_train.reshape(len(x_train), -1), y_train)
    accuracy = model.score(x_test.reshape(len(x_test), -1), y_test)
    assert accuracy > 0.70, accuracy


def test_fashion_root_with_wrong_classes(tmp_path, rng, writers):
    writers.write_idx_set(tmp_path, rng, 30, 10, 3)
    with pytest.raises(UserError, match=r"expected 0\.\.9"):
        load_dataset(DataConfig(root=tmp_path))


def test_importing_hwnas_data_does_not_import_torch():
    code = "import sys, hwnas.data; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
