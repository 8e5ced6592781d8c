"""The latency of a bitwidth policy, from per-layer measurements calibrated end to end.

``latency_ms(policy) = sum_l scale[p_l] * lut[l, p_l]`` where ``p_l`` is the precision layer
``l`` executes at (``fp32`` or ``int8``; sub-8-bit simulation runs as int8), ``lut[l, p]`` the
median of that layer timed alone on the device, and ``scale[p]`` = (measured latency of the
whole network at uniform ``p``) / (sum of its layers' entries at ``p``). The scale absorbs what
standalone layers get wrong for a network (per-call overhead, Q/DQ at every layer boundary,
residual adds, pooling, fusion), so uniform policies are priced exactly as measured and mixed
policies are interpolated between them.

Known limit (measured, ``bench/haq.py``): on onnxruntime x86 a *mixed* policy also pays for every
fp32/int8 boundary (a QuantizeLinear or DequantizeLinear, and layout reorders around float
islands), which no per-layer entry holds: a FBNet policy with 37 of 56 layers int8 was predicted
at 1.86 ms and measured 2.48 ms, slower than all-fp32 (2.25 ms). ``hwnas quantize`` therefore
times the chosen policy end to end and tightens the budget until the *measured* latency fits
(:func:`hwnas.runs.quantize.hardware_check`).

HAQ (Wang et al., CVPR 2019) indexes its cost table as [layer, w_bits, a_bits]; on a runtime the
latency only depends on the kernel that runs, i.e. on the precision, hence [layer, precision].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hwnas.graph.qparams import LayerBits


@dataclass(frozen=True)
class PrecisionCost:
    """Calibrated per-layer latencies (ms) at each measured precision.

    Attributes:
        layer_names: layers in network order.
        table_ms: per layer, precision -> median latency of the layer alone (ms).
        scale: precision -> end-to-end calibration factor (1.0 = plain sum).
        network_ms: precision -> measured latency of the uniform network (ms), if measured.
    """

    layer_names: tuple[str, ...]
    table_ms: tuple[Mapping[str, float], ...]
    scale: Mapping[str, float]
    network_ms: Mapping[str, float]

    @property
    def precisions(self) -> tuple[str, ...]:
        """Precisions every layer has an entry for."""
        common = set(self.table_ms[0]) if self.table_ms else set()
        for row in self.table_ms[1:]:
            common &= set(row)
        return tuple(p for p in ("fp32", "fp16", "int8") if p in common)

    def layer_ms(self, index: int, bits: LayerBits) -> float:
        """Calibrated latency of layer ``index`` executing at ``bits.precision``."""
        p = bits.precision
        return self.scale.get(p, 1.0) * self.table_ms[index][p]

    def latency_ms(self, policy: Sequence[LayerBits]) -> float:
        """Predicted latency of the network under ``policy`` (one entry per layer, in order)."""
        return sum(self.layer_ms(i, b) for i, b in enumerate(policy))

    def uniform_ms(self, precision: str) -> float:
        """Predicted latency with every layer at ``precision`` (= measured, if calibrated)."""
        return sum(self.scale.get(precision, 1.0) * row[precision] for row in self.table_ms)

    def to_dict(self) -> dict:
        return {
            "layers": [
                {"name": n, "latency_ms": dict(row)}
                for n, row in zip(self.layer_names, self.table_ms)
            ],
            "scale": dict(self.scale),
            "network_ms": dict(self.network_ms),
        }


def calibrated_cost(
    layer_names: Sequence[str],
    table_ms: Sequence[Mapping[str, float]],
    network_ms: Mapping[str, float],
) -> PrecisionCost:
    """Build a :class:`PrecisionCost` whose uniform policies match ``network_ms`` exactly.

    Args:
        layer_names: layers in order.
        table_ms: per layer, precision -> standalone median (ms).
        network_ms: precision -> measured whole-network latency at that uniform precision.
    """
    if len(layer_names) != len(table_ms):
        raise ValueError("one table row per layer")
    scale = {}
    for precision, measured in network_ms.items():
        total = sum(row[precision] for row in table_ms)
        scale[precision] = measured / total if total > 0 else 1.0
    return PrecisionCost(
        tuple(layer_names), tuple(dict(r) for r in table_ms), scale, dict(network_ms)
    )
