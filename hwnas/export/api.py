"""A graph (and its quantization parameters) -> the bytes of a model file, in a format.

Export knows how to write, not how the parameters were found: it takes a
:class:`~hwnas.graph.nodes.Graph` and, for quantized models, a
:class:`~hwnas.graph.qparams.QuantState` (made by :mod:`hwnas.quant`), and returns ONNX or TFLite
bytes. ``hwnas export`` as a command (load a run, calibrate, write, verify, time) is
:mod:`hwnas.runs.export`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hwnas.graph.nodes import Graph
from hwnas.graph.qparams import QuantState
from hwnas.graph.wcodes import WeightCode


def write_model(graph: Graph, state: QuantState | None, fmt: str, precision: str) -> bytes:
    """Serialize ``graph``/``state`` as ``fmt`` (``onnx``: ``precision`` fp32, int8 or mixed)."""
    if fmt == "onnx":
        from hwnas.export.onnx_writer import graph_to_onnx

        return graph_to_onnx(graph, state, precision)
    from hwnas.export.tflite_writer import graph_to_tflite

    return graph_to_tflite(graph, state)


def network_bytes(graph: Graph, state: QuantState | None, fmt: str) -> bytes:
    """The deployable file of ``graph`` (float) or ``state`` (quantized) in format ``fmt``."""
    if fmt == "onnx":
        from hwnas.export.onnx_writer import graph_to_onnx

        return graph_to_onnx(graph, state, "fp32" if state is None else "mixed")
    from hwnas.export.tflite_writer import graph_to_tflite

    return graph_to_tflite(graph, state)


def runtime_options(fmt: str, quantized: bool) -> dict | None:
    """Session options a quantized ONNX model needs to keep its float layers float."""
    if fmt == "onnx" and quantized:
        from hwnas.export.onnx_writer import DISABLED_OPTIMIZERS

        return {"disabled_optimizers": list(DISABLED_OPTIMIZERS)}
    return None


def onnx_to_fp16(data: bytes) -> bytes:
    """An fp32 ONNX model with every float tensor (weights, inputs, outputs) in float16."""
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load_from_string(data)
    graph = model.graph
    for i, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            half = numpy_helper.from_array(
                numpy_helper.to_array(init).astype(np.float16), init.name
            )
            graph.initializer[i].CopyFrom(half)
    for value in [*graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
    del graph.value_info[:]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def write_packed(graph: Graph, codes: Mapping[str, WeightCode], fmt: str) -> bytes:
    """``graph`` as ``fmt`` (``onnx``/``tflite``) with each layer in ``codes`` at its code's bits.

    HAQ's model-size mode: the file stores the codes (ONNX: exact bit-planes; TFLite: INT4/INT8)
    and decodes them in the model; layers not in ``codes`` keep float32 weights, biases stay
    float32. Input/output names and shapes are those of the fp32 export, and the file computes
    :func:`hwnas.graph.wcodes.dequantized_graph` ``(graph, codes)``.
    """
    if fmt == "onnx":
        from hwnas.export.packed_onnx import graph_to_packed_onnx

        return graph_to_packed_onnx(graph, codes)
    if fmt == "tflite":
        from hwnas.export.packed_tflite import graph_to_packed_tflite

        return graph_to_packed_tflite(graph, codes)
    raise ValueError(f"packed export formats are onnx and tflite, got {fmt!r}")
