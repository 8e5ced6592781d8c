"""Latency predictors: LUT sums, fixed parts, calibration, fitted-predictor JSON, name resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas import paths
from hwnas.errors import UserError
from hwnas.lut.block_model import fit_block_model
from hwnas.lut.calibration import Pricer, fit_calibration, predict_ms
from hwnas.lut.predictor import FittedPredictor, LUTPredictor
from hwnas.lut.schema import LUT, LUTEntry, load_lut

RNG = np.random.default_rng(0)
ARCHS = RNG.integers(0, 9, size=(40, 22))


@pytest.fixture(scope="module")
def pi4() -> LUT:
    return load_lut(paths.shipped_luts_dir() / "pi4_fbnet.json")


def manual_sum(lut: LUT, fbnet, arch) -> float:
    blocks = sum(lut.latency_ms(spec) for spec in fbnet.arch_specs(tuple(arch)))
    return blocks + lut.fixed.latency_ms


def test_lut_predictor_is_the_sum_of_entries(pi4, fbnet):
    predictor = LUTPredictor(pi4, fbnet)
    expected = [manual_sum(pi4, fbnet, a) for a in ARCHS]
    np.testing.assert_allclose(predictor.predict_ms(ARCHS), expected, rtol=0, atol=1e-12)
    table = predictor.option_table_ms()
    assert len(table) == 22 and all(len(row) == 9 for row in table)
    direct = predictor.constant_ms + sum(table[s][ARCHS[0][s]] for s in range(22))
    assert direct == pytest.approx(expected[0], abs=1e-12)


def test_fixed_blocks_as_entries_instead_of_a_fixed_part(pi4, fbnet):
    extra = [
        LUTEntry(spec, "fp32", v, v, v, 1)
        for spec, v in zip(fbnet.fixed_specs, (1.0, 2.0, 0.5, 0.25))
    ]
    measured_style = pi4.replace(entries=[*pi4.entries, *extra], fixed=None)
    base = LUTPredictor(pi4, fbnet).predict_ms(ARCHS) - pi4.fixed.latency_ms
    np.testing.assert_allclose(
        LUTPredictor(measured_style, fbnet).predict_ms(ARCHS), base + 3.75, atol=1e-12
    )


def test_missing_blocks_are_named_or_priced_by_a_block_model(pi4, fbnet):
    spec = fbnet.option_specs(21, 8)[0]  # the 1x1-conv skip: no linear family can price it
    lacking = pi4.replace(entries=[e for e in pi4.entries if e.spec != spec])
    with pytest.raises(
        UserError, match=r"lacks 1 block\(s\) of space 'fbnet' \(e.g. skip-in:4x4x184-out:352"
    ):
        LUTPredictor(lacking, fbnet)
    model = fit_block_model(lacking, "boosted", random_state=0)
    predictor = LUTPredictor(lacking, fbnet, block_model=model)
    estimate = predictor.option_table_ms()[21][8]
    truth = pi4.latency_ms(spec)
    assert 0.2 * truth < estimate < 5 * truth  # one unmeasured block, priced from the others
    np.testing.assert_allclose(
        predictor.option_table_ms()[0], LUTPredictor(pi4, fbnet).option_table_ms()[0]
    )


def test_calibration_recovers_an_affine_device(pi4, fbnet):
    raw = LUTPredictor(pi4, fbnet)
    measured = 1.3 * raw.predict_ms(ARCHS) + 2.0
    networks = [
        [*fbnet.fixed_specs, *(sp for s, o in enumerate(a) for sp in fbnet.option_specs(s, o))]
        for a in ARCHS
    ]
    np.testing.assert_allclose([Pricer.of(pi4).sum_ms(n) for n in networks], raw.predict_ms(ARCHS))
    calibration = fit_calibration(Pricer.of(pi4), networks, measured, "fbnet", lam=1e9)
    assert calibration["scale"] == pytest.approx(1.3, rel=1e-4)  # lam=1e9: (almost) affine only
    assert calibration["offset_ms"] == pytest.approx(2.0, rel=1e-3)
    calibrated = LUTPredictor(pi4.replace(models={"calibration": calibration}), fbnet)
    np.testing.assert_allclose(calibrated.predict_ms(ARCHS), measured, rtol=1e-5)
    table = calibrated.option_table_ms()
    via_table = calibrated.constant_ms + sum(table[s][ARCHS[3][s]] for s in range(22))
    assert via_table == pytest.approx(calibrated.predict_ms(ARCHS)[3], rel=1e-9)
    # Per-entry corrections (small ridge): the predictor's tables reproduce calibration.predict_ms.
    skewed = measured * (1 + 0.2 * (np.asarray(ARCHS)[:, 5] == 7))
    detailed = fit_calibration(Pricer.of(pi4), networks, skewed, "fbnet", lam=0.01)
    assert any(abs(v) > 1e-3 for v in detailed["entry_correction"].values())
    with_entries = LUTPredictor(pi4.replace(models={"calibration": detailed}), fbnet)
    expected = [predict_ms(Pricer.of(pi4), detailed, n) for n in networks]
    np.testing.assert_allclose(with_entries.predict_ms(ARCHS), expected, rtol=1e-9)
    other_space = {**calibration, "space": "darts"}
    ignored = LUTPredictor(pi4.replace(models={"calibration": other_space}), fbnet)
    np.testing.assert_allclose(ignored.predict_ms(ARCHS), raw.predict_ms(ARCHS))


def test_fitted_predictor_json_round_trip(fbnet, tmp_path):
    table = tuple(tuple(float(v) for v in RNG.random(9)) for _ in range(22))
    predictor = FittedPredictor(fbnet, "hier", 3.5, table, {"n_train": 7})
    path = predictor.save(tmp_path / "p.json")
    loaded = FittedPredictor.from_json(json.loads(path.read_text()))
    assert loaded.table_ms == table and loaded.info == {"n_train": 7}
    assert np.array_equal(loaded.predict_ms(ARCHS), predictor.predict_ms(ARCHS))
    document = json.loads(path.read_text())
    assert document["kind"] == "hwnas-latency-predictor" and document["schema_version"] == 1
    document["table_ms"][0] = document["table_ms"][0][:5]
    with pytest.raises(UserError, match="table shape does not match"):
        FittedPredictor.from_json(document)


def test_bad_architectures_are_user_errors(pi4, fbnet):
    predictor = LUTPredictor(pi4, fbnet)
    with pytest.raises(UserError, match="out of range at slot 0"):
        predictor.predict_ms([(9,) + (0,) * 21])
    with pytest.raises(UserError, match="21 slots, the predictor 22"):
        predictor.predict_ms([(0,) * 21])
