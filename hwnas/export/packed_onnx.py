"""ONNX with low-bit weights stored packed: the file is as small as HAQ's size mode prices it.

HAQ's model-size mode (Wang et al., CVPR 2019) gives each conv/linear layer its own weight
bitwidth b in 2..8 and keeps activations float. Here a coded layer's weights are stored as the
``b`` bit-planes of :func:`hwnas.graph.wcodes.pack_codes` (one uint8 initializer of
``b * ceil(n / 8)`` bytes) plus its table, and decoded inside the model by opset-18 nodes::

    planes (b, m, 1) --BitShift RIGHT [0..7]--> (b, m, 8) --BitwiseAnd 1--> bits
    --Reshape (b, 8m), Slice [:n]--> --Cast float, Mul [2**k]--> --ReduceSum axis 0--> code (n,)
    linear: (code - 2**(b-1)) * scale[c]          k-means: Gather(codebook, code)

Every decode node reads only initializers, so onnxruntime's constant folding (any optimization
level from ``ORT_ENABLE_BASIC``) computes each weight once at session creation and the session
then runs exactly the fp32 graph: the same kernels and the same latency (measured here on a
16-layer FBNet at 16x16, 1 thread, a fresh session per round, 480 runs each: packed / fp32 =
1.00-1.03 for linear 2 and 5 bits and k-means 3 bits; the optimized graphs are identical).
The decoded weights are bit-identical to :meth:`~hwnas.graph.wcodes.WeightCode.dequantize`
(sums and products of small integers are exact in float32; the one scale multiply rounds as
numpy's does). Files take the priced bytes plus ~1 KB a coded layer (nodes, names, shapes).

Not used: INT4/INT8 initializers behind ``DequantizeLinear``. onnxruntime 1.32 does not
constant-fold ``DequantizeLinear`` (it keeps it for its QDQ fusions), so with float
activations the dequantization runs at every inference (measured here on a 256x256 3x3 conv at
8x8: int8 DQ 1.5x and int4 DQ 2.7x the fp32 latency; the bit-plane decode 1.0x).

Everything else (float layers, biases, pooling, residuals) is :mod:`hwnas.export.onnx_writer`'s:
the packed writer only overrides where a layer's weight tensor comes from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from onnx import TensorProto

from hwnas.export.onnx_writer import _Writer, write_graph
from hwnas.graph.nodes import Conv, Graph, Linear
from hwnas.graph.wcodes import WeightCode, pack_codes

PACKED_OPSET = 18  # BitwiseAnd


class _PackedWriter(_Writer):
    """The fp32 writer, with coded layers' weights decoded from packed bit-planes."""

    def __init__(self, graph: Graph, codes: Mapping[str, WeightCode]) -> None:
        super().__init__(None, graph)
        self.codes = codes
        self.shared: set[str] = set()

    def layer_params(self, layer: Conv | Linear) -> tuple[str, str]:
        code = self.codes.get(layer.name)
        if code is None:
            return super().layer_params(layer)
        bias = self.const(f"{layer.name}_b", layer.bias.astype(np.float32))
        return self.decode(layer.name, code), bias

    def shared_const(self, name: str, array: np.ndarray) -> str:
        """An initializer written once and read by every layer that needs it."""
        if name not in self.shared:
            self.shared.add(name)
            self.const(name, array)
        return name

    def decode(self, name: str, code: WeightCode) -> str:
        """Nodes turning layer ``name``'s packed codes into its float weight ``<name>_w``."""
        b, n, shape = code.bits, code.codes.size, code.codes.shape
        planes = self.const(f"{name}_planes", pack_codes(code.codes, b)[:, :, None])
        shifts = self.shared_const("packed_shifts", np.arange(8, dtype=np.uint8))
        one = self.shared_const("packed_one", np.array(1, np.uint8))
        x = self.node("BitShift", [planes, shifts], f"{name}_shifted", direction="RIGHT")
        x = self.node("BitwiseAnd", [x, one], f"{name}_bits")
        rows = self.shared_const(f"packed_rows{b}", np.array([b, -1], np.int64))
        x = self.node("Reshape", [x, rows], f"{name}_bitrows")
        if n % 8:  # the last byte of each plane is padded
            zero = self.shared_const("packed_zero", np.array([0], np.int64))
            end = self.const(f"{name}_count", np.array([n], np.int64))
            one_axis = self.shared_const("packed_axis1", np.array([1], np.int64))
            x = self.node("Slice", [x, zero, end, one_axis], f"{name}_bitcols")
        x = self.node("Cast", [x], f"{name}_bitsf", to=TensorProto.FLOAT)
        powers = self.shared_const(f"packed_pow{b}", (2.0 ** np.arange(b))[:, None].astype("f4"))
        x = self.node("Mul", [x, powers], f"{name}_weighted")
        axis0 = self.shared_const("packed_axis0", np.array([0], np.int64))
        x = self.node("ReduceSum", [x, axis0], f"{name}_codes", keepdims=0)
        dims = self.const(f"{name}_shape", np.array(shape, np.int64))
        if code.kind == "kmeans":
            x = self.node("Cast", [x], f"{name}_index", to=TensorProto.INT64)
            table = self.const(f"{name}_codebook", code.table.astype(np.float32))
            x = self.node("Gather", [table, x], f"{name}_values", axis=0)
            return self.node("Reshape", [x, dims], f"{name}_w")
        offset = self.shared_const(f"packed_offset{b}", np.array(code.offset, np.float32))
        x = self.node("Sub", [x, offset], f"{name}_signed")
        x = self.node("Reshape", [x, dims], f"{name}_grid")
        scale = code.table.astype(np.float32).reshape((-1,) + (1,) * (len(shape) - 1))
        return self.node("Mul", [x, self.const(f"{name}_scale", scale)], f"{name}_w")


def graph_to_packed_onnx(graph: Graph, codes: Mapping[str, WeightCode]) -> bytes:
    """ONNX bytes of ``graph`` with the layers in ``codes`` stored at their code's bits.

    Input ``"input"`` (N, C, H, W) and output ``"output"`` as :func:`graph_to_onnx`'s fp32
    export; runs in any onnxruntime with opset 18 and default session options, and computes
    the fp32 network of :func:`hwnas.graph.wcodes.dequantized_graph` ``(graph, codes)``.
    Metadata ``hwnas.weight_bits`` lists each coded layer as ``"<bits>-<kind>"``.
    """
    layers = {layer.name: layer for layer in graph.layers}
    for name, code in codes.items():
        if name not in layers or layers[name].weight.shape != code.codes.shape:
            raise ValueError(f"code {name!r} matches no conv/linear weight of the graph")
    meta = {
        "hwnas.precision": "packed",
        "hwnas.weight_bits": json.dumps({k: f"{c.bits}-{c.kind}" for k, c in codes.items()}),
    }
    return write_graph(_PackedWriter(graph, codes), meta, PACKED_OPSET)
