"""ONNX at the precisions beyond fp32 / fp16 / int8 QDQ: dynamic-range int8 and 16x8 QDQ.

Both are written straight from a :class:`~hwnas.graph.nodes.Graph` by subclassing the QDQ
writer of :mod:`hwnas.export.onnx_writer` (nothing of it is changed), so every node that is not
a conv or a linear (residual adds, channel shuffles, pooling) is lowered the same way.

Dynamic-range int8 (``dyn_int8``), the pattern ``onnxruntime.quantization.quantize_dynamic``
emits, rebuilt here layer by layer: weights are int8 per output channel (symmetric, zero point
0), activations stay float and are quantized at run time, once per tensor::

    x -> DynamicQuantizeLinear -> (x_u8, x_scale, x_zp)
    ConvInteger(x_u8, w_s8, x_zp, 0) | MatMulInteger(x_u8, w_s8^T, x_zp, 0) -> int32
    -> Cast(float) * (x_scale * w_scale[c]) + bias -> activation

onnxruntime's CPU EP has kernels for ``ConvInteger`` and ``MatMulInteger`` with uint8 x int8;
it fuses the linear form into ``DynamicQuantizeMatMul`` at session load. No calibration is
needed (activation ranges are measured per inference).

16x8 QDQ (``int16x8``): the int8 QDQ graph with every quantized activation on a symmetric
int16 grid (``scale = max(|lo|, |hi|) / 32767``, zero point 0; the ranges are those of the
calibrated int8 :class:`~hwnas.graph.qparams.QuantState`), int8 per-channel weights and int32
biases. int16 ``QuantizeLinear`` needs opset 21. onnxruntime's CPU EP has no 16x8 integer
kernels, so it runs DequantizeLinear + float op + QuantizeLinear (ENVIRONMENT.md); that is what
it executes, so that is what is measured.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from hwnas.export.onnx_writer import _Writer
from hwnas.graph.nodes import Conv, Graph, Linear
from hwnas.graph.qparams import QuantState, quantize_weight

DYNAMIC_OPSET = 17
INT16_OPSET = 21  # QuantizeLinear / DequantizeLinear with int16 zero points
INT16_QMAX = 32767


def int16_scale(lo: float, hi: float) -> float:
    """Scale of the symmetric int16 grid covering [lo, hi] (zero point 0), float32-exact."""
    peak = max(abs(float(lo)), abs(float(hi)), 1e-6)
    return float(np.float32(peak) / np.float32(INT16_QMAX))


class _DynamicWriter(_Writer):
    """Float activations; convs and linears as integer kernels on int8 weights."""

    def __init__(self, graph: Graph, w_bits: int) -> None:
        super().__init__(None, graph)
        self.w_bits = w_bits
        self.dynamic: dict[str, tuple[str, str, str]] = {}  # tensor read -> (u8, scale, zp)

    def quantize_input(self, x: str) -> tuple[str, str, str]:
        """``DynamicQuantizeLinear`` of float tensor ``x``, once per tensor."""
        if x not in self.dynamic:
            outs = [f"{x}_u8", f"{x}_dscale", f"{x}_dzp"]
            self.nodes.append(helper.make_node("DynamicQuantizeLinear", [x], outs, name=outs[0]))
            self.dynamic[x] = (outs[0], outs[1], outs[2])
        return self.dynamic[x]

    def visit(self, node: object) -> None:
        if not isinstance(node, (Conv, Linear)):
            super().visit(node)
            return
        xq, xs, xz = self.quantize_input(self.read[node.inp])
        q, w_scale = quantize_weight(node.weight, self.w_bits)
        wz = self.const(f"{node.name}_wzp", np.array(0, np.int8))
        if isinstance(node, Conv):
            shape = (1, -1, 1, 1)
            wq = self.const(f"{node.name}_wq", q)
            pad = (node.kernel - 1) // 2
            acc = self.node(
                "ConvInteger",
                [xq, wq, xz, wz],
                f"{node.name}_acc",
                kernel_shape=[node.kernel] * 2,
                strides=[node.stride] * 2,
                pads=[pad] * 4,
                group=node.groups,
            )
        else:
            shape = (1, -1)
            wq = self.const(f"{node.name}_wqT", np.ascontiguousarray(q.T))
            acc = self.node("MatMulInteger", [xq, wq, xz, wz], f"{node.name}_acc")
        ws = self.const(f"{node.name}_wscale", w_scale.reshape(shape))
        scale = self.node("Mul", [xs, ws], f"{node.name}_rescale")
        y = self.node("Cast", [acc], f"{node.name}_accf", to=TensorProto.FLOAT)
        y = self.node("Mul", [y, scale], f"{node.name}_scaled")
        bias = self.const(f"{node.name}_bias", node.bias.astype(np.float32).reshape(shape))
        y = self.node("Add", [y, bias], f"{node.name}_biased")
        self.emit(node.out, self.act(node.act, y, node.name))


class _Int16Writer(_Writer):
    """The QDQ writer with int16 activation grids (symmetric) and int8 weights."""

    def scale_of(self, tensor: str) -> float | None:
        tq = self.state.tensor_quant(tensor)
        return None if tq is None else int16_scale(tq.lo, tq.hi)

    def qdq(self, grid_of: str, x: str) -> str:
        scale_value = self.scale_of(grid_of)
        if scale_value is None:
            return x
        scale = self.const(f"{x}_scale", np.array(scale_value, np.float32))
        zp = self.const(f"{x}_zp", np.array(0, np.int16))
        q = self.node("QuantizeLinear", [x, scale, zp], f"{x}_q")
        return self.node("DequantizeLinear", [q, scale, zp], f"{x}_dq")

    def layer_params(self, layer: Conv | Linear) -> tuple[str, str]:
        bits = self.state.policy.get(layer.name)
        in_scale = self.scale_of(layer.inp)
        if bits is None or bits.is_float or in_scale is None:
            return super().layer_params(layer)
        q, w_scale = quantize_weight(layer.weight, bits.w_bits, self.state.clip_ratios[layer.name])
        wq = self.const(f"{layer.name}_wq", q)
        ws = self.const(f"{layer.name}_w_scale", w_scale)
        w_zp = self.const(f"{layer.name}_w_zp", np.zeros(len(w_scale), np.int8))
        w = self.node("DequantizeLinear", [wq, ws, w_zp], f"{layer.name}_w", axis=0)
        b_scale = (np.float32(in_scale) * w_scale).astype(np.float32)
        b_int = np.clip(np.round(layer.bias / b_scale), -(2**31), 2**31 - 1).astype(np.int32)
        bq = self.const(f"{layer.name}_bq", b_int)
        bs = self.const(f"{layer.name}_b_scale", b_scale)
        b_zp = self.const(f"{layer.name}_b_zp", np.zeros(len(w_scale), np.int32))
        b = self.node("DequantizeLinear", [bq, bs, b_zp], f"{layer.name}_b", axis=0)
        return w, b


def _finish(w: _Writer, graph: Graph, opset: int, precision: str) -> bytes:
    """Wrap the writer's nodes as a checked model (input ``input``, output ``output``)."""
    w.node("Identity", [w.read[graph.output_name]], "output")
    in_dims = ["batch", *graph.input_shape[1:]]
    out_dims = ["batch", *graph.shapes[graph.output_name][1:]]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, in_dims)
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, out_dims)
    g = helper.make_graph(w.nodes, "hwnas", [inp], [out], initializer=w.inits)
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", opset)], producer_name="hwnas"
    )
    model.ir_version = 8 if opset <= 17 else 10
    model.metadata_props.add(key="hwnas.precision", value=precision)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()


def graph_to_onnx_dynamic(graph: Graph, w_bits: int = 8) -> bytes:
    """``graph`` as dynamic-range int8 ONNX (int8 weights, activations quantized at run time).

    Args:
        graph: the folded float graph.
        w_bits: weight bits (7 on CPUs whose u8 x s8 kernels saturate, see
            :func:`hwnas.runs.measure.probe_int8_weight_bits`).
    """
    w = _DynamicWriter(graph, w_bits)
    w.emit(graph.input_name, graph.input_name)
    for node in graph.nodes:
        w.visit(node)
    return _finish(w, graph, DYNAMIC_OPSET, "dyn_int8")


def graph_to_onnx_16x8(state: QuantState) -> bytes:
    """``state``'s network as 16x8 QDQ ONNX: int16 activations, int8 weights, int32 biases.

    The activation ranges (and which tensors are quantized) come from ``state``; its 8-bit
    grids are replaced by symmetric int16 grids over the same ranges.
    """
    w = _Int16Writer(state, state.graph)
    w.emit(state.graph.input_name, state.graph.input_name)
    for node in state.graph.nodes:
        w.visit(node)
    return _finish(w, state.graph, INT16_OPSET, "int16x8")
