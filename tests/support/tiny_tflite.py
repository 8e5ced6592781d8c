"""Write a one-op FULLY_CONNECTED ``.tflite`` model without TensorFlow.

Test support only: the emulated-Pi test needs a real TFLite flatbuffer to run in
``ai_edge_litert`` on both the host and the emulated arm64 guest. The model is built with the
flatbuffer object API shipped in ``ai_edge_litert.schema_py_generated`` and serialised with
``ai_edge_litert.tools.flatbuffer_utils`` (see ENVIRONMENT.md, "TFLite").

The graph is ``y = act(x @ W.T + b)`` with ``x`` of shape ``(1, in_features)``, ``W`` of shape
``(out_features, in_features)`` and ``b`` of shape ``(out_features,)``, all float32; ``act`` is
the identity or ReLU fused into the op.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def fully_connected_tflite(weight: np.ndarray, bias: np.ndarray, *, relu: bool = False) -> bytes:
    """Serialise a single fused FULLY_CONNECTED op as a ``.tflite`` flatbuffer.

    Args:
        weight: Float32 matrix of shape ``(out_features, in_features)``.
        bias: Float32 vector of shape ``(out_features,)``.
        relu: Fuse a ReLU activation into the op.

    Returns:
        The model bytes; input tensor ``"x"`` of shape ``(1, in_features)``, output tensor
        ``"y"`` of shape ``(1, out_features)``.

    Raises:
        ValueError: If the shapes of ``weight`` and ``bias`` do not fit together.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    weight = np.ascontiguousarray(weight, dtype=np.float32)
    bias = np.ascontiguousarray(bias, dtype=np.float32)
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ValueError(f"weight {weight.shape} and bias {bias.shape} do not form a dense layer")
    out_features, in_features = weight.shape

    # Buffer 0 is the empty sentinel required by the schema; tensors without data point at it.
    buffers = [schema.BufferT(), _buffer(schema, weight), _buffer(schema, bias)]
    tensors = [
        _tensor(schema, "x", [1, in_features], buffer=0),
        _tensor(schema, "w", [out_features, in_features], buffer=1),
        _tensor(schema, "b", [out_features], buffer=2),
        _tensor(schema, "y", [1, out_features], buffer=0),
    ]

    options = schema.FullyConnectedOptionsT()
    options.fusedActivationFunction = (
        schema.ActivationFunctionType.RELU if relu else schema.ActivationFunctionType.NONE
    )
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs = [0, 1, 2]
    op.outputs = [3]
    op.builtinOptionsType = schema.BuiltinOptions.FullyConnectedOptions
    op.builtinOptions = options

    code = schema.OperatorCodeT()
    code.builtinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.deprecatedBuiltinCode = schema.BuiltinOperator.FULLY_CONNECTED
    code.version = 1

    subgraph = schema.SubGraphT()
    subgraph.tensors = tensors
    subgraph.inputs = [0]
    subgraph.outputs = [3]
    subgraph.operators = [op]
    subgraph.name = "main"

    model = schema.ModelT()
    model.version = 3
    model.description = "hwnas test: one FULLY_CONNECTED op"
    model.operatorCodes = [code]
    model.subgraphs = [subgraph]
    model.buffers = buffers
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _buffer(schema: ModuleType, array: np.ndarray) -> Any:
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(array.tobytes(), dtype=np.uint8)
    return buffer


def _tensor(schema: ModuleType, name: str, shape: list[int], *, buffer: int) -> Any:
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = shape
    tensor.type = schema.TensorType.FLOAT32
    tensor.buffer = buffer
    return tensor
