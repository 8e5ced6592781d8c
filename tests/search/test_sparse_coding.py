"""ISTA-NAS' sparse coding: FISTA against known LASSO solutions, the Eq. 11 identity
(METHODS.md §4.5), the budgeted support choice against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hwnas.search.sparse_coding import (
    OPS,
    best_choice,
    fista_lasso,
    measurement_matrices,
    support_terms,
)


def _soft(x: np.ndarray, lam: float) -> np.ndarray:
    return np.sign(x) * np.maximum(np.abs(x) - lam, 0.0)


def test_fista_matches_the_closed_form_of_an_orthogonal_design():
    """A^T A = I: the LASSO decouples and z* = soft(A^T b, lam) exactly."""
    rng = np.random.default_rng(0)
    A = np.linalg.qr(rng.standard_normal((3, 12, 12)))[0]
    assert np.allclose(np.einsum("gmn,gmk->gnk", A, A), np.eye(12))
    b = rng.standard_normal((3, 12))
    lam = 0.5
    z, steps = fista_lasso(A, b, lam)
    expected = _soft(np.einsum("gmn,gm->gn", A, b), lam)
    assert (expected == 0).any() and (expected != 0).any()  # the threshold bites
    np.testing.assert_allclose(z, expected, atol=1e-12)
    assert steps < 100


def test_fista_meets_the_lasso_optimality_conditions_in_the_ista_nas_regime():
    """m = 7 rows, up to 35 columns, lam = 1e-5 against b ~ 1e-3 (METHODS.md §4.2): the answer
    satisfies the KKT conditions, is at most m-sparse, and a warm start from it costs nothing."""
    rng = np.random.default_rng(1)
    A = measurement_matrices(rng, 7)
    b = 1e-3 * rng.standard_normal((8, 7))
    lam = 1e-5
    z, steps = fista_lasso(A, b, lam)
    assert steps < 20_000
    correlation = np.einsum("gmn,gm->gn", A, b - np.einsum("gmn,gn->gm", A, z))
    on = z != 0
    assert np.abs(correlation).max() <= lam * (1 + 1e-6)
    np.testing.assert_allclose(correlation[on], lam * np.sign(z[on]), rtol=1e-6)
    assert ((z != 0).sum(axis=1) <= 7).all()
    assert not z[[0, 4], 2 * OPS :].any()  # the padding of the 2-input nodes stays zero

    def objective(v: np.ndarray) -> float:
        return 0.5 * float(((A[3] @ v - b[3]) ** 2).sum()) + lam * float(np.abs(v).sum())

    for _ in range(20):  # no nearby point does better
        assert objective(z[3]) <= objective(z[3] + 1e-6 * rng.standard_normal(35))
    again, steps = fista_lasso(A, b, lam, z0=z)
    assert steps == 0 and np.array_equal(again, z)


def test_fista_is_deterministic_and_warm_start_independent():
    rng = np.random.default_rng(2)
    A = measurement_matrices(rng, 7)
    b = 1e-3 * rng.standard_normal((8, 7))
    cold, _ = fista_lasso(A, b, 1e-5)
    assert np.array_equal(cold, fista_lasso(A, b, 1e-5)[0])
    warm, _ = fista_lasso(A, b, 1e-5, z0=fista_lasso(A, b + 1e-4, 1e-5)[0])
    np.testing.assert_allclose(warm, cold, atol=1e-12)


@pytest.mark.parametrize("node", range(8))
def test_effective_weights_equal_z_on_its_support(node):
    """METHODS.md §4.5: for an s-sparse z and b = A z, b^T A_S - z_S^T E_SS = z_S (exactly)."""
    rng = np.random.default_rng(node)
    A = measurement_matrices(rng, 7)[node]
    n = (node % 4 + 2) * OPS
    z = np.zeros(A.shape[1])
    support = rng.choice(n, size=2, replace=False)
    z[support] = rng.standard_normal(2)
    A_S, bias = support_terms(A, z, support)
    np.testing.assert_allclose((A @ z) @ A_S - bias, z[support], rtol=1e-12, atol=1e-15)
    assert not np.allclose((A @ z) @ A_S, z[support])  # the E term is what makes it exact


def _brute_force(value, cost, room):
    best, arg = -np.inf, None
    for combo in itertools.product(*(range(value.shape[1]) for _ in range(len(value)))):
        idx = (np.arange(len(value)), np.array(combo))
        if np.all(cost[:, idx[0], idx[1]].sum(axis=1) <= room) and value[idx].sum() > best:
            best, arg = value[idx].sum(), np.array(combo)
    return best, arg


@pytest.mark.parametrize("seed", range(6))
def test_best_choice_is_the_brute_force_optimum(seed):
    rng = np.random.default_rng(seed)
    value = np.round(rng.random((4, 6)), 1)  # ties on purpose
    cost = rng.random((2, 4, 6))
    room = cost.min(axis=2).sum(axis=1) + rng.uniform(0.2, 1.5, size=2)
    choice, exhaustive = best_choice(value, cost, room)
    best, _ = _brute_force(value, cost, room)
    assert exhaustive and choice is not None
    assert value[np.arange(4), choice].sum() == pytest.approx(best)
    assert np.all(cost[:, np.arange(4), choice].sum(axis=1) <= room + 1e-12)


def test_best_choice_says_when_nothing_fits_or_the_cap_is_reached():
    rng = np.random.default_rng(7)
    value, cost = rng.random((5, 8)), rng.random((1, 5, 8))
    assert best_choice(value, cost, np.array([cost.min(axis=2).sum() - 1e-3])) == (None, True)
    room = np.array([cost.min(axis=2).sum() + 0.5])
    full, exhaustive = best_choice(value, cost, room)
    assert exhaustive
    capped, exhaustive = best_choice(value, cost, room, max_visits=3)
    assert not exhaustive
    if capped is not None:
        assert value[np.arange(5), capped].sum() <= value[np.arange(5), full].sum()
    held = value.copy()
    held[0, 1:] = -np.inf  # group 0 may only take option 0
    choice, _ = best_choice(held, cost, room)
    assert choice[0] == 0
