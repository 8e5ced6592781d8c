"""Group ridge: the closed-form leave-one-out error equals refitting without each row."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.lut.group_ridge import fit_group_ridge


def brute_force_loo(groups, y, alpha, relative):
    """Drop each row from the weighted objective (other weights and standardisation fixed)."""
    X = np.concatenate(groups, axis=1)
    w = 1 / y**2 if relative else np.ones_like(y)
    w = w / w.sum()
    mean = w @ X
    Z = (X - mean) / np.sqrt(w @ (X - mean) ** 2)
    D = np.c_[np.ones(len(y)), Z]  # unpenalised intercept, penalised standardised columns
    penalty = np.diag([0.0] + [alpha] * Z.shape[1])
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        Dk, wk = D[keep], w[keep]
        theta = np.linalg.solve(Dk.T @ (Dk * wk[:, None]) + penalty, Dk.T @ (wk * y[keep]))
        errors.append((D[i] @ theta - y[i]) / y[i])
    return float(np.sqrt(np.mean(np.square(errors))))


@pytest.mark.parametrize("relative", [True, False])
@pytest.mark.parametrize("n", [12, 40])  # dual (n < p) and primal (n > p) forms
def test_closed_form_loo_equals_refitting(relative, n):
    rng = np.random.default_rng(n)
    groups = [rng.normal(size=(n, 3)), rng.normal(size=(n, 20))]
    y = 10 + groups[0] @ [1.0, -0.5, 0.2] + 0.3 * rng.normal(size=n)
    fit = fit_group_ridge(groups, y, relative, grid=[0.7], passes=0)
    assert fit.alphas == (0.7, 0.7)
    assert fit.loo_rmspe == pytest.approx(brute_force_loo(groups, y, 0.7, relative), rel=1e-8)


def test_penalties_follow_the_data():
    rng = np.random.default_rng(1)
    n = 200
    useful, noise = rng.normal(size=(n, 4)), rng.normal(size=(n, 30))
    y = 50 + useful @ [3.0, -2.0, 1.0, 0.5] + 0.1 * rng.normal(size=n)
    fit = fit_group_ridge([useful, noise], y)
    assert fit.alphas[0] < fit.alphas[1]  # the informative group is penalised less
    assert np.max(np.abs(fit.coef[:4] - [3.0, -2.0, 1.0, 0.5])) < 0.05
    assert np.max(np.abs(fit.coef[4:])) < 0.05
    assert fit.loo_rmspe < 0.01


def test_constant_columns_get_zero_weight():
    rng = np.random.default_rng(2)
    X = np.c_[rng.normal(size=(30, 2)), np.full(30, 5.0)]
    y = 4 + X[:, 0]
    fit = fit_group_ridge([X], y, grid=[1e-6], passes=0)
    assert fit.coef[2] == 0.0
    np.testing.assert_allclose(fit.predict(X), y, atol=1e-4)
