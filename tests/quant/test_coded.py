"""``hwnas.quant.coded``: precomputed codes, the fast evaluator, the weight-only fine-tune model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.export.api import write_model
from hwnas.export.verify import run_onnx
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import FLOAT_BITS
from hwnas.quant.coded import CodedEvaluator, CodedNet, CodedWeights
from hwnas.quant.qat import FinetuneConfig, accuracy, finetune
from hwnas.quant.qnet import QuantNet
from tests.quant.conftest import SMALL_SPECS


@pytest.fixture(scope="module")
def graph():
    return graph_from_module(build_sequential(SMALL_SPECS, seed=1), SMALL_SPECS[0].in_shape)


def _x(n: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def _labels(graph, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return QuantNet(graph, {})(x).argmax(dim=1)


@pytest.mark.parametrize("coding", ["kmeans", "linear"])
def test_evaluator_runs_the_precomputed_codes(graph, coding) -> None:
    table = CodedWeights(graph, coding)
    x = _x()
    y = _labels(graph, x)
    evaluate = CodedEvaluator(table, x, y)
    n = len(graph.layers)
    assert evaluate([FLOAT_BITS] * n) == 100.0  # labels are the float net's predictions
    policy = [2 + (i % 7) for i in range(n)]
    reference = QuantNet(graph, {})
    with torch.no_grad():
        for layer, b in zip(graph.layers, policy):
            w = table.codes[layer.name][b].dequantize()
            assert len(np.unique(w)) <= 2**b * (1 if coding == "kmeans" else w.shape[0])
            reference.weights[layer.name.replace(".", "_")].copy_(torch.from_numpy(w))
    assert evaluate(policy) == accuracy(reference, x, y) < 100.0
    evaluate([FLOAT_BITS] * n)
    assert evaluate.evaluated == 2 and len(evaluate.memo) == 2
    evaluate.reset_count()
    evaluate(policy)
    assert evaluate.evaluated == 1


def test_kmeans_centroid_gradient_is_the_sum_of_its_weights_gradients(graph) -> None:
    table = CodedWeights(graph, "kmeans")
    name = graph.layers[2].name
    net = CodedNet(table, {name: 3})
    x = _x(8)
    net(x).square().sum().backward()
    key = name.replace(".", "_")
    centroids = net.centroids[key]
    assert net.weights[key].grad is None  # the latent weight is not trained
    # the same loss with the coded weight as a leaf: its gradient summed per centroid
    plain = QuantNet(graph, {})
    with torch.no_grad():
        for layer in graph.layers:
            plain.weights[layer.name.replace(".", "_")].copy_(net.coded_weight(layer.name))
    plain(x).square().sum().backward()
    grad = plain.weights[key].grad.ravel()
    assign = torch.from_numpy(table.codes[name][3].codes.astype(np.int64)).ravel()
    expected = torch.zeros(8).index_add_(0, assign, grad)
    torch.testing.assert_close(centroids.grad, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("coding", ["kmeans", "linear"])
def test_weight_codes_reproduce_the_finetuned_model_exactly(graph, coding) -> None:
    table = CodedWeights(graph, coding)
    n = len(graph.layers)
    bits = {layer.name: b for layer, b in zip(graph.layers, [8, 3, 2, 4, 6, 5, 7, FLOAT_BITS][:n])}
    net = CodedNet(table, bits)
    x = _x(64)
    y = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(1))
    before = {k: v.detach().clone() for k, v in net.state_dict().items()}
    finetune(net, x, y, FinetuneConfig(steps=5, batch_size=16, lr=1e-2))
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert any("centroids" in k or "weights" in k for k in changed)  # it did train
    codes = net.weight_codes()
    assert set(codes) == {k for k, b in bits.items() if b != FLOAT_BITS}
    for name, code in codes.items():
        assert code.bits == bits[name] and code.kind == coding
        assert np.array_equal(code.dequantize(), net.coded_weight(name).detach().numpy())
        if coding == "kmeans":  # assignments stay fixed
            assert np.array_equal(code.codes, table.codes[name][bits[name]].codes)
    # the float model of the coded graph, run by onnxruntime, is the fine-tuned model
    onnx = write_model(net.coded_graph(), None, "onnx", "fp32")
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(run_onnx(onnx, x.numpy()), expected, rtol=1e-4, atol=1e-4)
