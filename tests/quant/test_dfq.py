"""``hwnas.quant.dfq``: the relaxed model, the cost, and DFQ's sanity checks (METHODS.md §9.2)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from sklearn.datasets import make_classification
from torch.nn import functional as F

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.export.onnx_writer import graph_to_onnx
from hwnas.graph.lower import graph_from_module
from hwnas.graph.nodes import GlobalPool, Graph, Linear
from hwnas.graph.wcodes import linear_code, pack_codes
from hwnas.quant.dfq import (
    DFQConfig,
    RelaxedNet,
    dfq_search,
    policy_cost,
    quantize_candidate,
    size_costs,
)
from hwnas.quant.qat import torch_threads
from hwnas.quant.qnet import QuantNet
from hwnas.quant.quantize import DataTensors
from tests.quant.conftest import SMALL_SPECS

BINARY_8 = (1, 8)


def mlp_problem() -> tuple[Graph, DataTensors]:
    """A 20-32-32-6 ReLU MLP trained on synthetic classes, as a graph (input (N, 20, 1, 1)).

    Chosen so that binarizing any layer raises the val loss (fc0 most, fc2 least) and the float
    model barely overfits (val loss ~0.12, train ~0.07): then "looser theta, more binary" is a
    property DFQ must show, not an accident of quantization acting as a regularizer.
    """
    x, y = make_classification(
        n_samples=8000, n_features=20, n_informative=20, n_redundant=0, n_classes=6,
        n_clusters_per_class=1, class_sep=1.0, flip_y=0.0, random_state=0,
    )  # fmt: skip
    x, y = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))
    torch.manual_seed(0)
    sizes = [20, 32, 32, 6]
    layers = [torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])]
    net = torch.nn.Sequential(layers[0], torch.nn.ReLU(), layers[1], torch.nn.ReLU(), layers[2])
    opt = torch.optim.Adam(net.parameters(), 1e-2, weight_decay=1e-2)
    for _ in range(300):
        loss = F.cross_entropy(net(x[:4000]), y[:4000])
        opt.zero_grad()
        loss.backward()
        opt.step()
    nodes = [GlobalPool("pool", "input", "t0")]
    for i, m in enumerate(layers):
        out = "output" if i == len(layers) - 1 else f"t{i + 1}"
        act = "none" if i == len(layers) - 1 else "relu"
        w, b = m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy()
        nodes.append(Linear(f"fc{i}", f"t{i}", out, w, b, act))
    graph = Graph(tuple(nodes), (1, 20, 1, 1))
    x = x.reshape(-1, 20, 1, 1)
    data = DataTensors(x[:4000], y[:4000], x[4000:6000], y[4000:6000], x[6000:], y[6000:])
    return graph, data


@pytest.fixture(scope="module")
def mlp() -> tuple[Graph, DataTensors]:
    with torch_threads(1):  # module fixtures run before conftest's per-test one-thread fixture
        return mlp_problem()


@pytest.fixture(scope="module")
def conv_graph() -> Graph:
    torch.manual_seed(0)
    return graph_from_module(build_sequential(SMALL_SPECS).eval(), SMALL_SPECS[0].in_shape)


def one_hot(model: RelaxedNet, bits: dict[str, int]) -> dict[str, torch.Tensor]:
    """Exact one-hot probabilities (softmax of -inf / 0 logits), one group per layer."""
    out = {}
    for name in model.layer_names:
        logits = torch.full((1, len(model.candidates)), -torch.inf)
        logits[0, model.candidates.index(bits[name])] = 0.0
        out[name] = F.softmax(logits, dim=1)
    return out


def decoded_graph(graph: Graph, bits: dict[str, int]) -> Graph:
    """The graph whose weights are what the stored linear codes decode to (weight-only mode)."""
    from dataclasses import replace

    nodes = tuple(
        replace(n, weight=linear_code(n.weight, bits[n.name]).dequantize()) if n.name in bits else n
        for n in graph.nodes
    )
    return Graph(nodes, graph.input_shape, graph.input_name, graph.output_name)


def test_one_hot_8_bits_is_exactly_the_8_bit_model(conv_graph) -> None:
    """Logits (-inf, ..., 0) on 8 bits through the model's own softmax: bit-identical output."""
    model = RelaxedNet(conv_graph, (2, 4, 8)).eval()
    with torch.no_grad():
        for p in model.alphas.values():
            p.fill_(-torch.inf)
            p[:, -1] = 0.0
    x = torch.randn(4, *SMALL_SPECS[0].in_shape[1:])
    reference = QuantNet(decoded_graph(conv_graph, {n: 8 for n in model.layer_names}), {})
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))
        assert not torch.equal(model(x), QuantNet(conv_graph, {})(x))  # 8 bits is not float


def test_one_hot_mixed_policy_matches_onnxruntime(conv_graph) -> None:
    """A discrete mixed policy of the relaxed model = the decoded codes run by onnxruntime."""
    model = RelaxedNet(conv_graph, (2, 4, 8)).eval()
    bits = {n: (2, 4, 8)[i % 3] for i, n in enumerate(model.layer_names)}
    x = np.random.default_rng(0).standard_normal((4, *SMALL_SPECS[0].in_shape[1:]))
    x = x.astype(np.float32)
    with torch.no_grad():
        ours = model(torch.from_numpy(x), one_hot(model, bits)).numpy()
    session = ort.InferenceSession(graph_to_onnx(decoded_graph(conv_graph, bits)))
    theirs = np.concatenate([session.run(None, {"input": x[i : i + 1]})[0] for i in range(4)])
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)


