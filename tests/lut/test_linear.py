"""Per-family linear fits of latency in middle channels (FGA-NAS Fig. 5)."""

from __future__ import annotations

import math

import pytest

from hwnas.blocks.specs import IBSpec
from hwnas.lut.linear import (
    FamilyFit,
    family_key,
    fit_families,
    fit_line,
    fits_from_lut,
    linear_model_json,
    linear_price,
    summarize,
)
from hwnas.lut.schema import LUT, LUTEntry, load_lut
from hwnas.paths import shipped_luts_dir


def _lut(points: dict[int, float], kernel: int = 3) -> LUT:
    entries = [
        LUTEntry(IBSpec(8, 8, 16, 24, kernel, 1, mid), "fp32", ms, ms, ms, 5)
        for mid, ms in points.items()
    ]
    return LUT(
        {"name": "t", "fingerprint": {}},
        {"name": "onnxruntime"},
        {"precision": "fp32"},
        tuple(entries),
    )


def test_exact_line_is_recovered() -> None:
    slope, intercept, r2 = fit_line(
        [16, 32, 48, 64, 96], [0.1 + 0.002 * m for m in (16, 32, 48, 64, 96)]
    )
    assert (
        slope == pytest.approx(0.002)
        and intercept == pytest.approx(0.1)
        and r2 == pytest.approx(1.0)
    )
    assert math.isnan(fit_line([1, 2], [3.0, 5.0])[2])  # two points: no R^2
    with pytest.raises(ValueError):
        fit_line([4, 4], [1.0, 2.0])


def test_families_group_everything_but_mid() -> None:
    lut = _lut({16: 0.10, 32: 0.14, 48: 0.20, 96: 0.30})
    lut = lut.replace(
        entries=[
            *lut.entries,
            *_lut({16: 0.2, 48: 0.4}, kernel=5).entries,
            *_lut({32: 0.5}, kernel=7).entries,
        ]
    )
    fits = fit_families(lut)
    assert [f.family for f in fits] == [
        "ib-in:8x8x16-out:24-k:3-s:1-g:1-act:relu-res:0",
        "ib-in:8x8x16-out:24-k:5-s:1-g:1-act:relu-res:0",
    ]  # the k7 family has one width only
    k3 = fits[0]
    assert k3.mids == (16, 32, 48, 96) and 0.95 < k3.r2 < 1.0
    assert k3.max_rel_err == pytest.approx(
        max(abs(k3.predict_ms(m) - v) / v for m, v in zip(k3.mids, k3.latency_ms))
    )
    assert k3.spec(40) == IBSpec(8, 8, 16, 24, 3, 1, 40)
    assert family_key(k3.spec(40)) == k3.family
    assert linear_price(fits, IBSpec(8, 8, 16, 24, 3, 1, 40)) == pytest.approx(k3.predict_ms(40))
    assert linear_price(fits, IBSpec(8, 8, 16, 24, 7, 1, 40)) is None
    assert math.isnan(fits[1].r2)


def test_json_round_trip_and_stored_fits_are_used() -> None:
    lut = _lut({16: 0.10, 32: 0.14, 48: 0.20})
    fits = fit_families(lut)
    document = linear_model_json(fits)
    assert document["summary"]["families"] == 1
    assert [FamilyFit.from_dict(r) for r in document["families"]] == fits
    stored = lut.replace(models={"linear": document})
    assert fits_from_lut(stored) == fits


def test_reference_pi4_lut_is_close_to_linear() -> None:
    lut = load_lut(shipped_luts_dir() / "pi4_fbnet.json")
    fits = fit_families(lut)
    assert len(fits) == 24 and all(len(f.mids) == 3 for f in fits)  # e1/e3/e6 x k3/k5 x 12
    summary = summarize(fits)
    assert summary["families_with_r2"] == 24
    assert 0.9 < summary["r2_min"] <= summary["r2_median"] < 1.0
    assert all(f.slope_ms_per_channel > 0 for f in fits)
