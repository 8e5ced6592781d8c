"""Latency linear in middle channels: per-family fits ``latency = slope * mid + intercept``.

FGA-NAS (Chen et al., IJCNN 2022, Fig. 5) observes that for a fixed input shape, kernel and stride
an inverted bottleneck's single-core CPU latency is close to linear in its number of middle
channels. The slope is then the latency cost of one middle channel (the per-channel cost h_lat of
the Greedy-ADMM knapsack, METHODS.md section 1.3) and the intercept a fixed part of the block.

A *family* is every ``ib`` entry of a LUT that agrees on everything except ``mid`` (input shape,
output channels, kernel, stride, groups, activation, residual). Any LUT works: a measured one
(build-lut times 5 widths per family) or the shipped reference LUTs, whose e1/e3/e6 entries give
3 points per (position, kernel) family. ``r2`` is only defined with 3 or more points.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from hwnas.blocks.specs import IBSpec, parse_key
from hwnas.errors import UserError
from hwnas.lut.schema import LUT

LINEAR_KIND = "hwnas-linear-latency"
_MID = re.compile(r"-mid:\d+")


def family_key(spec: IBSpec) -> str:
    """The spec key without its ``mid`` part: ``ib-in:32x32x16-out:24-k:3-s:1-g:1-act:relu-res:0``."""
    return _MID.sub("", spec.key())


@dataclass(frozen=True)
class FamilyFit:
    """A least-squares line through one family's (mid, latency) points.

    Attributes:
        family: :func:`family_key` of the members.
        mids: middle-channel counts, ascending.
        latency_ms: the entries' latencies at those counts.
        slope_ms_per_channel: fitted latency per middle channel (ms).
        intercept_ms: fitted latency at zero middle channels (ms).
        r2: coefficient of determination (nan with fewer than 3 points or no variance).
        max_rel_err: largest |fit - entry| / entry over the points.
    """

    family: str
    mids: tuple[int, ...]
    latency_ms: tuple[float, ...]
    slope_ms_per_channel: float
    intercept_ms: float
    r2: float
    max_rel_err: float

    def predict_ms(self, mid: float) -> float:
        """Latency of the family member with ``mid`` middle channels (ms, never negative)."""
        return max(0.0, self.slope_ms_per_channel * mid + self.intercept_ms)

    def spec(self, mid: int) -> IBSpec:
        """The member spec with ``mid`` middle channels."""
        base = parse_key(self.family.replace("-g:", f"-mid:{mid}-g:", 1))
        assert isinstance(base, IBSpec)
        return base

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "mids": list(self.mids),
            "latency_ms": list(self.latency_ms),
            "slope_ms_per_channel": self.slope_ms_per_channel,
            "intercept_ms": self.intercept_ms,
            "r2": None if math.isnan(self.r2) else self.r2,
            "max_rel_err": self.max_rel_err,
        }

    @classmethod
    def from_dict(cls, record: dict) -> FamilyFit:
        try:
            r2 = record.get("r2")
            return cls(
                str(record["family"]),
                tuple(int(m) for m in record["mids"]),
                tuple(float(v) for v in record["latency_ms"]),
                float(record["slope_ms_per_channel"]),
                float(record["intercept_ms"]),
                float("nan") if r2 is None else float(r2),
                float(record["max_rel_err"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"malformed linear family fit: {exc!r}") from None


def fit_line(mids: Sequence[float], latency_ms: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares ``(slope, intercept, r2)``; r2 is nan for < 3 points or constant latency."""
    x = np.asarray(mids, float)
    y = np.asarray(latency_ms, float)
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("a line needs at least two distinct middle-channel counts")
    slope, intercept = np.polyfit(x, y, 1)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    ss_res = float(np.sum((slope * x + intercept - y) ** 2))
    r2 = 1.0 - ss_res / ss_tot if x.size >= 3 and ss_tot > 0 else float("nan")
    return float(slope), float(intercept), r2


def fit_families(lut: LUT, min_points: int = 2, precision: Optional[str] = None) -> list[FamilyFit]:
    """Fit every ``ib`` family of ``lut`` with at least ``min_points`` distinct widths."""
    points: dict[str, dict[int, float]] = {}
    want = precision or lut.precision
    for entry in lut.entries:
        if isinstance(entry.spec, IBSpec) and entry.precision == want:
            points.setdefault(family_key(entry.spec), {})[entry.spec.mid] = entry.median_ms
    fits = []
    for family, by_mid in sorted(points.items()):
        if len(by_mid) < max(2, min_points):
            continue
        mids = tuple(sorted(by_mid))
        lat = tuple(by_mid[m] for m in mids)
        slope, intercept, r2 = fit_line(mids, lat)
        fitted = np.asarray(mids, float) * slope + intercept
        rel = np.abs(fitted - np.asarray(lat)) / np.maximum(np.asarray(lat), 1e-9)
        fits.append(FamilyFit(family, mids, lat, slope, intercept, r2, float(rel.max())))
    return fits


def summarize(fits: Iterable[FamilyFit]) -> dict[str, Any]:
    """How linear the LUT is: R^2 quantiles over families with >= 3 points, worst relative error."""
    fits = list(fits)
    r2 = np.array([f.r2 for f in fits if not math.isnan(f.r2)])
    if not fits:
        return {"families": 0}
    out: dict[str, Any] = {
        "families": len(fits),
        "families_with_r2": int(r2.size),
        "max_rel_err_median": float(np.median([f.max_rel_err for f in fits])),
        "max_rel_err_max": float(max(f.max_rel_err for f in fits)),
    }
    if r2.size:
        out.update(
            r2_min=float(r2.min()),
            r2_median=float(np.median(r2)),
            r2_mean=float(r2.mean()),
            share_r2_ge_0_99=float(np.mean(r2 >= 0.99)),
            share_r2_ge_0_95=float(np.mean(r2 >= 0.95)),
        )
    return out


def linear_model_json(fits: Iterable[FamilyFit]) -> dict[str, Any]:
    """The JSON stored in a LUT under ``models["linear"]``."""
    fits = list(fits)
    return {
        "kind": LINEAR_KIND,
        "summary": summarize(fits),
        "families": [f.to_dict() for f in fits],
    }


def fits_from_lut(lut: LUT) -> list[FamilyFit]:
    """The stored fits of ``lut`` (``models["linear"]``), else fitted now from its entries."""
    stored = lut.models.get("linear")
    if isinstance(stored, dict) and stored.get("kind") == LINEAR_KIND:
        return [FamilyFit.from_dict(r) for r in stored.get("families", [])]
    return fit_families(lut)


def linear_price(fits: Iterable[FamilyFit], spec: IBSpec) -> Optional[float]:
    """Latency of ``spec`` from its family's line, or None if its family has no fit."""
    key = family_key(spec)
    for fit in fits:
        if fit.family == key:
            return fit.predict_ms(spec.mid)
    return None
