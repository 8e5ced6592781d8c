"""A small builder for TFLite flatbuffers, without TensorFlow.

Uses the flatbuffer object API that ``ai-edge-litert`` ships (``ai_edge_litert.
schema_py_generated``) and its serializer (``ai_edge_litert.tools.flatbuffer_utils``), as found to
work in ENVIRONMENT.md ("TFLite"). :class:`TFLiteBuilder` hands out tensors (with constant data and
quantization parameters), operators (deduplicating operator codes) and writes the model bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

_DTYPES = {
    np.dtype(np.float32): "FLOAT32",
    np.dtype(np.float16): "FLOAT16",
    np.dtype(np.int8): "INT8",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
}


def schema() -> Any:
    """The ``schema_py_generated`` module of ai-edge-litert (imported on first use)."""
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


class TFLiteBuilder:
    """Accumulates one subgraph; ``tensor``/``const``/``op`` return tensor indices."""

    def __init__(self, description: str) -> None:
        self.s = schema()
        self.description = description
        self.tensors: list[Any] = []
        self.buffers: list[Any] = [self.s.BufferT()]  # buffer 0: the empty sentinel
        self.opcodes: dict[tuple[int, int], int] = {}
        self.codes: list[Any] = []
        self.operators: list[Any] = []

    def tensor(
        self,
        name: str,
        shape: Sequence[int],
        dtype: Any = np.float32,
        scale: Sequence[float] | None = None,
        zero_point: Sequence[int] | None = None,
        axis: int = 0,
        data: np.ndarray | None = None,
    ) -> int:
        """Add a tensor (constant if ``data`` is given; quantized if ``scale`` is given)."""
        t = self.s.TensorT()
        t.name = name
        t.shape = [int(d) for d in shape]
        t.type = getattr(self.s.TensorType, _DTYPES[np.dtype(dtype)])
        t.buffer = 0
        if data is not None:
            buf = self.s.BufferT()
            arr = np.array(data, dtype=dtype, order="C")
            if list(arr.shape) != t.shape:
                raise ValueError(f"tensor {name}: data shape {arr.shape} != {t.shape}")
            buf.data = np.frombuffer(arr.tobytes(), dtype=np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        if scale is not None:
            q = self.s.QuantizationParametersT()
            q.scale = [float(v) for v in scale]
            q.zeroPoint = [
                int(v) for v in (zero_point if zero_point is not None else [0] * len(scale))
            ]
            q.quantizedDimension = axis
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def const(self, name: str, data: np.ndarray, **quant: Any) -> int:
        """A constant tensor holding ``data`` (its dtype and shape)."""
        data = np.asarray(data)
        return self.tensor(name, data.shape, data.dtype, data=data, **quant)

    def like(self, name: str, other: int, shape: Sequence[int] | None = None) -> int:
        """A new tensor with the dtype and quantization of tensor ``other``."""
        src = self.tensors[other]
        t = self.s.TensorT()
        t.name, t.type, t.buffer = name, src.type, 0
        t.shape = list(shape) if shape is not None else list(src.shape)
        t.quantization = src.quantization
        self.tensors.append(t)
        return len(self.tensors) - 1

    def op(
        self,
        code: str,
        inputs: Sequence[int],
        outputs: Sequence[int],
        options: Any = None,
        options_type: str | None = None,
        version: int = 1,
    ) -> None:
        """Append operator ``code`` (a ``BuiltinOperator`` name) with its builtin options."""
        builtin = getattr(self.s.BuiltinOperator, code)
        key = (builtin, version)
        if key not in self.opcodes:
            oc = self.s.OperatorCodeT()
            oc.builtinCode = builtin
            oc.deprecatedBuiltinCode = min(builtin, 127)
            oc.version = version
            self.opcodes[key] = len(self.codes)
            self.codes.append(oc)
        o = self.s.OperatorT()
        o.opcodeIndex = self.opcodes[key]
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        if options is not None:
            o.builtinOptionsType = getattr(self.s.BuiltinOptions, options_type)
            o.builtinOptions = options
        self.operators.append(o)

    def options(self, kind: str, **fields: Any) -> Any:
        """A ``<kind>OptionsT`` object with ``fields`` set (enum values given by name)."""
        obj = getattr(self.s, f"{kind}OptionsT")()
        for name, value in fields.items():
            if name == "padding":
                value = getattr(self.s.Padding, value)
            elif name == "fusedActivationFunction":
                value = getattr(self.s.ActivationFunctionType, value)
            setattr(obj, name, value)
        return obj

    def finish(self, inputs: Sequence[int], outputs: Sequence[int]) -> bytes:
        """Serialize the model with one subgraph ``main``."""
        from ai_edge_litert.tools import flatbuffer_utils

        sg = self.s.SubGraphT()
        sg.tensors = self.tensors
        sg.inputs = list(inputs)
        sg.outputs = list(outputs)
        sg.operators = self.operators
        sg.name = "main"
        model = self.s.ModelT()
        model.version = 3
        model.description = self.description
        model.operatorCodes = self.codes
        model.subgraphs = [sg]
        model.buffers = self.buffers
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
