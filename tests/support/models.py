"""Small real ONNX models built with onnx.helper (no torch needed), for agent and device tests."""

from __future__ import annotations

import numpy as np


def conv_relu_onnx(cin: int = 16, cout: int = 16, size: int = 16, seed: int = 0) -> bytes:
    """A 3x3 Conv (+bias) + Relu on a (1, cin, size, size) float input; returns the model bytes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((cout, cin, 3, 3)).astype(np.float32) * 0.1
    bias = rng.standard_normal(cout).astype(np.float32) * 0.1
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["conv"], ["output"]),
        ],
        "conv_relu",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, cin, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, cout, size, size])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def conv_relu_reference(model: bytes, x: np.ndarray) -> np.ndarray:
    """The model's output computed by an independent onnxruntime session on this host."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]
