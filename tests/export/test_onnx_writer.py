"""``hwnas.export.onnx_writer``: float and QDQ ONNX from the graph, run in onnxruntime."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.export.onnx_writer import DISABLED_OPTIMIZERS, graph_to_onnx
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import LayerBits
from hwnas.quant.calibrate import calibrate
from hwnas.quant.qnet import QuantNet, numpy_forward
from hwnas.runs.measure import PROBE_CHANNELS, _saturation_probe_onnx
from tests.quant.conftest import SMALL_SPECS


def host_int8_weight_bits() -> int:
    """7 if this CPU's onnxruntime int8 kernels saturate with 8-bit weights, else 8."""
    session = ort.InferenceSession(_saturation_probe_onnx(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.full((1, PROBE_CHANNELS, 1, 1), 255.0, np.float32)})
    exact = PROBE_CHANNELS * 255 * 127
    return 8 if abs(float(y.ravel()[0]) - exact) <= 0.01 * exact else 7


def _session(data: bytes, disabled: list[str] | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(
        data, so, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
    )


@pytest.fixture(scope="module")
def module_and_graph():
    module = build_sequential(SMALL_SPECS, seed=2)
    return module, graph_from_module(module, SMALL_SPECS[0].in_shape)


def _x(n: int = 32) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((n, 3, 8, 8)).astype(np.float32)


def test_fp32_matches_pytorch(module_and_graph) -> None:
    module, graph = module_and_graph
    data = graph_to_onnx(graph)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x = _x()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    (got,) = _session(data).run(None, {"input": x})  # a batch: the batch dim is symbolic
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


@pytest.mark.parametrize("mixed", [False, True])
def test_qdq_matches_the_fake_quantized_model(module_and_graph, mixed: bool) -> None:
    _, graph = module_and_graph
    bits = host_int8_weight_bits()
    policy = {
        layer.name: LayerBits(32, 32) if mixed and i % 3 == 1 else LayerBits(bits, 8)
        for i, layer in enumerate(graph.layers)
    }
    x = _x()
    net = calibrate(QuantNet(graph, policy), [torch.from_numpy(x)])
    state = net.to_state()
    data = graph_to_onnx(graph, state, "mixed" if mixed else "int8")
    model = onnx.load_from_string(data)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("DequantizeLinear") > ops.count("QuantizeLinear") > 0
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["hwnas.ort_disabled_optimizers"]) == DISABLED_OPTIMIZERS
    (got,) = _session(data, DISABLED_OPTIMIZERS).run(None, {"input": x})
    want = numpy_forward(net, x)
    step = state.tensor_quant("output").scale
    # integer kernels round like the fake quantizer: equal up to rare rounding ties
    assert np.abs(got - want).max() <= 2 * step
    assert np.mean(np.abs(got - want) < 1e-6) > 0.9
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.95


def test_int8_kernels_run_fused(module_and_graph, tmp_path) -> None:
    """onnxruntime must turn the QDQ pattern into integer kernels, else int8 is a fake."""
    _, graph = module_and_graph
    net = calibrate(
        QuantNet(graph, {layer.name: LayerBits(7, 8) for layer in graph.layers}),
        [torch.from_numpy(_x())],
    )
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(
        graph_to_onnx(graph, net.to_state(), "int8"), so, providers=["CPUExecutionProvider"]
    )
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    assert ops.count("QLinearConv") == sum(1 for n in graph.layers if hasattr(n, "kernel"))
    assert "QGemm" in ops and "QLinearAdd" in ops
    assert "Conv" not in ops
