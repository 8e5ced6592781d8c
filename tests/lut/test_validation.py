"""``validate_lut`` with a fake device whose networks follow a known law; plots of the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.lut import validation as validate_module
from hwnas.lut.calibration import Pricer, fit_calibration
from hwnas.lut.plan import get_plan
from hwnas.lut.plots import plot_linear, plot_predicted_vs_measured
from hwnas.lut.schema import LUT, LUTEntry
from hwnas.lut.timing import TimingSettings
from hwnas.lut.validation import validate_lut, validation_archs
from tests.lut.fakes import FINGERPRINT, FakeClient

PLAN = get_plan("fbnet", quick=True)


def _lut() -> LUT:
    rng = np.random.default_rng(0)
    entries = [
        LUTEntry(s, "fp32", v, v, v, 5)
        for s in PLAN.blocks
        for v in [float(rng.uniform(0.02, 0.2))]
    ]
    return LUT(
        {"name": "fake", "fingerprint": FINGERPRINT},
        {"name": "onnxruntime"},
        {"precision": "fp32"},
        tuple(entries),
        space="fbnet",
    )


def _truth(lut: LUT, text: str) -> float:
    return 1.3 * Pricer.of(lut).sum_ms(PLAN.network(PLAN.parse_arch(text))) + 0.2


@pytest.fixture(autouse=True)
def text_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Networks are sent as their text, so the fake device can price them."""
    import hwnas.lut.compose as compose

    texts = {}

    def network_onnx(specs):
        key = "|".join(s.key() for s in specs)
        return texts.setdefault(key, key).encode()

    monkeypatch.setattr(compose, "network_onnx", network_onnx)


def _fake(lut: LUT, fingerprint=None, extra=(), speed: float = 1.0) -> FakeClient:
    """A device that runs every network in ``_truth`` x ``speed``."""
    by_specs = {}
    for arch in [*PLAN.sample_archs(300, validate_module.VALIDATION_SEED), *extra]:
        text = PLAN.format_arch(arch)
        by_specs["|".join(s.key() for s in PLAN.network(arch))] = speed * _truth(lut, text)
    return FakeClient(lambda model, _: by_specs[model.decode()], fingerprint=fingerprint)


def test_calibrated_lut_matches_and_plain_sum_does_not(tmp_path: Path) -> None:
    lut = _lut()
    train = PLAN.sample_archs(30, seed=5)
    calibration = fit_calibration(
        Pricer.of(lut),
        [PLAN.network(a) for a in train],
        [_truth(lut, PLAN.format_arch(a)) for a in train],
        "fbnet",
    )
    calibration["data"] = [{"arch": PLAN.format_arch(a)} for a in train]
    lut = lut.replace(models={"calibration": calibration})
    timing = TimingSettings(repeats=2, rounds=1)
    result = validate_lut(lut, PLAN, _fake(lut), n_archs=20, timing=timing, progress=False)
    assert len(result.archs) == 20 and not set(result.archs) & {
        r["arch"] for r in calibration["data"]
    }
    assert result.figures["calibrated"]["within_5pct"] == 1.0
    assert result.figures["calibrated"]["rmspe"] < 1e-6
    assert result.figures["plain"]["within_10pct"] == 0.0  # 1.3x + 0.2 ms off
    assert result.statistic == "min"
    rows = result.to_dict()["rows"]
    assert rows[0]["measured_ms"] == pytest.approx(_truth(lut, rows[0]["arch"]))
    png = plot_predicted_vs_measured(result.measured_ms, result.predicted_ms, tmp_path / "v.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert plot_linear([], tmp_path / "empty.png").stat().st_size > 0


def test_drift_since_the_build_is_measured_on_calibration_networks() -> None:
    lut = _lut()
    train = PLAN.sample_archs(30, seed=5)
    truth = [_truth(lut, PLAN.format_arch(a)) for a in train]
    calibration = fit_calibration(Pricer.of(lut), [PLAN.network(a) for a in train], truth, "fbnet")
    calibration["data"] = [
        {"arch": PLAN.format_arch(a), "latency_ms": t} for a, t in zip(train, truth)
    ]
    lut = lut.replace(models={"calibration": calibration})
    slower = _fake(lut, extra=train, speed=1.06)  # the device got 6 % slower since the build
    timing = TimingSettings(repeats=2, rounds=1)
    result = validate_lut(lut, PLAN, slower, n_archs=20, timing=timing, progress=False, anchors=8)
    drift = result.extra["drift"]
    assert drift["anchors"] == 8 and drift["now_over_build"] == pytest.approx(1.06)
    assert result.figures["calibrated"]["within_5pct"] == 0.0
    assert result.figures["calibrated_drift_corrected"]["rmspe"] < 1e-6
    anchors = {r["arch"] for r in validate_module.anchor_networks(lut, 8)}
    assert not anchors & set(result.archs)  # the validation set stays out-of-sample
    assert result.to_dict()["drift"] == drift
    none = validate_lut(lut, PLAN, slower, n_archs=4, timing=timing, progress=False, anchors=0)
    assert "drift" not in none.extra and "calibrated_drift_corrected" not in none.figures


def test_refuses_another_device_and_spaces_without_networks() -> None:
    lut = _lut()
    other = _fake(lut, fingerprint={**FINGERPRINT, "cpu_model": "Other"})
    with pytest.raises(UserError, match="not the one LUT 'fake' was measured on"):
        validate_lut(lut, PLAN, other, n_archs=4, progress=False)
    with pytest.raises(UserError, match="no whole networks"):
        validate_lut(lut, get_plan("darts"), _fake(lut), n_archs=4, progress=False)


def test_validation_archs_skip_calibration_networks() -> None:
    lut = _lut()
    first = validation_archs(PLAN, lut, 5, seed=1)
    stored = lut.replace(models={"calibration": {"data": [{"arch": first[0]}]}})
    again = validation_archs(PLAN, stored, 5, seed=1)
    assert first[0] not in again and again[:4] == first[1:]
