"""The darts cell space: genotype encodings, the derivation rule, cost tables, the networks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from hwnas.blocks.count import count_flops_params
from hwnas.errors import UserError
from hwnas.lut.schema import LUT, LUTEntry
from hwnas.spaces import darts_genotype as gt
from hwnas.spaces import darts_geometry as dg
from hwnas.spaces.base import SpaceConfig
from hwnas.spaces.darts import DartsSpace
from hwnas.spaces.darts_nets import DartsSupernet, SearchCell

# DARTS-V2 (Liu et al. 2019, genotypes.py), written in hwnas' text encoding.
DARTS_V2 = (
    "sep_conv_3x3@0+sep_conv_3x3@1-sep_conv_3x3@0+sep_conv_3x3@1-"
    "sep_conv_3x3@1+skip_connect@0-skip_connect@0+dil_conv_3x3@2|"
    "max_pool_3x3@0+max_pool_3x3@1-skip_connect@2+max_pool_3x3@1-"
    "max_pool_3x3@0+skip_connect@2-skip_connect@2+max_pool_3x3@1"
)


@pytest.fixture(scope="module")
def space() -> DartsSpace:
    return DartsSpace(SpaceConfig(32, 10, 0.25), cells=3)


def test_encodings_round_trip_and_match_darts_genotype_lists():
    arch = gt.parse_genotype(DARTS_V2)
    doc = gt.genotype_to_json(arch)
    assert doc["normal"][:2] == [["sep_conv_3x3", 0], ["sep_conv_3x3", 1]]
    assert doc["reduce"][-2:] == [["max_pool_3x3", 1], ["skip_connect", 2]]  # sorted by source
    assert gt.genotype_from_json(doc) == arch
    assert gt.parse_genotype(gt.format_genotype(arch)) == arch
    vector = gt.genotype_vector(arch)
    assert vector.shape == (28,) and np.count_nonzero(vector) == 16
    assert gt.genotype_from_vector(vector) == arch
    # node 3 of the normal cell: skip from input 0 (row 9), dil_conv_3x3 from node 0 (row 11)
    assert vector[9] == dg.PRIMITIVES.index("skip_connect")
    assert vector[11] == dg.PRIMITIVES.index("dil_conv_3x3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sep_conv_3x3@0", "two cells"),
        (DARTS_V2.replace("dil_conv_3x3@2", "dil_conv_3x3@5"), "two different sources"),
        (DARTS_V2.replace("dil_conv_3x3@2", "skip_connect@0"), "two different sources"),
        (DARTS_V2.replace("dil_conv_3x3@2", "none@2"), "never 'none'"),
        (DARTS_V2.replace("dil_conv_3x3@2", "conv_7x1@2"), "not op@source"),
    ],
)
def test_bad_genotypes_are_refused_with_the_reason(space, text, message):
    with pytest.raises(UserError, match=message):
        space.parse_arch(text)


def test_vector_must_keep_two_edges_per_node():
    vector = gt.genotype_vector(gt.parse_genotype(DARTS_V2))
    vector[4] = 5  # a third edge into node 1 of the normal cell
    with pytest.raises(ValueError, match="normal node 1 keeps 3 edges"):
        gt.genotype_from_vector(vector)


def test_derivation_never_picks_none_and_keeps_top2_edges_by_non_none_max():
    rng = np.random.default_rng(0)
    weights = rng.uniform(0.0, 0.1, size=(28, 8))
    weights[:, 0] = 0.9  # 'none' has the largest weight on every edge
    arch = gt.derive_genotype(weights)
    assert all(op != 0 for _, op in arch)
    for c in range(2):
        for n in range(4):
            rows = gt.node_rows(c, n)
            strength = weights[rows, 1:].max(axis=1)
            expected = sorted(np.argsort(-strength, kind="stable")[:2].tolist())
            pairs = arch[2 * (4 * c + n) : 2 * (4 * c + n) + 2]
            assert [s for s, _ in pairs] == expected
            for s, op in pairs:
                assert op == 1 + int(np.argmax(weights[rows[s], 1:]))


def test_a_planted_genotype_is_derived_back():
    arch = gt.parse_genotype(DARTS_V2)
    weights = np.full((28, 8), 0.1)
    weights[np.arange(28), gt.genotype_vector(arch)] += 0.5  # 'none' on unkept edges
    assert gt.derive_genotype(weights) == arch


def test_cell_table_bounds_range_over_genotypes(space):
    table = space.cost_table("params")
    rng = np.random.default_rng(1)
    costs = [table.discrete(gt.genotype_vector(gt.sample_genotype(rng))) for _ in range(300)]
    assert table.minimum() <= min(costs) and max(costs) <= table.maximum()
    # the bounds are attained: the cheapest / dearest wiring of every node
    for bound, pick in ((table.minimum(), np.argmin), (table.maximum(), np.argmax)):
        pairs = []
        for c, n in itertools.product(range(2), range(4)):
            opts = gt.node_options(n)
            rows = gt.node_rows(c, n)
            scores = (
                table.values[rows[opts[:, 0]], opts[:, 1]]
                + table.values[rows[opts[:, 2]], opts[:, 3]]
            )
            s1, o1, s2, o2 = opts[pick(scores)]
            pairs += [(int(s1), int(o1)), (int(s2), int(o2))]
        assert table.discrete(gt.genotype_vector(tuple(pairs))) == pytest.approx(bound)
    # looser than the edge-wise bounds a plain choice table would give
    assert table.maximum() < table.constant + table.values.max(axis=1).sum()


@pytest.mark.parametrize("metric", ["flops", "params"])
def test_one_hot_expectation_is_the_discrete_cost(space, metric):
    table = space.cost_table(metric)
    arch = space.sample_arch(np.random.default_rng(2))
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(space.arch_vector(arch)), 8).double()
    assert float(table.expected(one_hot)) == pytest.approx(table.discrete(space.arch_vector(arch)))


def test_three_cell_network_costs_match_the_counted_network(space):
    arch = space.sample_arch(np.random.default_rng(3))
    counted = count_flops_params(space.build_net(arch), (1, 3, 32, 32))
    vector = space.arch_vector(arch)
    assert counted == (
        space.cost_table("flops").discrete(vector),
        space.cost_table("params").discrete(vector),
    )


def _synthetic_lut(space: DartsSpace, ms_per_mflop: float) -> LUT:
    """A LUT of the space's blocks priced 0.01 ms + ms_per_mflop * MFLOPs (for the pricing logic;
    tests/bench that need real timings build one with hwnas build-lut)."""
    specs = {}
    for cell in dg.cells(16, space.cells, 32):
        for edge in dg.edges(cell):
            for op in dg.PRIMITIVES:
                spec = dg.edge_op_spec(cell, edge, op)
                if spec is not None:
                    specs[spec.key()] = spec
    for spec in dg.fixed_specs(16, space.cells, 32, 10):
        specs[spec.key()] = spec
    entries = tuple(
        LUTEntry(s, "fp32", 0.01 + ms_per_mflop * s.flops() / 1e6, 0.01, 0.02, 10)
        for s in specs.values()
    )
    return LUT({"name": "synthetic"}, {"name": "onnxruntime"}, {"precision": "fp32"}, entries,
               space="darts", resolution=32, num_classes=10)  # fmt: skip


def test_latency_table_sums_the_lut_entries_of_the_network(space):
    lut = _synthetic_lut(space, 0.5)
    table = space.cost_table("latency_ms", lut)
    arch = gt.parse_genotype(DARTS_V2)
    by_key = {e.key: e.median_ms for e in lut.entries}
    expected = sum(by_key[s.key()] for s in dg.fixed_specs(16, 3, 32, 10))
    for cell in dg.cells(16, 3, 32):
        pairs = arch[8:] if cell.reduction else arch[:8]
        for p, (source, op) in enumerate(pairs):
            edge = dg.edges(cell)[gt.edge_index(p // 2, source)]
            spec = dg.edge_op_spec(cell, edge, dg.PRIMITIVES[op])
            expected += 0.0 if spec is None else by_key[spec.key()]  # identity skip: free
    assert table.discrete(space.arch_vector(arch)) == pytest.approx(expected)
    with pytest.raises(UserError, match="needs a darts LUT"):
        space.cost_table("latency_ms", None)
    missing = LUT(lut.device, lut.runtime, lut.settings, lut.entries[1:], space="darts",
                  resolution=32, num_classes=10)  # fmt: skip
    with pytest.raises(UserError, match="has no entry for"):
        space.cost_table("latency_ms", missing)


def test_widths_must_give_an_even_channel_count():
    with pytest.raises(UserError, match="even integer"):
        DartsSpace(SpaceConfig(32, 10, 0.125 / 2))
    assert DartsSpace(SpaceConfig(32, 10, 0.5)).search_channels == 8


def _tie_weights(shared: SearchCell, unshared: SearchCell) -> None:
    """Copy each source's shared op-set into every per-edge op-set reading that source."""
    unshared.pre0.load_state_dict(shared.pre0.state_dict())
    unshared.pre1.load_state_dict(shared.pre1.state_dict())
    for n in range(4):
        for j in range(n + 2):
            unshared.ops[gt.edge_index(n, j)].load_state_dict(shared.ops[j].state_dict())


