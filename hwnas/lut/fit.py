"""Fit an end-to-end latency predictor from measured architectures (``hwnas fit-latency``).

Methods (all additive in the end, so the result is a per-(slot, option) table usable as a
differentiable cost; see ``hwnas.lut.predictor``):

* ``additive``: the classic baseline. One indicator per (slot, option) plus an intercept, ordinary
  least squares with one ridge penalty chosen by leave-one-out error (with 100 rows and 198
  columns plain least squares is underdetermined).
* ``hier`` (default): a hierarchical model. The cost of option o at slot s is
  ``psi(s, o) . (w + v[res(s)]) + u[s, o]``: psi are the block's physical cost features (dense and
  depthwise MACs, depthwise outputs, bytes read/written, weight bytes, layer count;
  ``hwnas.lut.features``), w is shared by every position, v adds a correction per input
  resolution (log2 of h), and u is a free per-(slot, option) deviation. Each group has its own
  ridge penalty chosen by leave-one-out error, so with few rows the model leans on shared
  physics (a 1x1 conv costs about the same per MAC wherever it sits) and with many rows it
  approaches the free additive table. Rows are weighted by 1/y^2 (relative error), which also
  damps the influence of slow outliers. With ``prior`` (another device's or a host LUT), that
  predictor's option latency is one more cost feature, so a measured LUT is calibrated rather
  than replaced.

Nothing in here is tuned to one device: every penalty is chosen from the training rows.

Tried and left out: a gradient-boosted correction of the residuals on architecture-level
features (per-resolution sums, op counts, one-hot). On HW-NAS-Bench's samsung_a50 and gold_6240
it did not help even when fitted on 4,000 rows (gold: +-10 % share 0.993 -> 0.995, Spearman
0.962 -> 0.961; samsung: worse), i.e. what an additive model misses there behaves like noise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Optional

import numpy as np

from hwnas.errors import UserError
from hwnas.lut.features import COST_FEATURE_NAMES, cost_features
from hwnas.lut.group_ridge import fit_group_ridge
from hwnas.lut.predictor import FittedPredictor, LatencyPredictor
from hwnas.lut.spaces import LatencySpace

log = logging.getLogger(__name__)

METHODS = ("hier", "additive")
MIN_ROWS = 5


def fit_latency(
    space: LatencySpace,
    archs: Sequence[Sequence[int]],
    latency_ms: np.ndarray,
    method: str = "hier",
    prior: Optional[LatencyPredictor] = None,
    precision: str = "fp32",
    info: Optional[dict] = None,
) -> FittedPredictor:
    """Fit a predictor on measured architectures.

    Args:
        space: the space of ``archs``.
        archs: option indices per architecture, shape ``(n, space.num_slots)``.
        latency_ms: measured end-to-end latency, shape ``(n,)``, > 0.
        method: ``hier`` or ``additive`` (see module docstring).
        prior: optional predictor whose option latencies become a feature (``hier`` only).
        precision: precision of the measured networks (for byte counts).
        info: extra facts to record in the predictor (file digest, seed...).
    """
    A = np.asarray(archs, dtype=np.int64)
    y = np.asarray(latency_ms, dtype=float)
    if A.ndim != 2 or A.shape[0] != y.shape[0]:
        raise UserError(f"{A.shape[0]} architectures but {y.shape[0]} latencies")
    for arch in A:
        space.check(tuple(arch))
    if y.shape[0] < MIN_ROWS:
        raise UserError(f"need at least {MIN_ROWS} measured architectures, got {y.shape[0]}")
    if not np.all(np.isfinite(y) & (y > 0)):
        raise UserError("measured latencies must be finite and > 0 ms")
    onehot, offsets = _onehot(space, A)
    if method == "additive":
        fit = fit_group_ridge([onehot], y, relative=False)
        psi, n_feat = None, 0
    elif method == "hier":
        psi, names, buckets = _option_features(space, prior, precision)
        n_feat = len(names)
        summed = sum(psi[s][A[:, s]] for s in range(space.num_slots))
        fit = fit_group_ridge([summed[:, :n_feat], summed[:, n_feat:], onehot], y)
    else:
        raise UserError(f"unknown fit method {method!r}; known: {', '.join(METHODS)}")
    coef_c = fit.coef[-onehot.shape[1] :]
    table = []
    for s in range(space.num_slots):
        row = coef_c[offsets[s] : offsets[s] + space.choices[s]].copy()
        if psi is not None:
            row += psi[s] @ fit.coef[: psi[s].shape[1]]
        table.append(tuple(float(v) for v in row))
    details = {
        "n_train": int(y.shape[0]),
        "penalties": list(fit.alphas),
        "loo_rmspe": fit.loo_rmspe,
        "precision": precision,
        **(info or {}),
    }
    if psi is not None:
        details["block_coef_ms"] = _block_coefficients(fit.coef, names, buckets)
        details["prior"] = getattr(prior, "name", None)
    log.info(
        "fit %s on %d rows: LOO RMSPE %.4f, penalties %s", method, len(y), fit.loo_rmspe, fit.alphas
    )
    return FittedPredictor(space, method, float(fit.intercept), tuple(table), details)


def _onehot(space: LatencySpace, A: np.ndarray) -> tuple[np.ndarray, list[int]]:
    offsets = list(np.cumsum((0, *space.choices[:-1])))
    X = np.zeros((A.shape[0], sum(space.choices)))
    for s in range(space.num_slots):
        X[np.arange(A.shape[0]), offsets[s] + A[:, s]] = 1.0
    return X, [int(o) for o in offsets]


def _bucket(h: int) -> int:
    return round(math.log2(max(h, 1)))


def _option_features(
    space: LatencySpace, prior: Optional[LatencyPredictor], precision: str
) -> tuple[list[np.ndarray], list[str], list[int]]:
    """Per slot, a matrix (options x features): global cost features, then one copy per bucket.

    Columns: ``names`` (cost features [+ prior latency]) followed by the same features restricted
    to blocks whose input resolution falls in each bucket of ``buckets``.
    """
    names = [*COST_FEATURE_NAMES, *(["prior_ms"] if prior is not None else [])]
    prior_table = prior.option_table_ms() if prior is not None else None
    if prior_table is not None and tuple(len(r) for r in prior_table) != space.choices:
        raise UserError(f"prior {prior.name} does not match space {space.name!r}")
    buckets = sorted(
        {
            _bucket(sp.h)
            for s in range(space.num_slots)
            for o in range(space.choices[s])
            for sp in space.option_specs(s, o)
        }
    )
    n = len(names)
    psi = []
    for s in range(space.num_slots):
        rows = np.zeros((space.choices[s], n * (1 + len(buckets))))
        for o in range(space.choices[s]):
            for spec in space.option_specs(s, o):
                f = cost_features(spec, precision)
                if prior_table is not None:
                    f = np.append(f, prior_table[s][o] / max(len(space.option_specs(s, o)), 1))
                b = 1 + buckets.index(_bucket(spec.h))
                rows[o, :n] += f
                rows[o, b * n : (b + 1) * n] += f
        psi.append(rows)
    return psi, names, buckets


def _block_coefficients(coef: np.ndarray, names: list[str], buckets: list[int]) -> dict:
    """Readable per-feature coefficients (ms per unit) by resolution bucket (2**bucket pixels)."""
    n = len(names)
    shared = coef[:n]
    out = {"shared": dict(zip(names, map(float, shared)))}
    for i, b in enumerate(buckets, start=1):
        total = shared + coef[i * n : (i + 1) * n]
        out[f"h{2**b}"] = dict(zip(names, map(float, total)))
    return out
