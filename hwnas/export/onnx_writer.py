"""Write a :class:`~hwnas.graph.nodes.Graph` as ONNX: float32, or QDQ with our quantization grids.

The QDQ format (onnxruntime's preferred quantized format) keeps float ops and marks integer tensors
with ``QuantizeLinear -> DequantizeLinear`` pairs; onnxruntime fuses ``DQ -> Conv -> Q`` into
integer kernels (QLinearConv, QGemm, QLinearAdd, QLinearGlobalAveragePool) at session load.
Written here straight from the graph and the learned grids of :mod:`hwnas.graph.qparams`:

* activations: ``QuantizeLinear``/``DequantizeLinear`` with a uint8 zero point, per tensor;
* weights: int8 initializers + per-channel ``DequantizeLinear`` (axis 0, zero point 0);
* biases: int32 initializers + ``DequantizeLinear`` with scale ``input_scale * weight_scale``.

Layers the policy keeps float read the dequantized tensor and use float weights: onnxruntime's
``WeightBiasQuantization`` optimizer would quantize those weights at load time, so mixed models
must be loaded with ``disabled_optimizers=["WeightBiasQuantization"]`` (ENVIRONMENT.md; the file
says so in its metadata under ``hwnas.ort_disabled_optimizers``).

Opset 17, input ``"input"`` (N, C, H, W) with a symbolic batch, output ``"output"`` (N, classes).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hwnas.graph.nodes import Add, Conv, GlobalPool, Graph, Linear, Shuffle
from hwnas.graph.qparams import QuantState, quantize_weight

OPSET = 17
DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]


class _Writer:
    def __init__(self, state: QuantState | None, graph: Graph) -> None:
        self.state = state
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.read: dict[str, str] = {}  # tensor -> name consumers read (after Q/DQ)

    def const(self, name: str, array: np.ndarray) -> str:
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def emit(self, tensor: str, produced: str) -> None:
        """Record ``produced`` as ``tensor``, through a Q/DQ pair if the tensor is quantized."""
        self.read[tensor] = self.qdq(tensor, produced)

    def qdq(self, grid_of: str, x: str) -> str:
        """``DQ(Q(x))`` on the grid of tensor ``grid_of``, or ``x`` if that tensor stays float."""
        tq = self.state.tensor_quant(grid_of) if self.state else None
        if tq is None:
            return x
        scale = self.const(f"{x}_scale", np.array(tq.scale, np.float32))
        zp = self.const(f"{x}_zp", np.array(tq.zero_point, np.uint8))
        q = self.node("QuantizeLinear", [x, scale, zp], f"{x}_q")
        return self.node("DequantizeLinear", [q, scale, zp], f"{x}_dq")

    def layer_params(self, layer: Conv | Linear) -> tuple[str, str]:
        bits = self.state.policy.get(layer.name) if self.state else None
        tq_in = self.state.tensor_quant(layer.inp) if self.state else None
        if bits is None or bits.is_float or tq_in is None:
            return (
                self.const(f"{layer.name}_w", layer.weight.astype(np.float32)),
                self.const(f"{layer.name}_b", layer.bias.astype(np.float32)),
            )
        q, w_scale = quantize_weight(layer.weight, bits.w_bits, self.state.clip_ratios[layer.name])
        w_zp = self.const(f"{layer.name}_w_zp", np.zeros(len(w_scale), np.int8))
        wq = self.const(f"{layer.name}_wq", q)
        ws = self.const(f"{layer.name}_w_scale", w_scale)
        w = self.node("DequantizeLinear", [wq, ws, w_zp], f"{layer.name}_w", axis=0)
        b_scale = (np.float32(tq_in.scale) * w_scale).astype(np.float32)
        b_int = np.round(layer.bias / b_scale).astype(np.int64)
        b_int = np.clip(b_int, -(2**31), 2**31 - 1).astype(np.int32)
        bq = self.const(f"{layer.name}_bq", b_int)
        bs = self.const(f"{layer.name}_b_scale", b_scale)
        b_zp = self.const(f"{layer.name}_b_zp", np.zeros(len(w_scale), np.int32))
        b = self.node("DequantizeLinear", [bq, bs, b_zp], f"{layer.name}_b", axis=0)
        return w, b

    def act(self, act: str, x: str, name: str) -> str:
        if act == "relu":
            return self.node("Relu", [x], f"{name}_relu")
        if act == "relu6":
            lo = self.const(f"{name}_min", np.array(0.0, np.float32))
            hi = self.const(f"{name}_max", np.array(6.0, np.float32))
            return self.node("Clip", [x, lo, hi], f"{name}_relu6")
        return x

    def visit(self, node: object) -> None:
        if isinstance(node, Conv):
            w, b = self.layer_params(node)
            k, pad = node.kernel, (node.kernel - 1) // 2
            y = self.node(
                "Conv",
                [self.read[node.inp], w, b],
                f"{node.name}_conv",
                kernel_shape=[k, k],
                strides=[node.stride] * 2,
                pads=[pad] * 4,
                group=node.groups,
            )
            self.emit(node.out, self.act(node.act, y, node.name))
        elif isinstance(node, Linear):
            w, b = self.layer_params(node)
            y = self.node("Gemm", [self.read[node.inp], w, b], f"{node.name}_gemm", transB=1)
            self.emit(node.out, self.act(node.act, y, node.name))
        elif isinstance(node, Add):
            self.emit(
                node.out,
                self.node("Add", [self.read[node.a], self.read[node.b]], f"{node.name}_sum"),
            )
        elif isinstance(node, Shuffle):
            self.shuffle(node)
        elif isinstance(node, GlobalPool):
            y = self.node("GlobalAveragePool", [self.read[node.inp]], f"{node.name}_gap")
            y = self.qdq(node.out, y)  # integer pooling, then a flatten on the same grid
            self.emit(node.out, self.node("Flatten", [y], f"{node.name}_flat", axis=1))

    def shuffle(self, node: Shuffle) -> None:
        _, c, h, w = self.graph.shapes[node.inp]
        g = node.groups
        split = self.const(f"{node.name}_shape5", np.array([0, g, c // g, h, w], np.int64))
        back = self.const(f"{node.name}_shape4", np.array([0, c, h, w], np.int64))
        x = self.node("Reshape", [self.read[node.inp], split], f"{node.name}_split")
        x = self.qdq(node.inp, x)
        x = self.node("Transpose", [x], f"{node.name}_swap", perm=[0, 2, 1, 3, 4])
        x = self.qdq(node.inp, x)
        x = self.node("Reshape", [x, back], f"{node.name}_merge")
        self.read[node.out] = self.qdq(node.inp, x)


def graph_to_onnx(graph: Graph, state: QuantState | None = None, precision: str = "fp32") -> bytes:
    """Serialize ``graph`` (float) or ``state`` (quantized, QDQ) as ONNX bytes, checked by onnx.

    Args:
        graph: the folded graph (ignored in favour of ``state.graph`` when ``state`` is given).
        state: the quantization to write as QDQ; None writes float32.
        precision: label stored in the metadata (``fp32``, ``int8``, ``mixed``).
    """
    if state is not None:
        graph = state.graph
    meta = {"hwnas.precision": precision}
    if state is not None:
        meta["hwnas.ort_disabled_optimizers"] = json.dumps(DISABLED_OPTIMIZERS)
    return write_graph(_Writer(state, graph), meta)


def write_graph(w: _Writer, meta: dict[str, str], opset: int = OPSET) -> bytes:
    """Serialize the graph of writer ``w`` (whose ``layer_params`` supplies each layer's weights).

    A subclass of the writer may decode weights with opset-18 nodes
    (:mod:`hwnas.export.packed_onnx`); IR version 8 covers opsets 17 and 18.
    """
    graph = w.graph
    w.emit(graph.input_name, graph.input_name)
    for node in graph.nodes:
        w.visit(node)
    w.node("Identity", [w.read[graph.output_name]], "output")
    out_dims = ["batch", *graph.shapes[graph.output_name][1:]]
    in_dims = ["batch", *graph.input_shape[1:]]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, in_dims)
    out = helper.make_tensor_value_info("output", TensorProto.FLOAT, out_dims)
    g = helper.make_graph(w.nodes, "hwnas", [inp], [out], initializer=w.inits)
    model = helper.make_model(
        g, opset_imports=[helper.make_opsetid("", opset)], producer_name="hwnas"
    )
    model.ir_version = 8  # opsets 17 and 18
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return model.SerializeToString()
