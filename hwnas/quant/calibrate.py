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
            peak = float(np.abs(w).max())
            if peak > 0:
                net.clip_ratios[layer.name] = kl_clip_threshold(w, bits.w_bits) / peak
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
        lo, hi = float(values.min()), float(values.max())
        if bits < KL_BITS_BELOW:
            sample = values if values.size <= KL_MAX_SAMPLES else rng.choice(values, KL_MAX_SAMPLES)
            clip = kl_clip_threshold(sample, bits, symmetric=lo < 0)
            lo, hi = max(lo, -clip), min(hi, clip)
        net.quantizers[_key(tensor)].set_range(lo, hi)
        logger.debug("calibrated %s at %d bits: [%.4g, %.4g]", tensor, bits, lo, hi)
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
