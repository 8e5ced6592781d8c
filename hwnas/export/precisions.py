"""Model bytes of a whole network or of one of its layers at a named precision, ONNX or TFLite.

The precisions a runtime can be asked to execute, each written from the same BN-folded graph:

===========  =============================================  ===========================================
precision    ONNX (onnxruntime CPU EP)                      TFLite (LiteRT)
===========  =============================================  ===========================================
fp32         float graph                                    float graph
fp16         float16 weights *and* activations              float16 weights behind DEQUANTIZE
int8         QDQ: uint8 activations, int8 weights           full integer: int8 activations and weights
dyn_int8     int8 weights, DynamicQuantizeLinear +          int8 weights, float activations (hybrid
             ConvInteger / MatMulInteger + float rescale    kernels quantize the input at run time)
int16x8      QDQ (opset 21): int16 activations, int8        full integer: int16 activations, int8
             weights, int32 bias                            weights, int64 bias
===========  =============================================  ===========================================

``int8`` and ``int16x8`` need activation ranges: a calibrated uniform
:class:`~hwnas.graph.qparams.QuantState` of the network (its int8 grids; 16x8 reuses their ranges
on symmetric int16 grids). The others need none. Which of these is *faster* is measured on the
device (:mod:`hwnas.runs.profile`), never assumed here.

A layer's model (:func:`layer_model`) is that conv or linear alone, with the network's weights
and, for the calibrated precisions, the network's grids of its input and output: the kernel the
runtime picks for it is the one it picks inside the network. Torch-free.
"""

from __future__ import annotations

import dataclasses

from hwnas.graph.nodes import Graph, Layer
from hwnas.graph.qparams import QuantState, TensorPlan

PRECISIONS = ("fp32", "fp16", "int8", "dyn_int8", "int16x8")
FORMAT_PRECISIONS = {"onnx": PRECISIONS, "tflite": PRECISIONS}
CALIBRATED = ("int8", "int16x8")  # need a QuantState (activation ranges)


def check_precision(precision: str, fmt: str) -> None:
    """ValueError unless ``fmt`` can be written at ``precision``."""
    if fmt not in FORMAT_PRECISIONS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMAT_PRECISIONS)}")
    if precision not in FORMAT_PRECISIONS[fmt]:
        known = ", ".join(FORMAT_PRECISIONS[fmt])
        raise ValueError(f"{fmt} has no precision {precision!r}; known: {known}")


def model_bytes(
    graph: Graph,
    precision: str,
    fmt: str,
    state: QuantState | None = None,
    w_bits: int = 8,
) -> bytes:
    """``graph`` as ``fmt`` with every layer at ``precision``.

    Args:
        graph: the folded float graph.
        precision: one of :data:`PRECISIONS`.
        fmt: ``onnx`` or ``tflite``.
        state: a calibrated uniform int8 state of ``graph``; required for :data:`CALIBRATED`
            precisions (int8 uses it as it is: its weight bits decide int8's weight bits).
        w_bits: weight bits of ``dyn_int8`` (default 8; TFLite's hybrid kernels accumulate
            in int32. onnxruntime's ConvInteger was exact with 8-bit weights on the Xeon with
            VNNI used here; on a CPU where :func:`hwnas.runs.measure.probe_int8_weight_bits`
            finds saturating u8 x s8 kernels, pass 7 as for int8: not checked on such a CPU).
    """
    check_precision(precision, fmt)
    if precision in CALIBRATED and state is None:
        raise ValueError(f"precision {precision} needs a calibrated QuantState (ranges)")
    if fmt == "onnx":
        from hwnas.export import onnx_precisions as extra
        from hwnas.export.api import onnx_to_fp16
        from hwnas.export.onnx_writer import graph_to_onnx

        if precision == "fp32":
            return graph_to_onnx(graph)
        if precision == "fp16":
            return onnx_to_fp16(graph_to_onnx(graph))
        if precision == "int8":
            return graph_to_onnx(graph, state, "int8")
        if precision == "dyn_int8":
            return extra.graph_to_onnx_dynamic(graph, w_bits)
        return extra.graph_to_onnx_16x8(state)
    from hwnas.export import tflite_precisions as extra
    from hwnas.export.tflite_writer import graph_to_tflite

    if precision in ("fp32", "fp16"):
        return graph_to_tflite(graph, fp16=precision == "fp16")
    if precision == "int8":
        return graph_to_tflite(graph, state)
    if precision == "dyn_int8":
        return extra.graph_to_tflite_dynamic(graph, w_bits)
    return extra.graph_to_tflite_16x8(state)


def runtime_options(precision: str, fmt: str) -> dict | None:
    """Session options the runtime needs for a model of ``precision`` (None: the defaults).

    Uniform int8 ONNX is loaded as the mixed exports are (``WeightBiasQuantization`` off), so
    a layer times the same kernels it runs inside a mixed network.
    """
    if fmt == "onnx" and precision == "int8":
        from hwnas.export.api import runtime_options as export_options

        return export_options(fmt, True)
    return None


def layer_graph(graph: Graph, layer: Layer) -> Graph:
    """``layer`` of ``graph`` alone: input ``input`` of its input's shape, output ``output``."""
    node = dataclasses.replace(layer, inp="input", out="output")
    return Graph((node,), tuple(graph.shapes[layer.inp]))


def layer_state(state: QuantState, layer: Layer) -> QuantState:
    """The quantization of :func:`layer_graph` taken from the network's ``state``."""
    single = layer_graph(state.graph, layer)
    grids = {"input": state.tensor_quant(layer.inp), "output": state.tensor_quant(layer.out)}
    if any(g is None for g in grids.values()) or layer.name not in state.policy:
        raise ValueError(f"layer {layer.name} is not integer in this state")
    return QuantState(
        graph=single,
        policy={layer.name: state.policy[layer.name]},
        plan=TensorPlan({t: g.bits for t, g in grids.items()}, {}),
        tensors=grids,
        clip_ratios={layer.name: state.clip_ratios.get(layer.name, 1.0)},
    )


def layer_model(
    graph: Graph,
    layer: Layer,
    precision: str,
    fmt: str,
    state: QuantState | None = None,
    w_bits: int = 8,
) -> bytes:
    """Model bytes of one conv / linear of ``graph`` at ``precision`` (see :func:`model_bytes`)."""
    single = layer_graph(graph, layer)
    sub = layer_state(state, layer) if precision in CALIBRATED and state is not None else None
    return model_bytes(single, precision, fmt, sub, w_bits)
