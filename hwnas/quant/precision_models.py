"""Model files of one block spec (or one graph) at a given precision, for timing on a device.

This is the precision dimension of the LUT: ``precision_model(spec, "int8", "onnx")`` returns
the bytes ``hwnas build-lut --precision int8`` sends to the agent. Models are made exactly as the
deployed exports are (:mod:`hwnas.export.onnx_writer`, :mod:`hwnas.export.tflite_writer`), so a
LUT entry times the same kernels the exported network will run:

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

import numpy as np

from hwnas.blocks.specs import BlockSpec
from hwnas.errors import UserError
from hwnas.quant.graph import Graph

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
CALIBRATION_BATCH = 4


def spec_graph(spec: BlockSpec, seed: int = 0) -> Graph:
    """The folded graph of ``spec``'s module (``build_module(spec, seed)``)."""
    from hwnas.blocks.torch_blocks import build_module
    from hwnas.quant.convert import graph_from_module

    return graph_from_module(build_module(spec, seed), spec.in_shape)


def int8_state(graph: Graph, seed: int = 0, w_bits: int = 8):
    """A uniform int8 :class:`~hwnas.quant.qnet.QuantState` of ``graph``, calibrated on noise."""
    import torch

    from hwnas.quant.calibrate import calibrate
    from hwnas.quant.plan import LayerBits
    from hwnas.quant.qnet import QuantNet

    net = QuantNet(graph, {layer.name: LayerBits(w_bits, 8) for layer in graph.layers})
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((CALIBRATION_BATCH, *graph.input_shape[1:]), generator=gen)
    return calibrate(net, [x]).to_state()


def graph_model(graph: Graph, precision: str, fmt: str = "onnx", seed: int = 0) -> bytes:
    """Bytes of ``graph`` as ``fmt`` (``onnx``/``tflite``) at ``precision`` (fp32/fp16/int8)."""
    if fmt not in FORMATS:
        raise UserError(f"unknown model format {fmt!r}; known: {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if fmt == "onnx":
        from hwnas.export.onnx_writer import graph_to_onnx

        if precision == "int8":
            return graph_to_onnx(graph, int8_state(graph, seed), "int8")
        data = graph_to_onnx(graph)
        return onnx_to_fp16(data) if precision == "fp16" else data
    from hwnas.export.tflite_writer import graph_to_tflite

    if precision == "int8":
        return graph_to_tflite(graph, int8_state(graph, seed))
    return graph_to_tflite(graph, fp16=precision == "fp16")


def precision_model(spec: BlockSpec, precision: str, fmt: str = "onnx", seed: int = 0) -> bytes:
    """Bytes of block ``spec`` at ``precision`` as ``fmt``: the hook ``build-lut`` calls.

    Args:
        spec: a block spec of an FBNet-space op (conv, ib, skip, gap, fc).
        precision: ``fp32``, ``fp16`` or ``int8``.
        fmt: ``onnx`` (onnxruntime) or ``tflite``.
        seed: weight-init and calibration seed.

    Returns:
        Model bytes with one float32 input (NCHW for ONNX, NHWC for TFLite; fp16 ONNX models
        take float16) at batch 1.
    """
    if spec.op not in ("conv", "ib", "skip", "gap", "fc"):
        raise UserError(
            f"per-precision models exist for FBNet-space ops (conv, ib, skip, gap, fc), "
            f"not {spec.op!r}"
        )
    return graph_model(spec_graph(spec, seed), precision, fmt, seed)


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
