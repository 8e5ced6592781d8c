"""TFLite with low-bit weights stored as INT4 / INT8 constants behind ``DEQUANTIZE``.

HAQ's model-size mode (Wang et al., CVPR 2019) on LiteRT, as far as its schema and kernels go
(checked on ai-edge-litert 2.3): a coded layer's filter is a constant of TensorType ``INT4``
(two values per byte, low nibble first) or ``INT8``, and a ``DEQUANTIZE`` turns it into the
float filter of the usual float ``CONV_2D`` / ``DEPTHWISE_CONV_2D`` / ``FULLY_CONNECTED``:

* ``linear`` codes: ``code - 2**(b-1)`` with the per-channel scales (axis 0, 3 for depthwise)
  and zero point 0; 2-4 bits as INT4, 5-8 bits as INT8. TFLite dequantizes a constant once,
  so these layers run the fp32 kernels.
* ``kmeans`` codes: the codes themselves (INT4 with zero point -8 up to 4 bits, INT8 with zero
  point -128 above), ``DEQUANTIZE`` with scale 1 gives them as floats, then ``CAST`` to int32
  and ``GATHER`` from the float codebook. ``GATHER`` accepts only int16/int32/int64 positions
  (int8 and uint8: "Positions of type 'INT8' are not supported by gather"), hence the detour;
  the ``CAST`` and ``GATHER`` run at every invoke.

So 2- and 3-bit layers take 4 bits per weight here (TFLite has no narrower type), a layer at
5-7 bits takes 8: the file is larger than :func:`hwnas.graph.wcodes.weight_bytes` prices for
those widths; :func:`hwnas.export.packed_onnx.graph_to_packed_onnx` stores every width exactly.

Latency (LiteRT 2.3, XNNPACK, measured here on a 16-layer FBNet at 16x16, 1 thread): layers
behind an INT8 ``DEQUANTIZE`` run at fp32 speed (0.95-1.0x), because XNNPACK folds the constant
dequantization. XNNPACK does not take a conv whose filter is an INT4 ``DEQUANTIZE`` or a
``GATHER`` output: those layers fall back to LiteRT's builtin kernels, and the whole network
ran 3.6x (all INT4) and 5.6x (all k-means) slower than fp32 (with XNNPACK off, every variant
ran like fp32 without XNNPACK). ``int4=False`` trades the INT4 size for XNNPACK speed.
Everything else is :mod:`hwnas.export.tflite_writer`'s float lowering (grouped convs native).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hwnas.export.tflite_writer import _layout_like, _Lowering, lower_graph
from hwnas.graph.nodes import Conv, Graph, Linear
from hwnas.graph.wcodes import WeightCode

INT4_MAX_BITS = 4


def pack_int4(values: np.ndarray) -> bytes:
    """Signed values in [-8, 7] as TFLite INT4 data: two per byte, the first in the low nibble."""
    nibbles = (np.asarray(values, np.int8).ravel() & 0xF).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).tobytes()


class _PackedLowering(_Lowering):
    """The float lowering, with coded layers' filters decoded from INT4/INT8 constants."""

    def __init__(self, graph: Graph, codes: Mapping[str, WeightCode], int4: bool) -> None:
        super().__init__(graph, None, False, "native")
        self.codes = codes
        self.int4_bits = INT4_MAX_BITS if int4 else 0
        self.b.description = "hwnas packed"

    def weights(
        self, layer: Conv | Linear, filt: np.ndarray, axis: int, x_tensor: str, key: str = ""
    ) -> tuple:
        code = self.codes.get(key or layer.name)
        if code is None:
            return super().weights(layer, filt, axis, x_tensor, key)
        codes = _layout_like(code.codes, layer, filt.shape)
        if code.kind == "linear":
            signed = codes.astype(np.int16) - code.offset
            w = self.int_const(f"{layer.name}_wq", signed, code.bits, code.table, 0, axis)
            out = self.b.tensor(f"{layer.name}_w", filt.shape, np.float32)
            self.b.op("DEQUANTIZE", [w], [out], version=2)
        else:
            out = self.gather(layer.name, codes, code)
        return out, self.float_const(f"{layer.name}_b", layer.bias), False

    def int_const(
        self, name: str, q: np.ndarray, bits: int, scale: np.ndarray, zp: int, axis: int
    ) -> int:
        """A constant INT4 (``bits`` <= 4) or INT8 tensor holding ``q``, quantized by ``scale``."""
        s = [float(v) for v in np.atleast_1d(scale)]
        t = self.b.tensor(name, q.shape, np.int8, s, [zp] * len(s), axis)
        if bits <= self.int4_bits:
            raw = pack_int4(q)
            self.b.tensors[t].type = self.b.s.TensorType.INT4
        else:
            raw = np.asarray(q, np.int8).tobytes()
        buf = self.b.s.BufferT()
        buf.data = np.frombuffer(raw, dtype=np.uint8)
        self.b.buffers.append(buf)
        self.b.tensors[t].buffer = len(self.b.buffers) - 1
        return t

    def gather(self, name: str, codes: np.ndarray, code: WeightCode) -> int:
        """``codebook[codes]`` from codes stored as INT4/INT8: DEQUANTIZE, CAST, GATHER."""
        zp = -8 if code.bits <= self.int4_bits else -128
        stored = codes.astype(np.int16) + zp
        q = self.int_const(f"{name}_codes_q", stored, code.bits, np.ones(1), zp, 0)
        as_float = self.b.tensor(f"{name}_codes_f", codes.shape, np.float32)
        self.b.op("DEQUANTIZE", [q], [as_float], version=2)
        index = self.b.tensor(f"{name}_codes", codes.shape, np.int32)
        self.b.op("CAST", [as_float], [index])
        table = self.b.const(f"{name}_codebook", code.table.astype(np.float32))
        out = self.b.tensor(f"{name}_w", codes.shape, np.float32)
        self.b.op(
            "GATHER", [table, index], [out], self.b.options("Gather", axis=0), "GatherOptions"
        )
        return out


def graph_to_packed_tflite(
    graph: Graph, codes: Mapping[str, WeightCode], int4: bool = True
) -> bytes:
    """``.tflite`` bytes of ``graph`` with the layers in ``codes`` stored as INT4/INT8 codes.

    Input ``"input"`` NHWC and output ``"output"`` as :func:`graph_to_tflite`'s float export;
    computes the float network of :func:`hwnas.graph.wcodes.dequantized_graph` ``(graph, codes)``.
    ``int4=False`` stores 2-4 bit codes as INT8 too (twice their INT4 bytes), which XNNPACK
    runs at fp32 speed.
    """
    layers = {layer.name: layer for layer in graph.layers}
    for name, code in codes.items():
        if name not in layers or layers[name].weight.shape != code.codes.shape:
            raise ValueError(f"code {name!r} matches no conv/linear weight of the graph")
    return lower_graph(_PackedLowering(graph, codes, int4))
