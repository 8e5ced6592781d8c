"""Block regressors: scikit-learn estimator checks, exact JSON round trips, tree export parity."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.utils.estimator_checks import check_estimator

from hwnas.errors import UserError
from hwnas.lut.features import feature_matrix
from hwnas.lut.regression import (
    BoostedLatencyRegressor,
    RidgeLatencyRegressor,
    regressor_from_json,
)
from hwnas.spaces import fbnet_geometry as fb

GBR_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data": (
        "min_samples_leaf and subsampling count rows, not weights; scikit-learn's own "
        "GradientBoostingRegressor fails this check too"
    )
}


def block_data():
    """Real block specs with a synthetic but physical latency: 2 ns/MAC dense, 20 ns/MAC dw."""
    specs = [fb.op_spec(s, o) for s in fb.layer_slots() for o in range(8)]
    X = feature_matrix(specs)
    names = ["dense_macs", "dw_macs"]
    from hwnas.lut.features import FEATURE_NAMES

    cols = [FEATURE_NAMES.index(n) for n in names]
    y = 0.02 + X[:, cols] @ np.array([2e-6, 2e-5])
    return X, y


@pytest.mark.parametrize(
    ("estimator", "xfail"),
    [
        (RidgeLatencyRegressor(), {}),
        (RidgeLatencyRegressor(alpha=0.1, relative=False, log_target=True), {}),
        (BoostedLatencyRegressor(n_estimators=10, random_state=0), GBR_XFAIL),
    ],
    ids=["ridge", "ridge-log", "boosted"],
)
def test_scikit_learn_estimator_contract(estimator, xfail):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(estimator, expected_failed_checks=xfail, on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == []
    assert len(results) > 40


@pytest.mark.parametrize(
    "estimator",
    [RidgeLatencyRegressor(alpha=1e-3), BoostedLatencyRegressor(n_estimators=60, random_state=3)],
    ids=["ridge", "boosted"],
)
def test_json_round_trip_predicts_identically(estimator):
    X, y = block_data()
    model = estimator.fit(X, y)
    text = json.dumps(model.to_json())
    clone = regressor_from_json(json.loads(text))
    assert type(clone) is type(model) and clone.get_params() == model.get_params()
    X_new = X * 1.07 + 3.0  # unseen feature values
    np.testing.assert_allclose(clone.predict(X_new), model.predict(X_new), rtol=0, atol=1e-9)
    assert np.array_equal(clone.predict(X), model.predict(X))


def test_exported_trees_match_scikit_learn():
    X, y = block_data()
    ours = BoostedLatencyRegressor(n_estimators=40, max_depth=3, subsample=0.7, random_state=5)
    ours.fit(X, y)
    reference = GradientBoostingRegressor(
        n_estimators=40,
        learning_rate=0.05,
        max_depth=3,
        min_samples_leaf=2,
        subsample=0.7,
        random_state=5,
    ).fit(X, np.log(y))
    X_new = np.vstack([X, X[::3] * 0.9])
    np.testing.assert_allclose(ours.predict(X_new), np.exp(reference.predict(X_new)), rtol=1e-12)


def test_models_learn_the_block_latencies():
    X, y = block_data()
    rng = np.random.default_rng(0)
    test = rng.permutation(len(y))[:40]
    train = np.setdiff1d(np.arange(len(y)), test)
    ridge = RidgeLatencyRegressor(alpha=1e-6).fit(X[train], y[train])
    assert np.max(np.abs(ridge.predict(X[test]) / y[test] - 1)) < 1e-3  # the target is linear
    boosted = BoostedLatencyRegressor(random_state=0).fit(X[train], y[train])
    assert np.sqrt(np.mean((boosted.predict(X[test]) / y[test] - 1) ** 2)) < 0.25


def test_bad_targets_and_bad_json():
    X, y = block_data()
    with pytest.raises(ValueError, match="positive targets"):
        RidgeLatencyRegressor().fit(X, -y)
    doc = BoostedLatencyRegressor(n_estimators=3).fit(X, y).to_json()
    with pytest.raises(UserError, match="not a hwnas-regressor"):
        regressor_from_json({**doc, "kind": "pickle"})
    with pytest.raises(UserError, match="unknown regressor class"):
        regressor_from_json({**doc, "class": "Pickled"})
    broken = json.loads(json.dumps(doc))
    broken["fitted"]["trees_"][0]["left"] = [5000]
    with pytest.raises(UserError, match=r"tree arrays differ in length|out of range"):
        regressor_from_json(broken)
    with pytest.raises(UserError, match="holds a 'BoostedLatencyRegressor'"):
        RidgeLatencyRegressor.from_json(doc)
