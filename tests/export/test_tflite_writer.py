"""``hwnas.export.tflite_writer``: .tflite files without TensorFlow, run in LiteRT."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.export.tflite_writer import graph_to_tflite
from hwnas.export.verify import run_tflite, tflite_interpreter_class
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import LayerBits
from hwnas.quant.calibrate import calibrate
from hwnas.quant.qnet import QuantNet, numpy_forward
from tests.quant.conftest import SMALL_SPECS


@pytest.fixture(scope="module")
def module_and_graph():
    module = build_sequential(SMALL_SPECS, seed=4)
    return module, graph_from_module(module, SMALL_SPECS[0].in_shape)


def _x(n: int = 32) -> np.ndarray:
    return np.random.default_rng(2).standard_normal((n, 3, 8, 8)).astype(np.float32)


def _ops(data: bytes) -> list[str]:
    interp = tflite_interpreter_class()(model_content=data)
    interp.allocate_tensors()
    return [op["op_name"] for op in interp._get_ops_details()]


@pytest.mark.parametrize("grouped", ["native", "split"])
def test_fp32_matches_pytorch(module_and_graph, grouped: str) -> None:
    module, graph = module_and_graph
    data = graph_to_tflite(graph, grouped=grouped)
    x = _x()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run_tflite(data, x), want, rtol=0, atol=2e-5)
    ops = _ops(data)
    assert {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "ADD",
        "MEAN",
        "FULLY_CONNECTED",
        "RESHAPE",
        "TRANSPOSE",
        "PAD",
    } <= set(ops)
    assert ("CONCATENATION" in ops) == (grouped == "split")


def test_fp16_weights_are_stored_as_float16(module_and_graph) -> None:
    module, graph = module_and_graph
    data = graph_to_tflite(graph, fp16=True)
    assert len(data) < 0.6 * len(graph_to_tflite(graph))
    x = _x()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    got = run_tflite(data, x)
    assert np.abs(got - want).max() <= 1e-2 * np.abs(want).max()
    assert "DEQUANTIZE" in _ops(data)


@pytest.mark.parametrize("grouped", ["native", "split"])
@pytest.mark.parametrize("mixed", [False, True])
def test_int8_matches_the_fake_quantized_model(module_and_graph, grouped: str, mixed: bool) -> None:
    _, graph = module_and_graph
    policy = {
        layer.name: LayerBits(32, 32) if mixed and i % 3 == 1 else LayerBits(8, 8)
        for i, layer in enumerate(graph.layers)
    }
    x = _x()
    net = calibrate(QuantNet(graph, policy), [torch.from_numpy(x)])
    state = net.to_state()
    data = graph_to_tflite(graph, state, grouped=grouped)
    got, want = run_tflite(data, x), numpy_forward(net, x)
    step = state.tensor_quant("output").scale
    assert np.abs(got - want).max() <= 2 * step  # TFLite's fixed-point ADD/MEAN round ties
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95
    interp = tflite_interpreter_class()(model_content=data)
    types = [d["dtype"] for d in interp.get_tensor_details()]
    assert np.int8 in types and np.int32 in types  # int8 tensors, int32 biases
    assert np.float32 in types  # the float input/output (and float layers if mixed)
    assert "DEQUANTIZE" in _ops(data)


def test_input_is_nhwc_and_batch_resizable(module_and_graph) -> None:
    _, graph = module_and_graph
    interp = tflite_interpreter_class()(model_content=graph_to_tflite(graph))
    detail = interp.get_input_details()[0]
    assert tuple(detail["shape"]) == (1, 8, 8, 3)
    assert run_tflite(graph_to_tflite(graph), _x(5)).shape == (5, 10)
