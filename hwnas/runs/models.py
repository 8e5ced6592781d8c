"""Model files of one block spec (or one graph) at a given precision, for timing on a device.

This is the precision dimension of the LUT: ``precision_model(spec, "int8", "onnx")`` returns
the bytes ``hwnas build-lut --precision int8`` sends to the agent. Models are made exactly as the
deployed exports are (:mod:`hwnas.export.onnx_writer`, :mod:`hwnas.export.tflite_writer`), so a
LUT entry times the same kernels the exported network will run. This is where the run layer
joins quantization (the int8 parameters, :func:`hwnas.quant.calibrate.int8_state`) and export
(the writers); ``hwnas build-lut`` is handed :func:`graph_model` and asks it for block graphs at
a precision:

=========  =======================================  =======================================
precision  ONNX (onnxruntime)                       TFLite (LiteRT / tflite-runtime)
=========  =======================================  =======================================
fp32       float graph, BN folded                   float graph, BN folded
fp16       float16 weights *and* activations        float16 weights behind DEQUANTIZE
int8       QDQ: uint8 activations, int8 per-channel  full integer: int8 activations and
           weights, int32 bias                      per-channel weights, int32 bias
=========  =======================================  =======================================

int8 grids come from calibrating on seeded standard-normal inputs (latency does not depend on
the values). Which precision is actually *faster* is a measured fact per device and runtime, see
``docs/precision.md``; nothing here assumes it.
"""

from __future__ import annotations

from hwnas.blocks.specs import BlockSpec
from hwnas.graph.blocks import FORMATS, PRECISIONS, check_model_kind, check_precision_op
from hwnas.graph.nodes import Graph

__all__ = ["FORMATS", "PRECISIONS", "graph_model", "precision_model"]


def graph_model(graph: Graph, precision: str, fmt: str = "onnx", seed: int = 0) -> bytes:
    """Bytes of ``graph`` as ``fmt`` (``onnx``/``tflite``) at ``precision`` (fp32/fp16/int8)."""
    check_model_kind(precision, fmt)
    if fmt == "onnx":
        from hwnas.export.api import onnx_to_fp16
        from hwnas.export.onnx_writer import graph_to_onnx

        if precision == "int8":
            return graph_to_onnx(graph, _int8_state(graph, seed), "int8")
        data = graph_to_onnx(graph)
        return onnx_to_fp16(data) if precision == "fp16" else data
    from hwnas.export.tflite_writer import graph_to_tflite

    if precision == "int8":
        return graph_to_tflite(graph, _int8_state(graph, seed))
    return graph_to_tflite(graph, fp16=precision == "fp16")


def precision_model(spec: BlockSpec, precision: str, fmt: str = "onnx", seed: int = 0) -> bytes:
    """Bytes of block ``spec`` at ``precision`` as ``fmt``.

    Args:
        spec: a block spec of an FBNet-space op (conv, ib, skip, gap, fc).
        precision: ``fp32``, ``fp16`` or ``int8``.
        fmt: ``onnx`` (onnxruntime) or ``tflite``.
        seed: weight-init and calibration seed.

    Returns:
        Model bytes with one float32 input (NCHW for ONNX, NHWC for TFLite; fp16 ONNX models
        take float16) at batch 1.
    """
    from hwnas.graph.lower import spec_graph

    check_precision_op(spec)
    return graph_model(spec_graph(spec, seed), precision, fmt, seed)


def _int8_state(graph: Graph, seed: int):
    from hwnas.quant.calibrate import int8_state

    return int8_state(graph, seed)
