"""Accuracy figures of a latency predictor against measured latencies.

The figures nn-Meter (Zhang et al., MobiSys 2021) judges latency predictors by, plus the rank
correlations a search cares about (it only needs the order of candidates right):

* share within +-5 % and +-10 %: fraction of architectures with |pred - meas| / meas <= tol;
* RMSPE: root mean squared percentage error, sqrt(mean(((pred - meas) / meas)^2)), as a fraction;
* Kendall tau-b and Spearman rho between predicted and measured latencies.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike

from hwnas.errors import UserError


@dataclass(frozen=True)
class LatencyAccuracy:
    """Agreement of ``n`` predictions with measurements (fractions, not percent)."""

    n: int
    within_5pct: float
    within_10pct: float
    rmspe: float
    mean_abs_pct_error: float
    kendall_tau: float
    spearman: float

    def to_dict(self) -> dict:
        return asdict(self)


def _pair(predicted_ms: ArrayLike, measured_ms: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(predicted_ms, dtype=float).ravel()
    m = np.asarray(measured_ms, dtype=float).ravel()
    if p.shape != m.shape:
        raise UserError(f"{p.size} predictions but {m.size} measurements")
    if p.size == 0:
        raise UserError("no measurements to compare with")
    if not (np.all(np.isfinite(m)) and np.all(m > 0)):
        raise UserError("measured latencies must be finite and > 0 ms")
    return p, m


def relative_errors(predicted_ms: ArrayLike, measured_ms: ArrayLike) -> np.ndarray:
    """(pred - meas) / meas per architecture."""
    p, m = _pair(predicted_ms, measured_ms)
    return (p - m) / m


def within_share(predicted_ms: ArrayLike, measured_ms: ArrayLike, tolerance: float) -> float:
    """Fraction of predictions within ``tolerance`` (0.1 = +-10 %) of the measurement."""
    return float(np.mean(np.abs(relative_errors(predicted_ms, measured_ms)) <= tolerance))


def rmspe(predicted_ms: ArrayLike, measured_ms: ArrayLike) -> float:
    """Root mean squared percentage error as a fraction (0.05 = 5 %)."""
    return float(np.sqrt(np.mean(relative_errors(predicted_ms, measured_ms) ** 2)))


def kendall_tau(predicted_ms: ArrayLike, measured_ms: ArrayLike) -> float:
    """Kendall tau-b rank correlation (nan for fewer than 2 points or constant input)."""
    from scipy.stats import kendalltau

    p, m = _pair(predicted_ms, measured_ms)
    if p.size < 2:
        return float("nan")
    return float(kendalltau(p, m).statistic)


def spearman(predicted_ms: ArrayLike, measured_ms: ArrayLike) -> float:
    """Spearman rank correlation (nan for fewer than 2 points or constant input)."""
    from scipy.stats import spearmanr

    p, m = _pair(predicted_ms, measured_ms)
    if p.size < 2:
        return float("nan")
    return float(spearmanr(p, m).statistic)


def accuracy(predicted_ms: ArrayLike, measured_ms: ArrayLike) -> LatencyAccuracy:
    """All figures at once."""
    rel = relative_errors(predicted_ms, measured_ms)
    with np.errstate(invalid="ignore"):
        return LatencyAccuracy(
            n=int(rel.size),
            within_5pct=float(np.mean(np.abs(rel) <= 0.05)),
            within_10pct=float(np.mean(np.abs(rel) <= 0.10)),
            rmspe=float(np.sqrt(np.mean(rel**2))),
            mean_abs_pct_error=float(np.mean(np.abs(rel))),
            kendall_tau=kendall_tau(predicted_ms, measured_ms),
            spearman=spearman(predicted_ms, measured_ms),
        )
