"""TFLite at the precisions beyond fp32 / fp16 / int8: dynamic-range int8 and 16x8.

Subclasses of the lowering of :mod:`hwnas.export.tflite_writer`, so the graph is laid out
exactly as the other precisions (NHWC, explicit ``PAD`` before strided convs, native grouped
convs, ``RESHAPE``/``TRANSPOSE`` shuffles, ``MEAN`` pooling):

* ``dyn_int8`` (TFLite "dynamic range quantization"): conv, depthwise and fully-connected
  filters are int8 per output channel (symmetric), biases and activations float32. The
  interpreter runs such ops with its *hybrid* kernels, which quantize the float input to int8
  at run time, multiply in integers and rescale to float; no calibration is needed.
* ``int16x8`` (TFLite's 16x8 full-integer scheme): every quantized activation is int16 on a
  symmetric grid (zero point 0, ``scale = max(|lo|, |hi|) / 32767`` over the calibrated range of
  the int8 :class:`~hwnas.graph.qparams.QuantState`), weights int8 per channel, biases int64
  with scale ``input_scale * weight_scale``; ``ADD`` is written with ``pot_scale_int16 = false``
  (general scales, as TFLite's converter writes 16x8 models). XNNPACK has no int16 kernels, so
  these ops run on TFLite's own kernels.

The model's input and output stay float32 (``QUANTIZE``/``DEQUANTIZE`` at the edges for 16x8).
"""

from __future__ import annotations

import numpy as np

from hwnas.export.onnx_precisions import int16_scale
from hwnas.export.tflite_writer import GROUPED_MODES, _layout_like, _Lowering, _nhwc, lower_graph
from hwnas.graph.nodes import Add, Conv, Graph, Linear
from hwnas.graph.qparams import QuantState, quantize_weight


class _HybridLowering(_Lowering):
    """Float graph whose conv/FC filters are int8 per channel (the hybrid kernels)."""

    def __init__(self, graph: Graph, w_bits: int, grouped: str) -> None:
        super().__init__(graph, None, False, grouped)
        self.w_bits = w_bits
        self.b.description = "hwnas dynamic-range int8"

    def weights(
        self, layer: Conv | Linear, filt: np.ndarray, axis: int, x_tensor: str, key: str = ""
    ) -> tuple:
        q, ws = quantize_weight(layer.weight, self.w_bits)
        q = _layout_like(q, layer, filt.shape)
        w = self.b.const(f"{layer.name}_w", q, scale=ws, zero_point=[0] * len(ws), axis=axis)
        return w, self.float_const(f"{layer.name}_b", layer.bias), False


class _Int16Lowering(_Lowering):
    """The full-integer lowering with int16 activations (16x8)."""

    def __init__(self, state: QuantState, grouped: str) -> None:
        super().__init__(state.graph, state, False, grouped)
        self.b.description = "hwnas 16x8"

    def scale16(self, tensor: str) -> float:
        tq = self.tq(tensor)
        return int16_scale(tq.lo, tq.hi)

    def new(
        self, tensor: str, kind: str, name: str | None = None, shape: list[int] | None = None
    ) -> int:
        if kind != "int8":  # "int8" is the base class's name for "integer"
            return super().new(tensor, kind, name, shape)
        shape = shape or _nhwc(self.g.shapes[tensor])
        index = self.b.tensor(name or tensor, shape, np.int8, [self.scale16(tensor)], [0])
        self.b.tensors[index].type = self.b.s.TensorType.INT16  # the builder knows no int16 dtype
        return index

    def weights(
        self, layer: Conv | Linear, filt: np.ndarray, axis: int, x_tensor: str, key: str = ""
    ) -> tuple:
        key = key or layer.name
        bits = self.state.policy.get(key)
        if bits is None or bits.is_float:
            return super().weights(layer, filt, axis, x_tensor, key)
        q, ws = quantize_weight(layer.weight, bits.w_bits, self.state.clip_ratios[key])
        q = _layout_like(q, layer, filt.shape)
        w = self.b.const(f"{layer.name}_w", q, scale=ws, zero_point=[0] * len(ws), axis=axis)
        bs = (np.float32(self.scale16(x_tensor)) * ws).astype(np.float32)
        bq = np.round(layer.bias.astype(np.float64) / bs).astype(np.int64)
        b = self.b.const(f"{layer.name}_b", bq, scale=bs, zero_point=[0] * len(bs))
        return w, b, True

    def add(self, node: Add) -> None:
        integer = all(self.is_int(t) for t in (node.a, node.b, node.out))
        if not integer:
            super().add(node)
            return
        out = self.new(node.out, "int8")
        self.b.op(
            "ADD",
            [self.get(node.a, "int8"), self.get(node.b, "int8")],
            [out],
            self.b.options("Add", fusedActivationFunction="NONE", potScaleInt16=False),
            "AddOptions",
            3,
        )
        self.put(node.out, out, "int8")


def _check_grouped(grouped: str) -> None:
    if grouped not in GROUPED_MODES:
        raise ValueError(f"grouped must be one of {GROUPED_MODES}, got {grouped!r}")


def graph_to_tflite_dynamic(graph: Graph, w_bits: int = 8, grouped: str = "native") -> bytes:
    """``graph`` as a dynamic-range int8 ``.tflite`` (int8 filters, float activations)."""
    _check_grouped(grouped)
    return lower_graph(_HybridLowering(graph, w_bits, grouped))


def graph_to_tflite_16x8(state: QuantState, grouped: str = "native") -> bytes:
    """``state``'s network as a 16x8 ``.tflite``: int16 activations, int8 weights, int64 bias."""
    _check_grouped(grouped)
    return lower_graph(_Int16Lowering(state, grouped))
