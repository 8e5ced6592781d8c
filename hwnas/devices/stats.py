"""Statistics of raw latency samples (the agent returns samples; the host summarises them)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    """Median and spread of a list of samples, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    min_ms: float
    n: int

    @property
    def spread(self) -> float:
        """p90 / p10: 1.0 is a perfectly steady measurement."""
        return self.p90_ms / self.p10_ms if self.p10_ms > 0 else float("inf")

    def to_dict(self) -> dict:
        return {
            "median_ms": self.median_ms,
            "p10_ms": self.p10_ms,
            "p90_ms": self.p90_ms,
            "mean_ms": self.mean_ms,
            "min_ms": self.min_ms,
            "n": self.n,
        }


def summarize(samples_ms: Sequence[float]) -> LatencyStats:
    """Median, p10, p90 (linear interpolation), mean, min and count of ``samples_ms``."""
    if len(samples_ms) == 0:
        raise ValueError("no samples to summarize")
    a = np.asarray(samples_ms, dtype=float)
    p10, median, p90 = np.percentile(a, [10, 50, 90])
    return LatencyStats(
        float(median), float(p10), float(p90), float(a.mean()), float(a.min()), a.size
    )
