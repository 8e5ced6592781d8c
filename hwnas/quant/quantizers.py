"""Fake quantizers with straight-through gradients, and HAQ's KL-J clipping threshold.

Linear quantization as in HAQ (Wang et al., CVPR 2019, ``mit-han-lab/haq``
``lib/utils/quantize_utils.py``, re-described, not copied): round to a uniform grid in the forward
pass, pass the gradient straight through the rounding (STE, Bengio et al. 2013). Two grids, the
ones :mod:`hwnas.graph.qparams` defines and the exporters write:

* weights: symmetric, per output channel, ``scale_c = clip_ratio * max|w_c| / (2**(b-1) - 1)``;
  the scale follows the weights during fine-tuning; ``clip_ratio`` is fixed at calibration;
* activations: asymmetric, per tensor, over a trainable range [lo, hi] (HAQ trains its activation
  clip too) that always contains 0, on the unsigned grid ``[0, 2**b - 1]``.

Calibration of the clip (HAQ): for b >= 5 the clip is max|x|; for b < 5 it minimises the
Jeffreys (symmetric KL) divergence between the histogram of |x| and its b-bit quantization, which
gives a threshold <= max|x| (tested).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from hwnas.graph.qparams import MIN_RANGE, weight_qmax


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``round(x)`` (half to even) in the forward pass, identity gradient in the backward pass."""
    return x + (torch.round(x) - x).detach()


def fake_quant_weight(weight: torch.Tensor, bits: int, clip_ratio: float = 1.0) -> torch.Tensor:
    """Symmetric per-output-channel fake quantization of a conv or linear weight (any rank >= 2).

    Args:
        weight: (O, ...) float tensor.
        bits: 2..8.
        clip_ratio: fraction of max|w_c| that maps to the largest integer (from calibration).

    Returns:
        The weight on the grid, same shape; gradients pass straight through inside the clip.
    """
    qmax = weight_qmax(bits)
    flat = weight.detach().abs().reshape(weight.shape[0], -1)
    scale = (flat.amax(dim=1) * clip_ratio).clamp_min(MIN_RANGE).float() / qmax
    scale = scale.reshape((-1,) + (1,) * (weight.dim() - 1))
    return torch.clamp(round_ste(weight / scale), -qmax, qmax) * scale


def fake_quant_act(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """Asymmetric per-tensor fake quantization on the grid of :func:`hwnas.graph.qparams.act_qparams`.

    ``lo`` and ``hi`` are 0-d tensors (trainable or not); gradients reach them through the scale
    and the zero point (LSQ-style, Esser et al. ICLR 2020) and reach ``x`` inside the range.
    """
    qmax = 2**bits - 1
    scale = act_scale(lo, hi, bits)
    lo = torch.clamp(lo, max=0.0)
    zero_point = torch.clamp(round_ste(-lo / scale), 0, qmax)
    q = torch.clamp(round_ste(x / scale) + zero_point, 0, qmax)
    return (q - zero_point) * scale


def act_scale(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> torch.Tensor:
    """Step of the asymmetric grid over [min(lo, 0), max(hi, 0)] (as ``plan.act_qparams``)."""
    span = torch.clamp(hi, min=0.0) - torch.clamp(lo, max=0.0)
    return torch.clamp(span, min=MIN_RANGE) / (2**bits - 1)


class ActQuantizer(nn.Module):
    """A per-tensor activation quantizer with a trainable range [lo, hi] and fixed ``bits``."""

    def __init__(self, bits: int, lo: float = -1.0, hi: float = 1.0) -> None:
        super().__init__()
        self.bits = bits
        self.lo = nn.Parameter(torch.tensor(float(lo)))
        self.hi = nn.Parameter(torch.tensor(float(hi)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quant_act(x, self.lo, self.hi, self.bits)

    def scale(self) -> torch.Tensor:
        """The grid step (0-d tensor, differentiable in lo and hi)."""
        return act_scale(self.lo, self.hi, self.bits)

    def set_range(self, lo: float, hi: float) -> None:
        """Set the range (``lo <= 0 <= hi`` is enforced)."""
        with torch.no_grad():
            self.lo.fill_(min(float(lo), 0.0))
            self.hi.fill_(max(float(hi), 0.0))

    def extra_repr(self) -> str:
        return f"bits={self.bits}, lo={self.lo.item():.4g}, hi={self.hi.item():.4g}"


def kl_clip_threshold(values: np.ndarray, bits: int, symmetric: bool = True) -> float:
    """HAQ's calibrated clip: the threshold on |x| whose b-bit histogram is closest (KL-J).

    Args:
        values: samples (any shape).
        bits: bitwidth of the grid.
        symmetric: True for a signed grid (2**(b-1) - 1 positive levels), False for a one-sided
            grid (2**b - 1 levels, e.g. after a ReLU).

    Returns:
        The threshold, in (0, max|x|].
    """
    mags = np.abs(np.asarray(values, dtype=np.float64).ravel())
    peak = float(mags.max()) if mags.size else 0.0
    if peak <= 0.0:
        return MIN_RANGE
    levels = weight_qmax(bits) if symmetric else 2**bits - 1
    n_bins = max(int(math.sqrt(mags.size)), 2 * levels)  # HAQ: 'sqrt' bins
    hist, edges = np.histogram(mags, bins=n_bins, range=(0.0, peak))
    best_i, best_div = n_bins, math.inf
    for i in range(levels, n_bins + 1):
        p = hist[:i].astype(np.float64)
        p[-1] += hist[i:].sum()
        q = _quantized_histogram(hist[:i].astype(np.float64), levels)
        div = _jeffreys(p, q)
        if div < best_div:
            best_i, best_div = i, div
    return float(edges[best_i])


def _quantized_histogram(p: np.ndarray, levels: int) -> np.ndarray:
    """Merge ``p`` into ``levels`` chunks and spread each chunk evenly over its non-empty bins."""
    q = np.zeros_like(p)
    for chunk in np.array_split(np.arange(p.size), levels):
        nonzero = p[chunk] > 0
        if nonzero.any():
            q[chunk[nonzero]] = p[chunk].sum() / nonzero.sum()
    return q


def _jeffreys(p: np.ndarray, q: np.ndarray, eps: float = 1e-10) -> float:
    p = p / max(p.sum(), eps) + eps
    q = q / max(q.sum(), eps) + eps
    return float(np.sum((p - q) * np.log(p / q)))
