"""Post-training calibration of a :class:`~hwnas.quant.qnet.QuantNet` on real data.

HAQ (Wang et al., CVPR 2019) calibrates on one batch before fine-tuning: the activation clip is
max|x| for b >= 5 bits and the KL-J-optimal threshold for b < 5; weights likewise (here as a clip
ratio per layer, since the weight scale follows the weights during fine-tuning). Our activation
grids are asymmetric, so the range is [min x, max x] for b >= 5, and for b < 5 both ends are
clipped to the KL-J threshold of |x|.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import numpy as np
import torch

from hwnas.graph.nodes import Graph
from hwnas.graph.qparams import LayerBits, QuantState
from hwnas.quant.qnet import QuantNet, _key
from hwnas.quant.quantizers import kl_clip_threshold

logger = logging.getLogger(__name__)

KL_BITS_BELOW = 5  # HAQ: KL-J clipping for b < 5, max|x| otherwise
KL_MAX_SAMPLES = 200_000
CALIBRATION_BATCH = 4  # noise images that calibrate int8_state


@torch.no_grad()
def calibrate(net: QuantNet, batches: Iterable[torch.Tensor], seed: int = 0) -> QuantNet:
    """Set every activation range and weight clip ratio of ``net`` from ``batches``.

    Activations are observed in a float pass (activation quantizers off, weights quantized), so
    every range sees the distribution its tensor really has.

    Args:
        net: the model; modified in place.
        batches: input batches (N, C, H, W) float32, e.g. one or a few batches of the train split.
        seed: seeds the subsampling of large tensors for the KL-J search.

    Returns:
        ``net`` (for chaining).
    """
    net.eval()
    device = next(
        net.parameters(), torch.empty(0)
    ).device  # parameter-free nets (pool, identity): CPU
    rng = np.random.default_rng(seed)
    for layer in net.graph.layers:
        bits = net.policy.get(layer.name)
        if bits is not None and not bits.is_float and bits.w_bits < KL_BITS_BELOW:
            w = net.weights[_key(layer.name)].detach().cpu().numpy()
            net.clip_ratios[layer.name] = _weight_clip_ratio(w, bits.w_bits)
    saved = net.quantizers
    net.quantizers = torch.nn.ModuleDict()  # float activations while observing
    observed: dict[str, list[torch.Tensor]] = {}
    try:
        n_batches = 0
        for x in batches:
            net(x.to(device), observe=observed)
            n_batches += 1
    finally:
        net.quantizers = saved
    if n_batches == 0:
        raise ValueError("calibration needs at least one batch")
    for tensor, bits in net.plan.bits.items():
        if tensor not in observed:  # cannot happen for a well-formed plan
            raise ValueError(f"tensor {tensor} was never observed")
        values = torch.cat([v.reshape(-1) for v in observed[tensor]]).cpu().numpy()
        lo, hi = _act_range(values, bits, rng)
        net.quantizers[_key(tensor)].set_range(lo, hi)
        logger.debug("calibrated %s at %d bits: [%.4g, %.4g]", tensor, bits, lo, hi)
    return net


def _weight_clip_ratio(weight: np.ndarray, w_bits: int) -> float:
    """HAQ's weight clip below ``KL_BITS_BELOW`` bits, as a ratio of max|w| (1.0 otherwise)."""
    peak = float(np.abs(weight).max())
    if w_bits >= KL_BITS_BELOW or peak == 0:
        return 1.0
    return kl_clip_threshold(weight, w_bits) / peak


def _act_range(values: np.ndarray, bits: int, rng: np.random.Generator) -> tuple[float, float]:
    """[min, max] of ``values``; below ``KL_BITS_BELOW`` bits both ends clipped to KL-J of |x|."""
    lo, hi = float(values.min()), float(values.max())
    if bits < KL_BITS_BELOW:
        sample = values if values.size <= KL_MAX_SAMPLES else rng.choice(values, KL_MAX_SAMPLES)
        clip = kl_clip_threshold(sample, bits, symmetric=lo < 0)
        lo, hi = max(lo, -clip), min(hi, clip)
    return lo, hi


