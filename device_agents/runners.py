"""Runtimes the agent times models with: onnxruntime and TFLite (ai-edge-litert or tflite-runtime).

A runner turns model bytes into a :class:`LoadedModel` with ``make_inputs`` and ``run``. Runtimes
are imported only when first used, so an agent with just one of them installed works, and
``hello`` can list what is there without importing anything heavy.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from device_agents.protocol import ProtocolError

# distribution name -> import name, in order of preference, per runtime
_TFLITE_MODULES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)
_ORT_GRAPH_LEVELS = ("disabled", "basic", "extended", "all")


def detect_format(model: bytes) -> str:
    """``"tflite"`` for a TFLite flatbuffer (file identifier ``TFL3``), else ``"onnx"``."""
    return "tflite" if model[4:8] == b"TFL3" else "onnx"


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - Python < 3.8
        return None
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def available_runtimes() -> Dict[str, str]:
    """Installed runtimes and versions, without importing them: ``{"onnxruntime": "1.32.0"}``."""
    found: Dict[str, str] = {}
    if importlib.util.find_spec("onnxruntime") is not None:
        found["onnxruntime"] = (
            _dist_version("onnxruntime") or _dist_version("onnxruntime-gpu") or "unknown"
        )
    for dist, module in _TFLITE_MODULES:
        top = module.split(".")[0]
        if importlib.util.find_spec(top) is not None:
            found["tflite"] = f"{dist} {_dist_version(dist) or 'unknown'}"
            break
    return found


class LoadedModel:
    """A model ready to run: its inputs described, a seeded input generator and one ``run``."""

    def __init__(
        self,
        input_specs: List[Dict[str, Any]],
        run: Callable[[List[np.ndarray]], List[np.ndarray]],
        output_names: List[str],
    ) -> None:
        self.input_specs = input_specs  # [{"name", "dtype", "shape"}]
        self.run = run
        self.output_names = output_names

    def make_inputs(self, seed: int) -> List[np.ndarray]:
        """Seeded inputs: standard normal floats, uniform integers over the dtype's range."""
        rng = np.random.default_rng(seed)
        arrays = []
        for spec in self.input_specs:
            dtype = np.dtype(spec["dtype"])
            shape = spec["shape"]
            if dtype.kind == "f":
                arrays.append(rng.standard_normal(shape).astype(dtype))
            elif dtype.kind in "iu":
                info = np.iinfo(dtype)
                arrays.append(
                    rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)
                )
            elif dtype.kind == "b":
                arrays.append(rng.integers(0, 2, shape).astype(dtype))
            else:
                raise ProtocolError(
                    "unsupported_model",
                    f"input {spec['name']!r} has unsupported dtype {dtype}",
                )
        return arrays

    def check_inputs(self, arrays: Sequence[np.ndarray]) -> None:
        if len(arrays) != len(self.input_specs):
            raise ProtocolError(
                "bad_request",
                f"model takes {len(self.input_specs)} inputs, got {len(arrays)}",
            )
        for array, spec in zip(arrays, self.input_specs):
            if list(array.shape) != list(spec["shape"]) or array.dtype != np.dtype(spec["dtype"]):
                raise ProtocolError(
                    "bad_request",
                    f"input {spec['name']!r} must be {spec['dtype']}{list(spec['shape'])}, "
                    f"got {array.dtype}{list(array.shape)}",
                )


_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int8)": "int8",
    "tensor(uint8)": "uint8",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def load_onnxruntime(model: bytes, threads: int, options: Dict[str, Any]) -> LoadedModel:
    """An onnxruntime CPU session: ``threads`` intra-op threads, 1 inter-op, sequential execution.

    Options: ``graph_optimization`` (disabled|basic|extended|all, default all) and
    ``disabled_optimizers`` (list of optimizer names, e.g. ``["WeightBiasQuantization"]`` to keep
    excluded nodes of a mixed-precision QDQ model in fp32).
    """
    ort = importlib.import_module("onnxruntime")
    level = options.get("graph_optimization", "all")
    if level not in _ORT_GRAPH_LEVELS:
        raise ProtocolError("bad_request", f"graph_optimization must be one of {_ORT_GRAPH_LEVELS}")
    disabled = options.get("disabled_optimizers", [])
    if not isinstance(disabled, list) or not all(isinstance(d, str) for d in disabled):
        raise ProtocolError("bad_request", "disabled_optimizers must be a list of strings")
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = {
        "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    so.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            model,
            sess_options=so,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled or None,
        )
    except Exception as exc:  # onnxruntime raises its own exception types for bad models
        raise ProtocolError("bad_model", f"onnxruntime could not load the model: {exc}") from None
    specs = []
    for inp in session.get_inputs():
        dtype = _ORT_TYPES.get(inp.type)
        if dtype is None:
            raise ProtocolError(
                "unsupported_model",
                f"input {inp.name!r} has unsupported type {inp.type}",
            )
        shape = [d if isinstance(d, int) and d > 0 else 1 for d in inp.shape]
        specs.append({"name": inp.name, "dtype": dtype, "shape": shape})
    names = [inp["name"] for inp in specs]
    outputs = [o.name for o in session.get_outputs()]

    def run(arrays: List[np.ndarray]) -> List[np.ndarray]:
        return session.run(outputs, dict(zip(names, arrays)))

    return LoadedModel(specs, run, outputs)


def load_tflite(model: bytes, threads: int, options: Dict[str, Any]) -> LoadedModel:
    """A TFLite interpreter (ai-edge-litert, else tflite-runtime) with ``threads`` threads."""
    interpreter_cls = None
    for _, module in _TFLITE_MODULES:
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            interpreter_cls = importlib.import_module(module).Interpreter
            break
    if interpreter_cls is None:
        raise ProtocolError(
            "no_runtime",
            "no TFLite runtime installed (ai-edge-litert or tflite-runtime)",
        )
    try:
        interp = interpreter_cls(model_content=bytes(model), num_threads=threads)
        interp.allocate_tensors()
    except Exception as exc:  # the interpreter raises ValueError/RuntimeError for bad models
        raise ProtocolError("bad_model", f"TFLite could not load the model: {exc}") from None
    ins = interp.get_input_details()
    outs = interp.get_output_details()
    specs = [
        {
            "name": d["name"],
            "dtype": np.dtype(d["dtype"]).name,
            "shape": [int(s) for s in d["shape"]],
        }
        for d in ins
    ]

    def run(arrays: List[np.ndarray]) -> List[np.ndarray]:
        for detail, array in zip(ins, arrays):
            interp.set_tensor(detail["index"], array)
        interp.invoke()
        return [interp.get_tensor(d["index"]) for d in outs]

    return LoadedModel(specs, run, [d["name"] for d in outs])


LOADERS: Dict[str, Callable[[bytes, int, Dict[str, Any]], LoadedModel]] = {
    "onnxruntime": load_onnxruntime,
    "tflite": load_tflite,
}
FORMAT_RUNTIMES = {"onnx": ("onnxruntime",), "tflite": ("tflite",)}
