"""PNG plots of a LUT: latency vs middle channels with the fitted lines, predicted vs measured.

matplotlib with the non-interactive Agg backend (works headless). Every function writes one PNG
and returns its path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.lut.linear import FamilyFit


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _short(family: str) -> str:
    """``ib-in:32x32x16-out:24-k:3-s:1-g:1-act:relu-res:0`` -> ``32x32x16>24 k3 s1``."""
    parts = dict(p.split(":", 1) for p in family.split("-")[1:] if ":" in p)
    text = f"{parts.get('in', '?')}>{parts.get('out', '?')} k{parts.get('k', '?')} s{parts.get('s', '?')}"
    return text + (f" g{parts['g']}" if parts.get("g", "1") != "1" else "")


def plot_linear(fits: Sequence[FamilyFit], path: Path, title: str = "") -> Path:
    """Latency vs middle channels per family (points) with the fitted line, one panel each."""
    plt = _pyplot()
    n = max(1, len(fits))
    cols = min(6, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False)
    for ax, fit in zip(axes.flat, fits):
        x = np.asarray(fit.mids, float)
        ax.plot(x, fit.latency_ms, "o", ms=4)
        grid = np.linspace(0, x.max() * 1.05, 50)
        ax.plot(grid, fit.slope_ms_per_channel * grid + fit.intercept_ms, "-", lw=1)
        r2 = "n/a" if math.isnan(fit.r2) else f"{fit.r2:.3f}"
        ax.set_title(f"{_short(fit.family)}\nR²={r2}", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
    for ax in list(axes.flat)[len(fits) :]:
        ax.axis("off")
    if not fits:
        axes.flat[0].text(0.5, 0.5, "no inverted-bottleneck family with 2+ widths", ha="center")
    fig.supxlabel("middle channels")
    fig.supylabel("latency (ms)")
    fig.suptitle(title or "latency vs middle channels (FGA-NAS linear model)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path, plt)


def plot_predicted_vs_measured(
    measured_ms: Sequence[float],
    predicted_ms: dict[str, Sequence[float]],
    path: Path,
    title: str = "",
) -> Path:
    """Scatter of predicted vs measured latency per predictor, with y = x and +-10 % lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5))
    y = np.asarray(measured_ms, float)
    for name, values in predicted_ms.items():
        ax.plot(y, np.asarray(values, float), ".", ms=5, label=name, alpha=0.8)
    lo = 0.9 * min([y.min(), *(min(v) for v in predicted_ms.values())])
    hi = 1.1 * max([y.max(), *(max(v) for v in predicted_ms.values())])
    grid = np.array([lo, hi])
    ax.plot(grid, grid, "k-", lw=1, label="y = x")
    ax.plot(grid, 1.1 * grid, "k:", lw=0.8, label="±10 %")
    ax.plot(grid, 0.9 * grid, "k:", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("measured latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title or "predicted vs measured", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, plt)


def _save(fig: Any, path: Path, plt: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
