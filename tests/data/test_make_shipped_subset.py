"""hwnas/data/make_shipped_subset.py: the shipped subset is reproducible and documented."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from hwnas.data.make_shipped_subset import draw_rows, main, make_subset
from hwnas.data.sources import KNOWN_SHA256
from hwnas.errors import UserError


def test_draw_rows_balanced_sorted_deterministic():
    labels = np.repeat(np.arange(4), [50, 60, 70, 80])
    rows = draw_rows(labels, 20, np.random.default_rng(0))
    assert np.bincount(labels[rows]).tolist() == [20] * 4
    assert (np.diff(rows) > 0).all()
    np.testing.assert_array_equal(rows, draw_rows(labels, 20, np.random.default_rng(0)))
    assert not np.array_equal(rows, draw_rows(labels, 20, np.random.default_rng(1)))


def test_shipped_files_match_manifest_and_readme(shipped):
    manifest = json.loads((shipped / "MANIFEST.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["kind"] == "hwnas-shipped-dataset"
    assert manifest["originals_sha256"] == KNOWN_SHA256["fashion-mnist"]
    readme = (shipped / "README.md").read_text()
    total = 0
    for name, digest in manifest["files_sha256"].items():
        data = (shipped / name).read_bytes()
        total += len(data)
        assert hashlib.sha256(data).hexdigest() == digest and digest in readme
    assert total < 5.5e6  # keep the package small
    licence = (shipped / "LICENSE-fashion-mnist.txt").read_text()
    assert "Zalando SE" in licence and "Permission is hereby granted" in licence


def test_regeneration_reproduces_the_shipped_subset(debian_fashion, shipped, capsys):
    """``--check`` redraws the subset from the Debian files in a temp dir: same rows, same bytes
    once decompressed (the gzip bytes may differ with another zlib, and are not asserted)."""
    assert main(["--source", str(debian_fashion), "--out", str(shipped), "--check"]) == 0
    assert capsys.readouterr().out.startswith("content identical")


def test_non_canonical_source_is_refused(tmp_path, rng, writers):
    writers.write_idx_set(tmp_path, rng, 100, 20, 10)
    with pytest.raises(UserError, match="not the canonical Fashion-MNIST file"):
        make_subset(tmp_path, tmp_path / "out")
