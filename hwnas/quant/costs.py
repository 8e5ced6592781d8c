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

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hwnas.graph.qparams import LayerBits

ALL_PRECISIONS = ("fp32", "fp16", "int8", "dyn_int8", "int16x8")  # export.precisions.PRECISIONS
# what the mixed-precision exporters can place layer by layer (a LayerBits policy)
MIXED_EXPORT = ("fp32", "int8")


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
        return tuple(p for p in ALL_PRECISIONS if p in common)

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


def precision_summary(cost: PrecisionCost, offered: Sequence[str]) -> dict:
    """Per measured precision: how it compares with fp32 layer by layer, and whether it is offered.

    For each precision ``p`` of ``cost`` (standalone layer medians, network order, every layer
    counted): ``median_ratio_to_fp32`` (median over layers of ``lut[l, p] / lut[l, fp32]``),
    ``faster_than_fp32_layers``, ``faster_than_mixed_layers`` (faster than every measured
    precision of :data:`MIXED_EXPORT`, i.e. fp32 and int8), the uniform network's measured
    latency, and a ``status``: ``offered``; or why not. A precision that beats fp32 and int8 on
    some layer but cannot be placed in a mixed network says so ("mixed export not
    implemented"), so nothing measured is dropped silently.
    """
    layers = len(cost.layer_names)
    out = {}
    for p in cost.precisions:
        ratios = [row[p] / row["fp32"] for row in cost.table_ms if row["fp32"] > 0]
        faster = sum(row[p] < row["fp32"] for row in cost.table_ms)
        mixed = [m for m in MIXED_EXPORT if m in cost.precisions]
        beats = sum(all(row[p] < row[m] for m in mixed if m != p) for row in cost.table_ms)
        if p in offered:
            status = "offered"
        elif p in MIXED_EXPORT:
            status = (
                f"measured, faster on {faster} layers, not offered: the uniform {p} network "
                "is not faster than fp32"
            )
        elif beats:
            status = (
                f"measured, faster on {beats} layers, not offered: mixed export not implemented"
            )
        else:
            status = "measured, never faster than fp32 and int8 on a layer: not offered"
        out[p] = {
            "median_ratio_to_fp32": float(statistics.median(ratios)) if ratios else None,
            "faster_than_fp32_layers": int(faster),
            "faster_than_mixed_layers": int(beats) if p not in MIXED_EXPORT else None,
            "layers": layers,
            "network_ms": cost.network_ms.get(p),
            "status": status,
        }
    return out
