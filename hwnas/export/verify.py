"""Verification of an exported model: its predictions in the target runtime against PyTorch.

Every export is run on the test split in the runtime it targets (onnxruntime, or LiteRT /
tflite-runtime for ``.tflite``) and its predictions compared with the PyTorch model it came from
(the fake-quantized model for int8 and mixed precision, which is the exact integer arithmetic up
to rounding ties). Timing it on the device is the run layer's (:mod:`hwnas.runs.export`).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from hwnas.errors import UserError

BATCH = 128
_TFLITE_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter")


@dataclass(frozen=True)
class Agreement:
    """Prediction agreement of an export with its reference on ``n`` test images."""

    n: int
    agreement: float  # fraction of images with the same top-1 class
    export_accuracy: float  # %
    reference_accuracy: float  # %
    max_abs_logit_diff: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def run_onnx(data: bytes, x: np.ndarray, options: dict | None = None) -> np.ndarray:
    """Logits of an ONNX model (input ``"input"`` NCHW) on ``x`` in batches, 1 thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    disabled = (options or {}).get("disabled_optimizers")
    session = ort.InferenceSession(
        data, so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled or None
    )
    out = [session.run(None, {"input": x[i : i + BATCH]})[0] for i in range(0, len(x), BATCH)]
    return np.concatenate(out)


def tflite_interpreter_class() -> type:
    """LiteRT's Interpreter, else tflite-runtime's; UserError if neither is installed."""
    for name in _TFLITE_MODULES:
        try:
            return importlib.import_module(name).Interpreter
        except ImportError:
            continue
    raise UserError("no TFLite runtime installed (pip install ai-edge-litert)")


def run_tflite(data: bytes, x: np.ndarray) -> np.ndarray:
    """Logits of a ``.tflite`` model (input NHWC) on NCHW ``x``, in batches, 1 thread."""
    interp = tflite_interpreter_class()(model_content=bytes(data), num_threads=1)
    inp = interp.get_input_details()[0]["index"]
    out_index = interp.get_output_details()[0]["index"]
    outs, size = [], None
    for i in range(0, len(x), BATCH):
        chunk = np.ascontiguousarray(x[i : i + BATCH].transpose(0, 2, 3, 1), dtype=np.float32)
        if chunk.shape[0] != size:
            interp.resize_tensor_input(inp, list(chunk.shape))
            interp.allocate_tensors()
            size = chunk.shape[0]
        interp.set_tensor(inp, chunk)
        interp.invoke()
        outs.append(interp.get_tensor(out_index).copy())
    return np.concatenate(outs)


def run_export(data: bytes, fmt: str, x: np.ndarray, options: dict | None = None) -> np.ndarray:
    """Logits of exported ``data`` (``onnx``/``tflite``) on NCHW float32 images ``x``."""
    return run_onnx(data, x, options) if fmt == "onnx" else run_tflite(data, x)


def agreement(
    export_logits: np.ndarray, reference_logits: np.ndarray, labels: np.ndarray
) -> Agreement:
    """Compare two sets of logits (N, classes) on labelled images."""
    pe, pr = export_logits.argmax(1), reference_logits.argmax(1)
    return Agreement(
        n=len(labels),
        agreement=float((pe == pr).mean()),
        export_accuracy=100.0 * float((pe == labels).mean()),
        reference_accuracy=100.0 * float((pr == labels).mean()),
        max_abs_logit_diff=float(np.abs(export_logits - reference_logits).max()),
    )
