"""Which tensors of a graph are quantized, at how many bits, with which integer grid.

A per-layer bitwidth policy (HAQ: Wang et al., "HAQ: Hardware-Aware Automated Quantization with
Mixed Precision", CVPR 2019) gives every conv/linear layer a weight bitwidth and an input
activation bitwidth; 32 means float. Integer runtimes (onnxruntime QDQ, TFLite) only run a layer
as an integer kernel when its input, weights *and output* are quantized, so the plan is:

1. every integer layer asks for its input tensor at its ``a_bits`` and its output at 8 bits;
2. a residual add whose two inputs are quantized, and a global pooling whose input is, run in
   integers too: their output is quantized at 8 bits;
3. a channel shuffle is a permutation: its output shares its input's grid (an *alias*);
4. a tensor asked for several bitwidths gets the smallest.

Grids (shared by the fake quantizer, the ONNX and the TFLite writer, so the three agree):

* activations, per tensor, asymmetric: ``scale = (hi - lo) / (2**bits - 1)``,
  ``zero_point = round(-lo / scale)`` in ``[0, 2**bits - 1]`` (uint8 in ONNX; TFLite int8 uses
  ``zero_point - 128``, the same grid), ``lo <= 0 <= hi`` so that 0 is exact;
* weights, per output channel, symmetric: ``scale_c = clip_ratio * max|w_c| / (2**(bits-1) - 1)``,
  integer values in ``[-(2**(bits-1) - 1), 2**(bits-1) - 1]``, zero point 0;
* bias: int32 with ``scale_c = input_scale * weight_scale_c``.

Torch-free (numpy only).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hwnas.graph.nodes import Add, GlobalPool, Graph, Shuffle, node_inputs

FLOAT_BITS = 32
MIN_RANGE = 1e-6


@dataclass(frozen=True)
class LayerBits:
    """Bitwidths of one layer: ``w_bits`` for its weights, ``a_bits`` for its input; 32 = float."""

    w_bits: int
    a_bits: int

    def __post_init__(self) -> None:
        for name in ("w_bits", "a_bits"):
            bits = getattr(self, name)
            if bits != FLOAT_BITS and not 2 <= bits <= 8:
                raise ValueError(f"{name} must be 2..8 or {FLOAT_BITS} (float), got {bits}")
        if (self.w_bits == FLOAT_BITS) != (self.a_bits == FLOAT_BITS):
            raise ValueError("a layer is either float (32/32) or integer (both 2..8 bits)")

    @property
    def is_float(self) -> bool:
        return self.w_bits == FLOAT_BITS

    @property
    def precision(self) -> str:
        """The precision it executes at on an integer runtime: ``fp32`` or ``int8``."""
        return "fp32" if self.is_float else "int8"


@dataclass(frozen=True)
class TensorQuant:
    """The grid of one quantized activation tensor: ``bits`` over the range [lo, hi]."""

    bits: int
    lo: float
    hi: float

    @property
    def qmax(self) -> int:
        return 2**self.bits - 1

    @property
    def scale(self) -> float:
        return act_qparams(self.lo, self.hi, self.bits)[0]

    @property
    def zero_point(self) -> int:
        """Zero point on the unsigned grid ``[0, 2**bits - 1]``."""
        return act_qparams(self.lo, self.hi, self.bits)[1]


def act_qparams(lo: float, hi: float, bits: int) -> tuple[float, int]:
    """(scale, unsigned zero point) of the asymmetric grid over [min(lo, 0), max(hi, 0)].

    Computed in float32 exactly as :func:`hwnas.quant.quantizers.fake_quant_act` does.
    """
    lo32, hi32 = np.float32(min(float(lo), 0.0)), np.float32(max(float(hi), 0.0))
    qmax = 2**bits - 1
    scale = np.float32(max(hi32 - lo32, np.float32(MIN_RANGE))) / np.float32(qmax)
    zero_point = int(min(max(np.round(-lo32 / scale), 0), qmax))
    return float(scale), zero_point


def weight_qmax(bits: int) -> int:
    """Largest integer of the symmetric weight grid: ``2**(bits-1) - 1`` (127 at 8 bits)."""
    return 2 ** (bits - 1) - 1


def weight_scales(weight: np.ndarray, bits: int, clip_ratio: float = 1.0) -> np.ndarray:
    """Per-output-channel scales (float32, shape (O,)) of the symmetric weight grid."""
    flat = np.abs(np.asarray(weight, dtype=np.float32).reshape(weight.shape[0], -1))
    peak = np.maximum(flat.max(axis=1) * np.float32(clip_ratio), np.float32(MIN_RANGE))
    return (peak / np.float32(weight_qmax(bits))).astype(np.float32)


def quantize_weight(weight: np.ndarray, bits: int, clip_ratio: float = 1.0) -> tuple:
    """(int8 values, per-channel scales) of ``weight`` (first axis = output channels)."""
    scales = weight_scales(weight, bits, clip_ratio)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    q = np.clip(np.round(weight / scales.reshape(shape)), -weight_qmax(bits), weight_qmax(bits))
    return q.astype(np.int8), scales


@dataclass(frozen=True)
class TensorPlan:
    """Bits of each quantized tensor (by root name) and the aliases that share a root's grid."""

    bits: Mapping[str, int]
    aliases: Mapping[str, str]

    def root(self, tensor: str) -> str:
        return self.aliases.get(tensor, tensor)

    def tensor_bits(self, tensor: str) -> int | None:
        """Bits of ``tensor`` (through its alias), or None if it stays float."""
        return self.bits.get(self.root(tensor))