@pytest.mark.parametrize("reduction", [False, True])
def test_weight_sharing_equals_the_unshared_cell_with_tied_weights(reduction):
    geo = dg.cells(8, 3, 32)[1 if reduction else 0]
    torch.manual_seed(0)
    shared, unshared = SearchCell(geo, True, 1), SearchCell(geo, False, 1)
    _tie_weights(shared, unshared)
    s0 = torch.randn(4, geo.s0[1], 8, 8)
    s1 = torch.randn(4, geo.s1[1], 8, 8)
    weights = torch.softmax(torch.randn(14, 8), dim=1)
    a, b = shared(s0, s1, weights), unshared(s0, s1, weights)
    assert a.shape == (4, 4 * geo.c, 4 if reduction else 8, 4 if reduction else 8)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    # fewer modules: 5 op-sets (one per source) instead of 14 (one per edge)
    assert len(shared.ops) == 5 and len(unshared.ops) == 14


def test_speed_up_options_shrink_the_supernet_and_keep_gradients():
    plain = DartsSupernet(8, 3, 10)
    fast = DartsSupernet(8, 3, 10, weight_sharing=True, bottleneck=4)
    size = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    assert size(fast) < size(plain) / 3
    weights = torch.softmax(torch.zeros(28, 8), 1).requires_grad_()
    out = fast(torch.randn(2, 3, 8, 8), weights)
    out.sum().backward()
    assert out.shape == (2, 10) and torch.isfinite(weights.grad).all()
    assert weights.grad[:, 1:].abs().sum() > 0
    with pytest.raises(ValueError, match="bottleneck 3"):
        DartsSupernet(8, 3, 10, bottleneck=3)


def test_search_bns_have_no_affine_parameters_or_running_statistics():
    net = DartsSupernet(4, 3, 10)
    cell_bns = [m for m in net.cells.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert cell_bns and all(not m.affine and not m.track_running_stats for m in cell_bns)
