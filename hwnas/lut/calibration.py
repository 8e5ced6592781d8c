"""End-to-end calibration of a LUT: make block sums predict whole networks on the device.

A sum of separately timed blocks misses what happens between blocks inside one network: per-call
overhead (removed at build time with the null models, :mod:`hwnas.lut.build`), memory-layout
reorders that onnxruntime inserts or removes depending on the neighbours (its NCHWc layout needs
channel counts that are multiples of the SIMD block; FBNet's 24 and 184 are not on AVX-512),
cache reuse and fusion. On a 16-core x86 VM (400 random FBNet networks, fastest-sample latency,
4-fold cross-validation, 300 networks to fit) the plain sum of standalone blocks was within
+-10 % for 11 % of networks, block minus null model for 46-76 %, with a global affine correction
96-97 %.

The calibration fitted here keeps the LUT additive (so expected latency stays differentiable) and
stays close to the measured blocks. With ``S(a)`` the LUT sum of architecture ``a`` and ``x_k(a)``
the part of that sum contributed by entry ``k`` (count x entry latency)::

    latency(a) ~ scale * S(a) + offset_ms + sum_k r_k * x_k(a)

fitted by weighted least squares on the relative error (rows weighted 1 / measured) with a ridge
penalty ``lam * sum_k r_k^2`` pulling each relative correction ``r_k`` toward 0 (the block LUT).
Stored as ``entry_correction[k] = r_k / scale``, a prediction is::

    scale * sum_k count_k * entry_k * (1 + entry_correction[k]) + offset_ms

(Same data: +-5 % share 0.75 with the global affine, 0.90-0.92 with these corrections; +-10 %
0.97-0.98; Kendall tau 0.80 -> 0.85. Leave-one-out picks ``lam``; with few networks it picks the
global affine.)
Specs without an entry (e.g. ib-channel widths between the measured ones) are priced by their
family's linear fit (:mod:`hwnas.lut.linear`) and share one correction per family.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from hwnas.blocks.specs import BlockSpec, IBSpec
from hwnas.errors import UserError
from hwnas.lut.compose import is_identity
from hwnas.lut.linear import FamilyFit, family_key, fits_from_lut, linear_price
from hwnas.lut.schema import LUT

CALIBRATION_KIND = "hwnas-calibration"
LAMBDA_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 1e9)  # 1e9: global affine only
MIN_ARCHS = 8
FIXED_KEY = "fixed"  # correction key of a LUT's fixed part


@dataclass(frozen=True)
class Pricer:
    """Prices block specs from a LUT: its entry, else its family's linear fit.

    Attributes:
        lut: the LUT.
        fits: linear family fits (default: the LUT's stored ones or fitted from its entries).
    """

    lut: LUT
    fits: tuple[FamilyFit, ...] = ()

    @classmethod
    def of(cls, lut: LUT) -> Pricer:
        return cls(lut, tuple(fits_from_lut(lut)))

    def term(self, spec: BlockSpec) -> Optional[tuple[str, float]]:
        """``(correction key, latency ms)`` of one block; None for identities.

        Raises:
            UserError: the LUT has no entry and no linear family for the spec.
        """
        if is_identity(spec) or spec.op == "zero" or self._covered(spec):
            return None
        entry = self.lut.get(spec)
        if entry is not None:
            return spec.key(), entry.median_ms
        if isinstance(spec, IBSpec):
            price = linear_price(self.fits, spec)
            if price is not None:
                return family_key(spec), price
        raise UserError(
            f"LUT {self.lut.device_name!r} has no entry for {spec.key()} (and no linear family "
            f"for it); measure it with hwnas build-lut"
        )

    def _covered(self, spec: BlockSpec) -> bool:
        """Is the spec's cost inside the LUT's ``fixed`` part (reference LUTs)?"""
        return self.lut.fixed is not None and spec.key() in self.lut.fixed.covers

    def terms(self, specs: Iterable[BlockSpec]) -> dict[str, float]:
        """Per correction key, the summed latency (ms) of those blocks in ``specs``.

        A LUT with a ``fixed`` part (derived from end-to-end data) contributes it once, under
        :data:`FIXED_KEY`, when ``specs`` hold any of the blocks it covers.
        """
        specs = list(specs)
        out: dict[str, float] = {}
        if any(self._covered(spec) for spec in specs):
            out[FIXED_KEY] = self.lut.fixed.latency_ms  # type: ignore[union-attr]
        for spec in specs:
            term = self.term(spec)
            if term is not None:
                out[term[0]] = out.get(term[0], 0.0) + term[1]
        return out

    def sum_ms(self, specs: Iterable[BlockSpec]) -> float:
        """The plain (uncalibrated) LUT sum of ``specs``."""
        return float(sum(self.terms(specs).values()))


def fit_calibration(
    pricer: Pricer,
    networks: Sequence[Sequence[BlockSpec]],
    measured_ms: Sequence[float],
    space: str,
    statistic: str = "min",
    lam: Optional[float] = None,
) -> dict[str, Any]:
    """Fit the calibration (module docstring) on measured whole networks.

    Args:
        pricer: prices the blocks.
        networks: per architecture, the specs its network runs (fixed blocks included).
        measured_ms: measured latency of each network, shape ``(len(networks),)``.
        space: the space name (predictors only apply a calibration made for their space).
        statistic: which measured figure ``measured_ms`` is (``min`` or ``median``).
        lam: ridge penalty on the relative corrections (None: the value of
            :data:`LAMBDA_GRID` with the least leave-one-out squared relative error).

    Returns:
        The JSON-ready calibration (``kind``, ``space``, ``scale``, ``offset_ms``,
        ``entry_correction``, ``statistic``, ``lambda``, ``loo_rmspe``, ``n``).
    """
    y = np.asarray(measured_ms, float)
    if len(networks) != y.size:
        raise UserError(f"{len(networks)} networks but {y.size} measurements")
    if y.size < MIN_ARCHS:
        raise UserError(f"a calibration needs at least {MIN_ARCHS} measured networks, got {y.size}")
    terms = [pricer.terms(specs) for specs in networks]
    keys = sorted({k for t in terms for k in t})
    lut_sum = np.array([sum(t.values()) for t in terms])
    X = np.array([[t.get(k, 0.0) for k in keys] for t in terms])
    design = np.column_stack([lut_sum, np.ones_like(lut_sum), X])
    grid = LAMBDA_GRID if lam is None else (lam,)
    fits = [_ridge(design, y, value) for value in grid]
    best = min(range(len(grid)), key=lambda i: fits[i][1])
    coef, loo = fits[best]
    scale, offset, r = float(coef[0]), float(coef[1]), coef[2:]
    if scale <= 0:
        raise UserError("calibration gave a non-positive scale: the LUT sums do not track the data")
    return {
        "kind": CALIBRATION_KIND,
        "space": space,
        "statistic": statistic,
        "scale": scale,
        "offset_ms": offset,
        "entry_correction": {k: float(v / scale) for k, v in zip(keys, r)},
        "lambda": grid[best],
        "loo_rmspe": float(np.sqrt(loo)),
        "n": int(y.size),
    }


def _ridge(design: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Relative-error ridge fit (first two columns unpenalised) and its mean squared LOO error."""
    A = design / y[:, None]
    penalty = np.diag(np.r_[0.0, 0.0, np.full(design.shape[1] - 2, lam)])
    gram = A.T @ A + penalty
    coef = np.linalg.lstsq(gram, A.T @ np.ones_like(y), rcond=None)[0]
    hat = np.einsum("ij,ji->i", A, np.linalg.pinv(gram) @ A.T)
    residual = 1.0 - A @ coef  # (y - fit) / y
    loo = residual / np.maximum(1.0 - hat, 1e-6)
    return coef, float(np.mean(loo**2))


def predict_ms(
    pricer: Pricer, calibration: Optional[Mapping[str, Any]], specs: Iterable[BlockSpec]
) -> float:
    """Calibrated latency (ms) of the network running ``specs``; the plain sum without one."""
    terms = pricer.terms(specs)
    if not calibration:
        return float(sum(terms.values()))
    correction = calibration.get("entry_correction", {})
    total = sum(v * (1.0 + float(correction.get(k, 0.0))) for k, v in terms.items())
    return float(calibration["scale"]) * total + float(calibration["offset_ms"])


def calibrated_entry_ms(lut: LUT, key: str) -> float:
    """One entry's latency with the LUT's calibration scale and correction applied (no offset)."""
    entry = lut.get(key)
    if entry is None:
        raise UserError(f"LUT {lut.device_name!r} has no entry {key}")
    calibration = lut.models.get("calibration") or {}
    correction = float(calibration.get("entry_correction", {}).get(key, 0.0))
    return float(calibration.get("scale", 1.0)) * entry.median_ms * (1.0 + correction)