@dataclass(frozen=True)
class QuantState:
    """A graph with its quantization: what the exporters need, as plain numpy data.

    Attributes:
        graph: the folded graph with the current weights.
        policy: layer name -> bits (layers absent stay float).
        plan: quantized tensors and aliases.
        tensors: root tensor name -> grid.
        clip_ratios: layer name -> weight clip ratio (1.0 = max|w|).
    """

    graph: Graph
    policy: Mapping[str, LayerBits]
    plan: TensorPlan
    tensors: Mapping[str, TensorQuant]
    clip_ratios: Mapping[str, float]

    def tensor_quant(self, tensor: str) -> TensorQuant | None:
        """The grid of ``tensor`` (through aliases), or None if it stays float."""
        return self.tensors.get(self.plan.root(tensor))


def plan_tensors(graph: Graph, policy: Mapping[str, LayerBits]) -> TensorPlan:
    """Apply the rules of the module docstring to ``graph`` under ``policy`` (layer name -> bits).

    Layers missing from ``policy`` stay float.
    """
    aliases: dict[str, str] = {}
    for node in graph.nodes:
        if isinstance(node, Shuffle):
            aliases[node.out] = aliases.get(node.inp, node.inp)
    requests: dict[str, int] = {}

    def ask(tensor: str, bits: int) -> None:
        root = aliases.get(tensor, tensor)
        requests[root] = min(bits, requests.get(root, FLOAT_BITS))

    for layer in graph.layers:
        lb = policy.get(layer.name)
        if lb is not None and not lb.is_float:
            ask(layer.inp, lb.a_bits)
            ask(layer.out, 8)
    for node in graph.nodes:  # execution order: inputs are settled before outputs
        if isinstance(node, (Add, GlobalPool)):
            ins = [aliases.get(t, t) for t in node_inputs(node)]
            if all(t in requests for t in ins):
                ask(node.out, 8)
    return TensorPlan(dict(requests), aliases)


def policy_bits_summary(policy: Mapping[str, LayerBits]) -> dict[str, float]:
    """Mean weight and activation bits over the layers (float layers count as 32)."""
    values = list(policy.values())
    if not values:
        return {"mean_w_bits": math.nan, "mean_a_bits": math.nan}
    return {
        "mean_w_bits": float(np.mean([v.w_bits for v in values])),
        "mean_a_bits": float(np.mean([v.a_bits for v in values])),
    }
