"""fit-latency methods on real HW-NAS-Bench data: additive devices, non-additive devices, errors."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.lut.fit import fit_latency
from hwnas.lut.loading import load_predictor
from hwnas.lut.metrics import accuracy
from hwnas.lut.predictor import FittedPredictor


def split(n_total, n_train, seed):
    order = np.random.default_rng(seed).permutation(n_total)
    return order[:n_train], order[n_train:]


@pytest.mark.parametrize("method", ["additive", "hier"])
def test_additive_device_is_recovered_from_enough_rows(method, device_table):
    """Pixel 3 is an exact per-block sum: with 600 rows both methods reproduce held-out rows."""
    table, archs = device_table("pixel3")
    train, test = split(len(archs), 600, 0)
    predictor = fit_latency(
        load_predictor("pixel3").space, archs[train], table.latency_ms[train], method
    )
    figures = accuracy(predictor.predict_ms(archs[test]), table.latency_ms[test])
    assert figures.within_5pct > 0.99 and figures.spearman > 0.99
    assert predictor.info["n_train"] == 600 and predictor.info["loo_rmspe"] < 0.02


def test_hier_beats_the_additive_baseline_on_a_real_cpu(device_table, fbnet):
    """gold_6240 (Xeon, real end-to-end): 100 rows to fit, 4,900 held out (see bench/fit_latency)."""
    table, archs = device_table("gold_6240")
    train, test = split(len(archs), 100, 1)
    y = table.latency_ms
    hier = fit_latency(fbnet, archs[train], y[train], "hier")
    additive = fit_latency(fbnet, archs[train], y[train], "additive")
    ours = accuracy(hier.predict_ms(archs[test]), y[test])
    base = accuracy(additive.predict_ms(archs[test]), y[test])
    assert ours.within_10pct > 0.97 and ours.spearman > 0.92
    assert ours.within_10pct > base.within_10pct + 0.1 and ours.spearman > base.spearman + 0.15
    coef = hier.info["block_coef_ms"]
    assert set(coef) == {"shared", "h4", "h8", "h16", "h32"}
    assert coef["shared"]["dense_macs"] > 0  # more compute, more time


def test_prior_lut_is_a_feature(device_table, fbnet):
    table, archs = device_table("samsung_a50")
    train, _ = split(len(archs), 60, 2)
    predictor = fit_latency(
        fbnet, archs[train], table.latency_ms[train], "hier", prior=load_predictor("pi4")
    )
    assert predictor.info["prior"] == "lut:pi4"
    assert "prior_ms" in predictor.info["block_coef_ms"]["shared"]


def test_fitted_table_is_the_model(device_table, fbnet, tmp_path):
    """The saved table reproduces the fitted model's predictions (no hidden state)."""
    table, archs = device_table("samsung_a50")
    predictor = fit_latency(fbnet, archs[:80], table.latency_ms[:80], "hier", info={"seed": 3})
    loaded = load_predictor(str(predictor.save(tmp_path / "p.json")))
    assert isinstance(loaded, FittedPredictor) and loaded.info["seed"] == 3
    assert np.array_equal(loaded.predict_ms(archs[80:200]), predictor.predict_ms(archs[80:200]))


def test_fit_errors(fbnet):
    archs = np.zeros((10, 22), dtype=int)
    with pytest.raises(UserError, match="unknown fit method 'gp'"):
        fit_latency(fbnet, archs, np.ones(10), "gp")
    with pytest.raises(UserError, match="at least 5 measured"):
        fit_latency(fbnet, archs[:3], np.ones(3))
    with pytest.raises(UserError, match="finite and > 0"):
        fit_latency(fbnet, archs, -np.ones(10))
    with pytest.raises(UserError, match="10 architectures but 9 latencies"):
        fit_latency(fbnet, archs, np.ones(9))
