"""The end-to-end calibration: recovers a known correction and stays additive."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.blocks.specs import IBSpec
from hwnas.errors import UserError
from hwnas.lut.calibration import (
    Pricer,
    calibrated_entry_ms,
    fit_calibration,
    predict_ms,
)
from hwnas.lut.compose import is_identity
from hwnas.lut.linear import fit_families, linear_model_json
from hwnas.lut.metrics import accuracy
from hwnas.lut.plan import get_plan
from hwnas.lut.schema import LUT, LUTEntry
from hwnas.spaces import fbnet_geometry as fb


def _lut(plan, rng) -> LUT:
    entries = []
    for spec in plan.blocks:
        ms = float(rng.uniform(0.02, 0.3))
        entries.append(LUTEntry(spec, "fp32", ms, ms, ms, 10))
    return LUT(
        {"name": "t", "fingerprint": {}},
        {"name": "onnxruntime"},
        {"precision": "fp32"},
        tuple(entries),
        space=plan.space,
    )


def _truth(lut: LUT, networks, boost: dict[str, float]) -> np.ndarray:
    """Networks cost 0.8 x the sum, +0.1 ms, and a few blocks cost boost[k] more than timed."""
    out = []
    for specs in networks:
        total = 0.0
        for spec in specs:
            entry = lut.get(spec)
            if entry is not None:
                total += entry.median_ms * (1 + boost.get(spec.key(), 0.0))
        out.append(0.8 * total + 0.1)
    return np.asarray(out)


def test_learns_entry_corrections_the_global_affine_cannot() -> None:
    rng = np.random.default_rng(0)
    plan = get_plan("fbnet", quick=True)
    lut = _lut(plan, rng)
    fixed = {f.key() for f in plan.fixed}
    # blocks at positions whose other option is an identity skip: their cost is identifiable
    # (elsewhere only the difference between the two options is)
    slots = fb.layer_slots()
    boosted = sorted({fb.op_spec(s, 0).key() for s in slots if is_identity(fb.op_spec(s, 8))})[:3]
    boost = dict.fromkeys(boosted, 0.5)
    train = [plan.network(a) for a in plan.sample_archs(150, seed=1)]
    test = [plan.network(a) for a in plan.sample_archs(60, seed=2)]
    pricer = Pricer.of(lut)
    calibration = fit_calibration(pricer, train, _truth(lut, train, boost), "fbnet", lam=1e-4)
    predicted = [predict_ms(pricer, calibration, s) for s in test]
    assert accuracy(predicted, _truth(lut, test, boost)).rmspe < 0.005
    corrections = calibration["entry_correction"]
    others = [v for k, v in corrections.items() if k not in boost and k not in fixed]
    assert min(corrections[k] for k in boosted) > max(others) + 0.2
    # the global affine alone cannot fix the boosted blocks
    affine = fit_calibration(pricer, train, _truth(lut, train, boost), "fbnet", lam=1e9)
    affine_pred = [predict_ms(pricer, affine, s) for s in test]
    assert accuracy(affine_pred, _truth(lut, test, boost)).rmspe > 0.01
    # without per-block surprises, the affine part is the truth
    plain = fit_calibration(pricer, train, _truth(lut, train, {}), "fbnet", lam=1e9)
    assert plain["scale"] == pytest.approx(0.8) and plain["offset_ms"] == pytest.approx(0.1)


def test_leave_one_out_picks_the_affine_model_when_there_is_nothing_else() -> None:
    rng = np.random.default_rng(1)
    plan = get_plan("fbnet", quick=True)
    lut = _lut(plan, rng)
    networks = [plan.network(a) for a in plan.sample_archs(60, seed=3)]
    noise = 1 + 0.01 * rng.standard_normal(len(networks))
    calibration = fit_calibration(
        Pricer.of(lut), networks, _truth(lut, networks, {}) * noise, "fbnet"
    )
    assert calibration["lambda"] >= 1.0
    assert calibration["loo_rmspe"] == pytest.approx(0.01, rel=0.5)
    assert max(abs(v) for v in calibration["entry_correction"].values()) < 0.05


def test_prediction_formula_and_calibrated_entries() -> None:
    plan = get_plan("fbnet", quick=True)
    lut = _lut(plan, np.random.default_rng(2))
    key = plan.blocks[0].key()
    calibration = {"scale": 2.0, "offset_ms": 0.5, "entry_correction": {key: 0.25}}
    pricer = Pricer.of(lut)
    spec = plan.blocks[0]
    entry = lut.get(spec).median_ms
    assert predict_ms(pricer, calibration, [spec, spec]) == pytest.approx(
        2 * 2 * entry * 1.25 + 0.5
    )
    assert predict_ms(pricer, None, [spec]) == pytest.approx(entry)
    stored = lut.replace(models={"calibration": calibration})
    assert calibrated_entry_ms(stored, key) == pytest.approx(2 * entry * 1.25)


def test_unmeasured_widths_are_priced_by_their_family_line() -> None:
    specs = [IBSpec(8, 8, 16, 16, 3, 1, mid, res=True) for mid in (16, 32, 48)]
    entries = [LUTEntry(s, "fp32", 0.01 * s.mid / 16, 0.01, 1.0, 5) for s in specs]
    lut = LUT(
        {"name": "t", "fingerprint": {}}, {"name": "x"}, {"precision": "fp32"}, tuple(entries)
    )
    lut = lut.replace(models={"linear": linear_model_json(fit_families(lut))})
    pricer = Pricer.of(lut)
    key, ms = pricer.term(IBSpec(8, 8, 16, 16, 3, 1, 40, res=True))
    assert key == "ib-in:8x8x16-out:16-k:3-s:1-g:1-act:relu-res:1" and ms == pytest.approx(0.025)
    assert pricer.term(specs[1]) == (specs[1].key(), pytest.approx(0.02))
    with pytest.raises(UserError, match="no entry"):
        pricer.term(IBSpec(8, 8, 16, 16, 5, 1, 40, res=True))


def test_needs_enough_networks() -> None:
    plan = get_plan("fbnet", quick=True)
    lut = _lut(plan, np.random.default_rng(3))
    networks = [plan.network(a) for a in plan.sample_archs(3, seed=0)]
    with pytest.raises(UserError, match="at least 8"):
        fit_calibration(Pricer.of(lut), networks, [1.0, 2.0, 3.0], "fbnet")