def test_binary_candidate_is_sign_times_mean_magnitude_with_ste() -> None:
    w = torch.tensor([[0.5, -1.5, 1.0], [-0.2, 0.0, 0.4]], requires_grad=True)
    q = quantize_candidate(w, 1)
    expected = torch.tensor([[1.0, -1.0, 1.0], [-0.2, 0.2, 0.2]])
    assert torch.allclose(q, expected)
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))  # straight through


def test_size_costs_are_the_bytes_of_the_packed_codes(conv_graph) -> None:
    cost = size_costs(conv_graph, (2, 4, 8))
    for i, layer in enumerate(conv_graph.layers):
        for j, b in enumerate((2, 4, 8)):
            code = linear_code(layer.weight, b)
            assert cost[i, j] == pack_codes(code.codes, b).nbytes + code.table.nbytes


def test_expected_cost_of_one_hot_groups_is_the_discrete_cost(conv_graph) -> None:
    """STYLE §4: the differentiable face at one-hot equals the discrete face; finite gradient."""
    model = RelaxedNet(conv_graph, (2, 4, 8), channel_groups=1)
    cost = size_costs(conv_graph, (2, 4, 8))
    bits = {n: (8, 2, 4)[i % 3] for i, n in enumerate(model.layer_names)}
    expected = model.expected_cost(torch.as_tensor(cost), one_hot(model, bits))
    assert float(expected) == pytest.approx(policy_cost(conv_graph, bits, cost, (2, 4, 8)))
    soft = model.expected_cost(torch.as_tensor(cost, dtype=torch.float32))
    (grad,) = torch.autograd.grad(soft, [next(iter(model.alphas.values()))])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def eight_bit_val_loss(graph: Graph, data: DataTensors) -> float:
    model = RelaxedNet(graph, BINARY_8).eval()
    with torch.no_grad():
        logits = model(data.val_x, one_hot(model, {n: 8 for n in model.layer_names}))
    return float(F.cross_entropy(logits, data.val_y))


def binary_structures(result) -> int:
    return sum(b == 1 for bits in result.group_bits.values() for b in bits)


def test_looser_theta_binarizes_more_and_cost_falls_monotonically(mlp) -> None:
    """§9.2: theta below the 8-bit loss keeps every structure at 8 bits; loosening theta makes
    more structures binary, and the priced size falls monotonically to all-binary."""
    graph, data = mlp
    loss8 = eight_bit_val_loss(graph, data)
    config = DFQConfig(steps=150, channel_groups=4)
    results = [
        dfq_search(graph, data, loss8 + delta, config, BINARY_8)
        for delta in (-0.05, 0.0, 0.05, 0.1, 0.2, 1.0)
    ]
    costs = [r.group_cost for r in results]
    binary = [binary_structures(r) for r in results]
    all_8, all_1 = size_costs(graph, BINARY_8).sum(axis=0)[::-1]
    assert costs[0] == pytest.approx(all_8) and binary[0] == 0  # theta below the 8-bit loss
    assert costs[-1] == pytest.approx(all_1) and binary[-1] == 12  # 3 layers x 4 groups, all binary
    assert all(a >= b for a, b in zip(costs, costs[1:])), costs
    assert all(a <= b for a, b in zip(binary, binary[1:])), binary
    assert len(set(costs)) >= 4, costs  # intermediate thetas give intermediate sizes


def test_dual_ascent_raises_mu_while_violated_and_drops_it_when_slack(mlp) -> None:
    graph, data = mlp
    config = DFQConfig(steps=60, mu_init=1.0)
    tight = dfq_search(graph, data, 0.0, config, BINARY_8)  # no policy reaches loss 0
    assert tight.history["mu"] == sorted(tight.history["mu"]) and tight.history["mu"][-1] > 10
    assert tight.bits == {n: 8 for n in tight.bits}
    slack = dfq_search(graph, data, 10.0, config, BINARY_8)  # any policy does
    assert slack.history["mu"][-1] == 0.0 and slack.bits == {n: 1 for n in slack.bits}
    assert slack.history["cost"][-1] < slack.history["cost"][0]


def test_cost_matrix_replaces_size(mlp) -> None:
    """A per-layer latency table where 1 bit is *slower* (as on runtimes without binary kernels):
    with a slack constraint DFQ keeps everything at 8 bits, the cheaper candidate."""
    graph, data = mlp
    latency_ms = np.array([[0.3, 0.1], [0.5, 0.2], [0.05, 0.02]])
    result = dfq_search(graph, data, 10.0, DFQConfig(steps=60), BINARY_8, latency_ms)
    assert result.bits == {"fc0": 8, "fc1": 8, "fc2": 8}
    assert result.cost == pytest.approx(0.32) and result.cost_ref == pytest.approx(0.85)
    with pytest.raises(ValueError, match="cost must be"):
        dfq_search(graph, data, 1.0, DFQConfig(steps=1), BINARY_8, latency_ms[:2])
