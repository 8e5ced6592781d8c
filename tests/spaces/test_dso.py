"""The dso space: encoding and live edges, lambda-scaled supernet == pruned network, edge costs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.costs.latency import load_latency_source
from hwnas.errors import UserError
from hwnas.lut.schema import LUT, LUTEntry
from hwnas.spaces import dso_geometry as geo
from hwnas.spaces.base import SpaceConfig, create_space
from hwnas.spaces.dso import DSOSpace, edge_savings, prune, surviving

E = geo.EDGES_PER_BLOCK


def _edge(name: str) -> int:
    return next(e.index for e in geo.EDGES if e.name == name)


@pytest.fixture(scope="module")
def space() -> DSOSpace:
    return create_space("dso", SpaceConfig(32, 10, 0.25))  # type: ignore[return-value]


def test_geometry_and_encoding():
    assert geo.EDGES_PER_BLOCK == 18 and geo.NUM_EDGES == 54
    assert [(e.source, e.target) for e in geo.EDGES[::3]] == list(geo.PAIRS)
    assert [(s.h, s.c) for s in geo.block_slots(32)] == [(32, 16), (16, 32), (8, 64)]
    text = "0>3:c3+0>1:s3+1>3:c1;-;0>3:c1"
    arch = geo.parse_arch(text)
    assert arch == ((_edge("0>1:s3"), _edge("0>3:c3"), _edge("1>3:c1")), (), (_edge("0>3:c1"),))
    assert geo.format_arch(arch) == "0>1:s3+0>3:c3+1>3:c1;-;0>3:c1"  # canonical edge order
    with pytest.raises(ValueError, match=r"block 0: edge\(s\) 0>1:c3, 1>2:c3 are on no path"):
        geo.parse_arch("0>1:c3+1>2:c3+0>3:c1;-;-")  # node 2 feeds nothing
    with pytest.raises(ValueError, match=r"block 1: edge\(s\) 1>3:c1 are on no path"):
        geo.parse_arch("-;1>3:c1;-")  # node 1 has no input
    with pytest.raises(ValueError, match="unknown edge"):
        geo.parse_arch("0>0:c3;-;-")
    with pytest.raises(ValueError, match="given twice"):
        geo.parse_arch("0>3:c3+0>3:c3;-;-")
    with pytest.raises(ValueError, match="3 blocks"):
        geo.parse_arch("-;-")


def test_live_edges_drop_what_dso_prunes():
    a, b, c = _edge("0>1:c3"), _edge("1>2:s3"), _edge("2>3:c1")
    assert geo.live_edges([a, b, c]) == (a, b, c)
    assert geo.live_edges([b, c]) == ()  # node 1 has no input: everything after it dies
    assert geo.live_edges([a, b]) == ()  # nothing reaches the output
    d = _edge("0>3:s3")
    assert geo.live_edges([a, d]) == (d,)


def test_json_round_trip_and_errors(space):
    arch = space.parse_arch("0>1:c1+1>3:c3;0>3:s3;-")
    value = space.arch_to_json(arch)
    assert value == [[[0, 1, 2], [1, 3, 0]], [[0, 3, 1]], []]
    assert space.arch_from_json(value) == arch
    with pytest.raises(UserError, match="malformed dso arch"):
        space.arch_from_json([[[0, 5, 0]], [], []])
    with pytest.raises(UserError, match="on no path"):
        space.arch_from_json([[[1, 3, 0]], [], []])


def _supernet(space, seed=0):
    net = space.build_supernet(seed=seed)
    torch.manual_seed(seed)
    for m in net.modules():  # non-trivial BN statistics and shifts
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.bias.data.normal_(0, 0.3)
    return net


def test_supernet_fixes_bn_gamma_and_standalone_nets_do_not(space):
    net = space.build_supernet(seed=0)
    edge_bns = [m for b in net.blocks for m in b.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(edge_bns) == 3 * (6 * 4)  # 6 pairs x (1 + 2 + 1) BNs per block
    assert all(not m.weight.requires_grad and torch.all(m.weight == 1) for m in edge_bns)
    standalone = space.build_net(space.sample_arch(np.random.default_rng(0)))
    assert all(
        m.weight.requires_grad for m in standalone.modules() if isinstance(m, torch.nn.BatchNorm2d)
    )


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_lambda_scaled_supernet_equals_the_pruned_network(space, mode):
    net = _supernet(space)
    rng = np.random.default_rng(1)
    weights = rng.uniform(0.2, 2.0, geo.NUM_EDGES)
    weights[rng.random(geo.NUM_EDGES) < 0.6] = 0.0
    # block 0: node 1 loses its inputs while its outgoing edges keep non-zero scales
    weights[[e.index for e in geo.EDGES if e.target == 1]] = 0.0
    weights[_edge("1>3:c3")] = 1.5
    # block 2: nothing reaches the output node: an identity block
    weights[2 * E + np.array([e.index for e in geo.EDGES if e.target == geo.NODES])] = 0.0
    w = torch.tensor(weights, dtype=torch.float32)
    arch = surviving(weights)
    assert _edge("1>3:c3") not in arch[0] and arch[2] == ()
    pruned = prune(net, w)
    assert tuple(b.edges for b in pruned.blocks) == arch
    x = torch.randn(4, 3, 16, 16)
    net.train(mode == "train")
    pruned.train(mode == "train")
    torch.testing.assert_close(pruned(x), net(x, w), rtol=1e-5, atol=1e-5)
    # and the pruned network is the standalone network of the surviving edges
    assert type(pruned) is type(space.build_net(arch, width=0.25))
    with pytest.raises(ValueError, match=">= 0"):
        prune(net, -w)


def test_all_zero_scales_leave_stem_reductions_and_head(space):
    net = _supernet(space).eval()
    zero = torch.zeros(geo.NUM_EDGES)
    pruned = prune(net, zero).eval()
    assert surviving(zero.numpy()) == ((), (), ())
    x = torch.randn(2, 3, 16, 16)
    torch.testing.assert_close(pruned(x), net(x, zero))


def test_flops_and_params_are_sums_of_surviving_edges(space):
    flops = space.cost_table("flops")
    full = space.arch_from_vector(np.ones((3, E)))
    assert sum(map(len, full)) == geo.NUM_EDGES
    empty = space.arch_from_vector(np.zeros((3, E)))
    assert flops.discrete(space.arch_vector(empty)) == flops.minimum() == flops.constant
    assert flops.discrete(space.arch_vector(full)) == flops.maximum()
    c3 = space.parse_arch("0>3:c3;-;-")
    s3 = space.parse_arch("0>3:s3;-;-")
    # conv3x3 16 -> 16 at 32 x 32 and a depthwise 3x3 + pointwise 1x1 separable conv
    assert flops.discrete(space.arch_vector(c3)) - flops.constant == 32 * 32 * 16 * 16 * 9
    assert flops.discrete(space.arch_vector(s3)) - flops.constant == 32 * 32 * 16 * (9 + 16)


def _synthetic_lut(skip: int = 0) -> LUT:
    """Every block of the dso plan at 0.01 ms + 0.1 ms per MFLOP (pricing logic only; the real
    build is tested in tests/cli/test_lut.py)."""
    from hwnas.lut.plan import get_plan

    entries = tuple(
        LUTEntry(s, "fp32", 0.01 + 0.1 * s.flops() / 1e6, 0.01, 0.02, 10)
        for s in get_plan("dso").blocks[skip:]
    )
    return LUT({"name": "synthetic"}, {"name": "onnxruntime"}, {"precision": "fp32"}, entries,
               space="dso", resolution=32, num_classes=10)  # fmt: skip


def test_latency_is_the_lut_sum_of_surviving_edges_and_fixed_parts(space):
    lut = _synthetic_lut()
    table = space.cost_table("latency_ms", lut)
    by_key = {e.key: e.median_ms for e in lut.entries}
    arch = space.parse_arch("0>1:s3+1>3:c3+0>3:c1;0>3:c3;-")
    expected = sum(by_key[s.key()] for s in geo.fixed_specs(32, 10))
    for b, block in enumerate(arch):
        for e in block:
            slot = geo.block_slots(32)[b]
            expected += sum(by_key[s.key()] for s in geo.edge_specs(slot, geo.EDGES[e].op))
    assert table.discrete(space.arch_vector(arch)) == pytest.approx(expected)
    with pytest.raises(UserError, match="needs a dso LUT"):
        space.cost_table("latency_ms", None)
    with pytest.raises(UserError, match="has no entry for"):
        space.cost_table("latency_ms", _synthetic_lut(skip=1))


def test_reference_devices_say_they_cannot_price_dso(space):
    with pytest.raises(UserError) as info:
        load_latency_source("pi4", space)
    message = str(info.value)
    assert "only the shipped reference LUT for fbnet" in message
    assert "hwnas build-lut --device local --space dso" in message


def test_edge_savings_count_the_edges_a_removal_leaves_dead(space):
    table = space.cost_table("flops")
    cost = lambda arch: table.discrete(space.arch_vector(arch))  # noqa: E731
    keep = np.zeros(geo.NUM_EDGES, dtype=bool)
    a, b, d = _edge("0>1:c1"), _edge("1>3:c3"), _edge("0>3:c3")
    keep[[a, b, d]] = True
    saved = edge_savings(cost, keep)
    unit = table.unit_cost[0]
    assert saved[d] == pytest.approx(unit[d])
    assert saved[a] == pytest.approx(unit[a] + unit[b])  # 1>3 dies with node 1's only input
    assert saved[b] == pytest.approx(unit[a] + unit[b])  # and 0>1 with node 1's only output
    assert saved[_edge("0>3:s3")] == pytest.approx(unit[_edge("0>3:s3")])  # adding it back
    assert saved[_edge("2>3:c3")] == 0.0  # node 2 has no input: adding 2>3 adds nothing


def test_standalone_net_lowers_to_the_graph_the_writers_export(space):
    """``hwnas export``/``quantize`` lower networks into a graph (BN folded, adds for the node
    sums and the residual); the dso net's graph runs in onnxruntime and LiteRT as in PyTorch."""
    import onnxruntime as ort

    from hwnas.export.onnx_writer import graph_to_onnx
    from hwnas.export.tflite_writer import graph_to_tflite
    from hwnas.export.verify import run_tflite
    from hwnas.graph.lower import graph_from_module
    from hwnas.graph.nodes import Add

    arch = space.parse_arch("0>1:s3+0>3:c3+1>3:c1+1>2:c3+2>3:s3;-;0>3:c1+0>3:s3")
    net = _supernet(space, seed=3)  # for its BN statistics: prune to the standalone net
    weights = torch.zeros(geo.NUM_EDGES)
    for b, block in enumerate(arch):
        weights[[b * E + e for e in block]] = 1.0
    standalone = prune(net, weights).eval()
    graph = graph_from_module(standalone, (1, 3, 32, 32))
    # block 0: node 3 sums 3 edges, then the residual (3 adds); block 2: 1 sum + residual
    assert sum(isinstance(n, Add) for n in graph.nodes) == 5
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = standalone(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(graph_to_onnx(graph), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x})
    np.testing.assert_allclose(got, want, rtol=0, atol=5e-5)
    np.testing.assert_allclose(run_tflite(graph_to_tflite(graph), x), want, rtol=0, atol=5e-5)