class CalibrationCache:
    """What calibration needs of the data, observed once, for any policy of one graph.

    HAQ calibrates every policy it scores; what that reads of the data does not change between
    episodes. One observation pass with *every* layer's weights at ``w_bits`` and activations
    float records each tensor any policy can quantize (the all-integer plan holds them all);
    :meth:`apply` then sets a policy's ranges from it, and its weight clips below
    ``KL_BITS_BELOW`` bits, memoised per (layer, bits) and (tensor, bits). The one difference
    from :func:`calibrate` on that policy: an upstream layer the policy keeps float is observed
    with ``w_bits`` weights (at 8 bits a shift well below one activation step).
    """

    def __init__(
        self, graph: Graph, batches: Iterable[torch.Tensor], seed: int = 0, w_bits: int = 8,
        device: str = "cpu",
    ) -> None:  # fmt: skip
        self.graph = graph
        net = QuantNet(graph, {layer.name: LayerBits(w_bits, 8) for layer in graph.layers})
        net = net.to(device).eval()
        net.quantizers = torch.nn.ModuleDict()
        observed: dict[str, list[torch.Tensor]] = {}
        with torch.no_grad():
            for x in batches:
                net(x.to(device), observe=observed)
        if not observed:
            raise ValueError("calibration needs at least one batch")
        rng = np.random.default_rng(seed)
        self._extremes: dict[str, tuple[float, float]] = {}
        self._samples: dict[str, np.ndarray] = {}
        for tensor, parts in observed.items():
            values = torch.cat([v.reshape(-1) for v in parts]).cpu().numpy()
            self._extremes[tensor] = (float(values.min()), float(values.max()))
            if values.size > KL_MAX_SAMPLES:
                values = rng.choice(values, KL_MAX_SAMPLES)
            self._samples[tensor] = values
        self._rng = rng
        self._ranges: dict[tuple[str, int], tuple[float, float]] = {}
        self._clips: dict[tuple[str, int], float] = {}

    def apply(self, net: QuantNet) -> QuantNet:
        """Set ``net``'s activation ranges and weight clips (``net`` is of this cache's graph)."""
        for layer in net.graph.layers:
            bits = net.policy.get(layer.name)
            if bits is not None and not bits.is_float and bits.w_bits < KL_BITS_BELOW:
                key = (layer.name, bits.w_bits)
                if key not in self._clips:
                    self._clips[key] = _weight_clip_ratio(layer.weight, bits.w_bits)
                net.clip_ratios[layer.name] = self._clips[key]
        for tensor, bits in net.plan.bits.items():
            key = (tensor, bits)
            if key not in self._ranges:
                if tensor not in self._samples:
                    raise ValueError(f"tensor {tensor} is not of this cache's graph")
                if bits < KL_BITS_BELOW:
                    lo, hi = self._extremes[tensor]
                    both = np.array([lo, hi], dtype=np.float32)
                    self._ranges[key] = _act_range(
                        np.concatenate([self._samples[tensor], both]), bits, self._rng
                    )
                else:
                    self._ranges[key] = self._extremes[tensor]
            net.quantizers[_key(tensor)].set_range(*self._ranges[key])
        return net


def int8_state(graph: Graph, seed: int = 0, w_bits: int = 8) -> QuantState:
    """A uniform int8 :class:`~hwnas.graph.qparams.QuantState` of ``graph``, calibrated on noise.

    Seeded standard-normal inputs (``CALIBRATION_BATCH`` images): latency does not depend on
    the values, so this is what per-precision timing models use.
    """
    net = QuantNet(graph, {layer.name: LayerBits(w_bits, 8) for layer in graph.layers})
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((CALIBRATION_BATCH, *graph.input_shape[1:]), generator=gen)
    return calibrate(net, [x]).to_state()
