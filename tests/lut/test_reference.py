"""Shipped reference LUTs: they reproduce HW-NAS-Bench to 1e-6 ms and regenerate byte for byte."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from hwnas import paths
from hwnas.lut.loading import load_predictor
from hwnas.lut.predictor import LUTPredictor
from hwnas.lut.reference import REFERENCE_DEVICES, derive_reference_lut, write_reference_luts
from hwnas.lut.schema import load_lut

DEVICES = [(name, stem) for name, stem, _ in REFERENCE_DEVICES]


@pytest.mark.parametrize(("name", "stem"), DEVICES)
def test_shipped_lut_reproduces_all_architectures(name, stem, device_table):
    table, archs = device_table(stem)
    predicted = load_predictor(name).predict_ms(archs)
    assert len(predicted) == 5000
    assert np.max(np.abs(predicted - table.latency_ms)) < 1e-6


@pytest.mark.parametrize(("name", "stem"), DEVICES)
def test_shipped_lut_is_self_describing(name, stem, fbnet, fbnet_data):
    lut = load_lut(paths.shipped_luts_dir() / f"{name}_fbnet.json")
    assert lut.space == "fbnet" and lut.resolution == 32 and lut.num_classes == 100
    assert lut.device["fingerprint"]["published_name"] in ("Raspberry Pi 4", "Pixel 3")
    source = lut.provenance["files"][f"{stem}.csv"]
    assert source["sha256"] == hashlib.sha256((fbnet_data / f"{stem}.csv").read_bytes()).hexdigest()
    assert "HW-NAS-Bench" in lut.licence and "HELP" in lut.licence and "MIT" in lut.licence
    assert "median_ms = p10_ms = p90_ms" in lut.provenance["statistics"]
    # every block of the space is covered; the fixed blocks by the documented fixed part
    specs = [sp for s in range(22) for o in range(9) for sp in fbnet.option_specs(s, o)]
    assert lut.missing([*specs, *fbnet.fixed_specs]) == []
    assert set(lut.fixed.covers) == {sp.key() for sp in fbnet.fixed_specs}
    kinds = {e.extra["identified"] for e in lut.entries}
    assert kinds == {"exact", "skip-relative", "estimated", "convention"}
    for entry in lut.entries:
        assert entry.median_ms == entry.p10_ms == entry.p90_ms and entry.n == 5000
        if entry.extra["identified"] == "convention":  # identity skips
            assert entry.spec.op == "skip" and entry.spec.is_identity and entry.median_ms == 0
        if entry.extra["identified"] == "estimated":  # the six 1x1-conv skips
            assert entry.spec.op == "skip" and 0 < entry.median_ms < 1.0
    assert sum(e.extra["identified"] == "estimated" for e in lut.entries) == 6
    assert 0 < lut.fixed.latency_ms < 10


def test_documented_example_all_k3_e1_on_pi4():
    assert load_predictor("pi4").predict_ms([(0,) * 22])[0] == pytest.approx(17.618579, abs=1e-6)


def test_identical_specs_share_one_entry(fbnet):
    lut = load_lut(paths.shipped_luts_dir() / "pi4_fbnet.json")
    entry = lut.get(fbnet.option_specs(2, 3)[0])  # k3_e6 at positions 2, 3, 4
    assert entry.extra["positions"] == [2, 3, 4]
    assert len(lut.entries) == len({e.key for e in lut.entries}) == 108


def test_regeneration_is_byte_identical(fbnet_data, tmp_path):
    written = write_reference_luts(fbnet_data, tmp_path)
    for path in written:
        assert path.read_bytes() == (paths.shipped_luts_dir() / path.name).read_bytes()


def test_non_additive_data_is_refused(fbnet_data):
    from hwnas.errors import UserError

    with pytest.raises(UserError, match="not an exact per-block sum"):
        derive_reference_lut(fbnet_data / "gold_6240.csv", "gold", "Xeon Gold 6240")


def test_other_conventions_would_predict_the_same(device_table, fbnet):
    """Moving the estimated skip cost into the fixed part changes no prediction (unidentifiable)."""
    lut = load_lut(paths.shipped_luts_dir() / "pixel3_fbnet.json")
    table, archs = device_table("pixel3")
    shifted = []
    moved = 0.0
    for e in lut.entries:
        if e.extra["identified"] in ("estimated", "skip-relative"):
            position = e.extra["positions"][0]
            skip = lut.get(fbnet.option_specs(position, 8)[0]).median_ms
            value = e.median_ms - skip
            moved += skip if e.extra["identified"] == "estimated" else 0.0
            e = type(e)(e.spec, e.precision, value, value, value, e.n, e.extra)
        shifted.append(e)
    fixed = type(lut.fixed)(lut.fixed.latency_ms + moved, lut.fixed.covers, "")
    other = LUTPredictor(lut.replace(entries=shifted, fixed=fixed), fbnet)
    assert np.max(np.abs(other.predict_ms(archs) - table.latency_ms)) < 1e-6
