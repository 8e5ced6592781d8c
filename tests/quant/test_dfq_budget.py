"""``hwnas.quant.dfq_budget``: DFQ under a size budget, on the MLP and on a trained FBNet."""

from __future__ import annotations

import pytest

from hwnas.errors import UserError
from hwnas.graph.lower import graph_from_module
from hwnas.quant.dfq import DFQConfig, DFQResult, policy_cost, size_costs
from hwnas.quant.dfq_budget import dfq_for_budget, repair_to_budget
from hwnas.quant.qat import torch_threads
from hwnas.quant.quantize import load_data
from hwnas.runs.rundir import load_run
from tests.quant.test_dfq import mlp_problem

BINARY_8 = (1, 8)


@pytest.fixture(scope="module")
def mlp():
    with torch_threads(1):
        return mlp_problem()


def test_repair_lowers_the_least_certain_layer_first(mlp) -> None:
    graph, _ = mlp
    cost = size_costs(graph, BINARY_8)  # rows: fc0 (208, 768), fc1 (256, 1152), fc2 (48, 216)
    probs = {"fc0": [[0.1, 0.9]], "fc1": [[0.45, 0.55]], "fc2": [[0.3, 0.7]]}
    result = DFQResult(
        {n: 8 for n in probs}, {n: [8] for n in probs}, probs, BINARY_8, 0.0, 2136.0,
        2136.0, 2136.0,
    )  # fmt: skip
    one_step = repair_to_budget(graph, result, cost, 2000.0)
    assert one_step == {"fc0": 8, "fc1": 1, "fc2": 8}  # margin 0.1: fc1 goes first
    two_steps = repair_to_budget(graph, result, cost, 1100.0)
    assert two_steps == {"fc0": 8, "fc1": 1, "fc2": 1}  # then fc2 (0.4) before fc0 (0.8)
    assert policy_cost(graph, two_steps, cost, BINARY_8) == 768 + 256 + 48


def test_unreachable_budget_is_repaired_and_says_so(mlp) -> None:
    """With no loss increase allowed DFQ keeps most of the MLP at 8 bits; a budget near the
    all-binary size then needs repair."""
    graph, data = mlp
    floor = size_costs(graph, BINARY_8)[:, 0].sum()
    out = dfq_for_budget(graph, data, floor + 300, DFQConfig(steps=60), BINARY_8, max_delta=0.0)
    assert out.repaired and out.own_cost > out.budget >= out.cost
    assert out.own_bits == out.search.bits and out.bits != out.own_bits
    assert out.probes == [(0.0, out.own_cost)]  # the only search: nothing looser is allowed
    with pytest.raises(UserError, match="no policy meets"):
        dfq_for_budget(graph, data, floor - 1, DFQConfig(steps=1), BINARY_8)


def test_bisection_finds_the_least_loss_increase_that_fits(mlp) -> None:
    graph, data = mlp
    cost = size_costs(graph, BINARY_8)
    budget = 0.5 * (cost[:, 0].sum() + cost[:, 1].sum())
    out = dfq_for_budget(graph, data, budget, DFQConfig(steps=150), BINARY_8, searches=6)
    assert not out.repaired and out.cost <= budget and out.cost == out.own_cost
    fitting = [d for d, c in out.probes if c <= budget]
    assert out.delta == min(fitting)
    assert all(c > budget for d, c in out.probes if d < out.delta)


def test_a_budget_with_room_asks_for_less_loss_than_the_float_model(mlp) -> None:
    """All 8 bits fits: the probes go below the float loss and keep the tightest that fits."""
    graph, data = mlp
    cost = size_costs(graph, BINARY_8)
    budget = cost[:, 1].sum()
    out = dfq_for_budget(graph, data, budget, DFQConfig(steps=150), BINARY_8, searches=5)
    deltas = [d for d, _ in out.probes]
    assert deltas[:2] == [1.0, 0.0] and all(d < 0 for d in deltas[2:]) and len(deltas) == 5
    assert not out.repaired and out.cost <= budget
    assert out.delta == min(d for d, c in out.probes if c <= budget) < 0
    assert out.cost >= dict(out.probes)[0.0]  # never less of the budget than delta = 0


@pytest.mark.slow
def test_budget_on_a_trained_fbnet_fits_and_looser_budgets_cost_more(trained_run_dir) -> None:
    """62 layers, candidates 2/4/8; short searches shared across budgets through ``memo``."""
    run = load_run(trained_run_dir)
    graph = graph_from_module(run.module, run.input_shape)
    data = load_data(run.data, 256, 128, 0)
    cost = size_costs(graph)
    floor, full = cost[:, 0].sum(), cost[:, -1].sum()
    config = DFQConfig(steps=10, batch_size=32, val_batch_size=64)
    memo: dict = {}
    outs = [
        dfq_for_budget(graph, data, floor + f * (full - floor), config, searches=4, memo=memo)
        for f in (0.02, 0.25, 0.5)
    ]
    sizes = [o.cost for o in outs]
    for o in outs:
        assert o.cost <= o.budget and o.cost == policy_cost(graph, o.bits, cost, (2, 4, 8))
        assert set(o.bits) == {layer.name for layer in graph.layers}
        assert set(o.bits.values()) <= {2, 4, 8}
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1], sizes
    # the budgets reused each other's searches: max and 0, then at most two midpoints on each
    # side of 0 (budgets with and without room), not 3 x 4
    assert len(memo) <= 6
