"""Plots of a search run (PNG, matplotlib's Agg backend), after FGA-NAS Fig. 4 (Chen et al. 2022).

* ``disparity.png``: relative disparity ``(c_t - r) / r`` of every constraint over the steps
  (Fig. 4 mid), where ``c_t`` is the cost of the architecture the parameters encode at step t.
* ``alpha.png``: the distribution of the architecture parameters at several steps (Fig. 4 left).
* ``accuracy_latency.png``: validation accuracy against cost of every architecture the method
  tried, and the final network's test accuracy, with the budget marked.
* ``derivation.png``: cost / budget of the method's own architecture, after repair and after
  fill, per constraint (:mod:`hwnas.search.finalize`): what the method did and what was added.
* ``lagrangian.png`` (methods with a Lagrangian, DCA-NAS): expected cost / search bound and the
  multiplier per constraint over the steps: does the dual update settle?
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

LABELS = {"latency_ms": "latency (ms)", "flops": "FLOPs (M MACs)", "params": "params (M)"}
SCALE = {"latency_ms": 1.0, "flops": 1e-6, "params": 1e-6}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_disparity(history: list[dict], path: Path) -> Optional[Path]:
    """Relative disparity per constraint over steps; None if the history has none."""
    keys = sorted({k for row in history for k in row if k.startswith("disparity_")})
    if not keys:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        rows = [r for r in history if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows], label=key[len("disparity_") :])
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("(c_t - r) / r")
    ax.set_title("constraint disparity of the current architecture")
    ax.legend()
    return _save(fig, path)


def plot_alpha(snapshots: list[dict], path: Path) -> Optional[Path]:
    """Histograms of the architecture parameters at each snapshot; None without snapshots."""
    if not snapshots:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = np.concatenate([np.asarray(s["alpha"]) for s in snapshots])
    bins = np.linspace(min(values.min(), 0.0), max(values.max(), 1e-6), 40)
    colors = plt.cm.viridis(np.linspace(0, 1, len(snapshots)))
    for snap, color in zip(snapshots, colors):
        ax.hist(
            snap["alpha"], bins=bins, histtype="step", color=color, label=f"step {snap['step']}"
        )
    ax.set_yscale("log")
    ax.set_xlabel("architecture parameter alpha")
    ax.set_ylabel("count")
    ax.set_title("distribution of architecture parameters")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_accuracy_cost(
    tried: list[dict], final: Optional[dict], metric: str, limit: Optional[float], path: Path
) -> Optional[Path]:
    """Accuracy vs ``metric`` of tried architectures and the final network."""
    points = [t for t in tried if t.get("val_accuracy") is not None and metric in t["costs"]]
    if not points and final is None:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    scale = SCALE[metric]
    if points:
        ax.scatter(
            [t["costs"][metric] * scale for t in points],
            [t["val_accuracy"] for t in points],
            s=18,
            label="tried (val, search proxy)",
        )
    if final is not None:
        ax.scatter(
            [final["cost"] * scale],
            [final["accuracy"]],
            marker="*",
            s=160,
            color="red",
            label="final network (test)",
        )
    if limit is not None:
        ax.axvline(limit * scale, color="black", linestyle="--", linewidth=0.8, label="budget")
    ax.set_xlabel(LABELS[metric])
    ax.set_ylabel("accuracy")
    ax.set_title("accuracy vs cost of what was tried")
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_derivation(record: dict, path: Path) -> Optional[Path]:
    """Cost / budget per constraint of the own, repaired and filled architectures."""
    metrics = list(record["own"]["of_budget"])
    if not metrics:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 1.2 + 0.8 * len(metrics)))
    stages = (("own", "method's own"), ("repair", "after repair"), ("fill", "after fill"))
    height = 0.8 / len(stages)
    for s, (key, label) in enumerate(stages):
        ratios = [record[key]["of_budget"][m] for m in metrics]
        ys = np.arange(len(metrics)) + (s - 1) * height
        ax.barh(ys, ratios, height=height, label=label)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=0.8)
    ax.axvspan(0.9, 1.0, color="green", alpha=0.08)
    ax.set_yticks(np.arange(len(metrics)), [LABELS.get(m, m) for m in metrics])
    ax.set_xlabel("cost / budget (dashed: the budget; shaded: [0.9, 1])")
    steps = (len(record["repair"]["steps"]), len(record["fill"]["steps"]))
    ax.set_title(f"derivation: {steps[0]} repair step(s), {steps[1]} fill step(s)")
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lagrangian(history: list[dict], path: Path) -> Optional[Path]:
    """DCA-NAS' Lagrangian per constraint over the steps: expected cost / K' (top) and the
    multiplier lambda (bottom); None if the history has no ``lambda_*`` columns."""
    metrics = sorted(
        {k[len("lambda_") :] for row in history for k in row if k.startswith("lambda_")}
    )
    if not metrics:
        return None
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 5), sharex=True)
    for m in metrics:
        rows = [r for r in history if f"lambda_{m}" in r]
        steps = [r["step"] for r in rows]
        top.plot(steps, [1.0 + r[f"violation_{m}"] for r in rows], label=m)
        bottom.plot(steps, [r[f"lambda_{m}"] for r in rows], label=m)
    top.axhline(1.0, color="black", linewidth=0.8)
    for band in (0.97, 1.03):
        top.axhline(band, color="gray", linestyle=":", linewidth=0.8)
    top.set_ylabel("expected cost / K'")
    top.set_title("Lagrangian: expected cost vs search bound, and multiplier")
    top.legend(fontsize=8)
    bottom.axhline(0.0, color="black", linewidth=0.8)
    bottom.set_xlabel("step")
    bottom.set_ylabel("lambda")
    return _save(fig, path)
