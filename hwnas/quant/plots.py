"""Plots of a HAQ run: bitwidth per layer, and accuracy vs cost (latency or size) of the
policies tried."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hwnas.graph.qparams import FLOAT_BITS, LayerBits


def plot_bits(path: Path, names: Sequence[str], policy: Sequence[LayerBits], title: str) -> Path:
    """Bar chart: weight and activation bits per layer (float layers drawn as 'fp32' bars)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = range(len(names))
    shown_w = [10 if b.w_bits == FLOAT_BITS else b.w_bits for b in policy]
    shown_a = [10 if b.a_bits == FLOAT_BITS else b.a_bits for b in policy]
    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(names)), 3.2))
    colors = ["#999999" if b.is_float else "#1f77b4" for b in policy]
    ax.bar([x - 0.2 for x in xs], shown_w, width=0.4, color=colors, label="weight bits")
    ax.bar(
        [x + 0.2 for x in xs], shown_a, width=0.4, color=colors, alpha=0.5, label="activation bits"
    )
    ax.set_yticks([2, 4, 6, 8, 10], ["2", "4", "6", "8", "fp32"])
    ax.set_xlabel("layer (network order)")
    ax.set_ylabel("bits")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_weight_bits(path: Path, names: Sequence[str], w_bits: Sequence[int], title: str) -> Path:
    """Bar chart of a size policy: weight bits per layer (activations stay float)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6, 0.18 * len(names)), 3.2))
    shown = [10 if b == FLOAT_BITS else b for b in w_bits]
    ax.bar(range(len(names)), shown, color="#1f77b4", label="weight bits")
    ax.set_yticks([2, 4, 6, 8, 10], ["2", "4", "6", "8", "fp32"])
    ax.set_xlabel("layer (network order)")
    ax.set_ylabel("bits")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_policies(
    path: Path,
    history: Sequence[dict],
    budget_ms: float,
    final: dict | None,
    float_point: tuple[float, float] | None,
    metric: str = "latency_ms",
) -> Path:
    """Scatter of (cost, validation accuracy) of every episode's policy.

    ``metric`` is the history key of the cost (``latency_ms``, or ``size_bytes`` plotted in kB);
    ``budget_ms``, ``final[metric]`` and ``float_point[0]`` are in the same unit as the history.
    """
    scale = 1e-3 if metric == "size_bytes" else 1.0
    xlabel = "priced weight size (kB)" if metric == "size_bytes" else "latency (ms)"
    how = "priced" if metric == "size_bytes" else "measured"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.scatter(
        [scale * h[metric] for h in history],
        [h["accuracy"] for h in history],
        c=[h["episode"] for h in history],
        cmap="viridis",
        s=18,
        label="episodes",
    )
    ax.axvline(scale * budget_ms, color="red", linestyle="--", linewidth=1, label="budget")
    if float_point is not None:
        ax.scatter(
            [scale * float_point[0]],
            [float_point[1]],
            marker="s",
            color="black",
            label=f"fp32 (as trained, {how})",
        )
    if final is not None:
        ax.scatter(
            [scale * final[metric]],
            [final["accuracy"]],
            marker="*",
            s=120,
            color="orange",
            label=f"chosen ({how})",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel("val accuracy (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
