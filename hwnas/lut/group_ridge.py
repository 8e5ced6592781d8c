"""Weighted ridge regression with one penalty per column group, tuned by leave-one-out error.

Used by ``hwnas.lut.fit``: a few shared block-feature coefficients (weak penalty) plus many
per-(slot, option) deviations (strong penalty) make a hierarchical model that leans on physics
when data are scarce and on the data when they are plentiful. The penalties are chosen by
coordinate search over a log grid, minimising the exact leave-one-out RMSPE of the weighted ridge
fit (closed form through the hat matrix, Allen 1974 / Golub et al. 1979), so nothing is tuned by
hand per device.

Model: ``t_i ~ b + sum_j z_ij beta_j`` with rows weighted by ``omega_i`` and penalty
``sum_g alpha_g |beta_g|^2`` on standardised columns ``z``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_GRID = tuple(float(a) for a in np.logspace(-6, 6, 13))


@dataclass(frozen=True)
class GroupRidgeFit:
    """A fitted model on the original (unstandardised) columns.

    Attributes:
        coef: shape ``(p,)``, one coefficient per column of the concatenated groups.
        intercept: the constant term.
        alphas: chosen penalty per group (on standardised columns, normalised weights).
        loo_rmspe: leave-one-out root mean squared relative error at the chosen penalties.
    """

    coef: np.ndarray
    intercept: float
    alphas: tuple[float, ...]
    loo_rmspe: float

    def predict(self, X: np.ndarray) -> np.ndarray:
        return X @ self.coef + self.intercept


def fit_group_ridge(
    groups: Sequence[np.ndarray],
    y: np.ndarray,
    relative: bool = True,
    grid: Sequence[float] = DEFAULT_GRID,
    passes: int = 3,
) -> GroupRidgeFit:
    """Fit ``y`` on the column groups with LOO-tuned per-group penalties.

    Args:
        groups: matrices of shape ``(n, p_g)``, one per penalty group.
        y: targets, shape ``(n,)``; positive when ``relative``.
        relative: weight rows by 1/y^2 (minimise relative error).
        grid: candidate penalties for each group.
        passes: rounds of coordinate search over the groups.
    """
    X = np.concatenate(groups, axis=1)
    sizes = [g.shape[1] for g in groups]
    weights = 1.0 / y**2 if relative else np.ones_like(y)
    weights = weights / weights.sum()
    mean = weights @ X
    scale = np.sqrt(weights @ (X - mean) ** 2)
    scale = np.where(scale > 1e-12 * (np.abs(mean) + 1), scale, np.inf)  # constant columns drop out
    Z = (X - mean) / scale
    y_mean = float(weights @ y)
    root = np.sqrt(weights)
    Zw, tw = Z * root[:, None], (y - y_mean) * root

    def loo(alphas: tuple[float, ...]) -> float:
        penalty = np.repeat(np.asarray(alphas, float), sizes)
        beta, leverage = _solve(Zw, tw, penalty)
        residual = tw - Zw @ beta
        denominator = np.maximum(1.0 - leverage - weights, 1e-9)
        loo_residual = residual / denominator / root
        return float(np.sqrt(np.mean((loo_residual / y) ** 2)))

    alphas = [float(np.median(grid))] * len(groups)
    best = loo(tuple(alphas))
    for _ in range(passes):
        changed = False
        for g in range(len(groups)):
            for a in grid:
                trial = (*alphas[:g], float(a), *alphas[g + 1 :])
                score = loo(trial)
                if score < best - 1e-12:
                    best, alphas, changed = score, list(trial), True
        if not changed:
            break
    penalty = np.repeat(np.asarray(alphas, float), sizes)
    beta, _ = _solve(Zw, tw, penalty)
    coef = beta / scale
    return GroupRidgeFit(coef, y_mean - float(mean @ coef), tuple(alphas), best)


def _solve(Zw: np.ndarray, tw: np.ndarray, penalty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ridge coefficients and hat-matrix diagonal, in primal or dual form, whichever is smaller."""
    n, p = Zw.shape
    if p <= n:
        gram = Zw.T @ Zw + np.diag(penalty)
        inverse_zt = np.linalg.solve(gram, Zw.T)
        return inverse_zt @ tw, np.einsum("ij,ji->i", Zw, inverse_zt)
    scaled = Zw / np.sqrt(penalty)
    kernel = scaled @ scaled.T
    inverse = np.linalg.inv(kernel + np.eye(n))
    beta = (scaled.T @ (inverse @ tw)) / np.sqrt(penalty)
    hat = kernel @ inverse
    return beta, np.diag(hat).copy()
