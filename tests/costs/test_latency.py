"""Device -> LUT resolution: user LUT first, shipped reference next, coverage errors named."""

from __future__ import annotations

import pytest

from hwnas import paths
from hwnas.costs.latency import load_latency_predictor, lut_path_for
from hwnas.errors import UserError
from hwnas.lut.schema import load_lut, save_lut


def test_reference_device_resolves_to_the_shipped_lut():
    assert lut_path_for("pi4", "fbnet") == paths.shipped_luts_dir() / "pi4_fbnet.json"
    predictor = load_latency_predictor("pixel3", "fbnet")
    assert predictor.name == "lut:pixel3"


def test_a_user_built_lut_takes_precedence():
    shipped = load_lut(paths.shipped_luts_dir() / "pi4_fbnet.json")
    doubled = shipped.replace(
        fixed=type(shipped.fixed)(2 * shipped.fixed.latency_ms, shipped.fixed.covers, "test")
    )
    save_lut(doubled, paths.user_luts_dir() / "pi4_fbnet.json")
    predictor = load_latency_predictor("pi4", "fbnet")
    assert predictor.constant_ms == pytest.approx(2 * shipped.fixed.latency_ms)


def test_unknown_device_lists_the_devices_with_luts():
    with pytest.raises(UserError, match=r"no LUT for device 'jetson'.*pi4: fbnet; pixel3: fbnet"):
        load_latency_predictor("jetson", "fbnet")


def test_a_lut_missing_blocks_names_them(tmp_path):
    lut = load_lut(paths.shipped_luts_dir() / "pi4_fbnet.json")
    # every width of the 5x5 blocks at 32 px: no entry, and no linear family to price them from
    dropped = [
        e for e in lut.entries if e.spec.op == "ib" and e.spec.kernel == 5 and e.spec.h == 32
    ]
    assert dropped
    path = tmp_path / "partial.json"
    save_lut(lut.replace(entries=[e for e in lut.entries if e not in dropped]), path)
    with pytest.raises(UserError) as info:
        load_latency_predictor(str(path), "fbnet")
    message = str(info.value)
    assert "does not cover space 'fbnet'" in message
    assert "layer 0 k5_e6 (ib-in:32x32x16-out:16-k:5-s:1-mid:96-g:1-act:relu-res:1)" in message
