"""``hwnas.quant.latency``: every method on one shared latency problem (a trained FBNet, a
synthetic per-layer cost in which int8 is faster on six layers only)."""

from __future__ import annotations

import pytest

from hwnas.errors import UserError
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import FLOAT_BITS
from hwnas.quant.costs import calibrated_cost
from hwnas.quant.dfq import DFQConfig
from hwnas.quant.haq_env import device_choices
from hwnas.quant.latency import dfq_cost_matrix, latency_problem, search_latency
from hwnas.quant.quantize import load_data
from hwnas.runs.quantize import QuantizeConfig
from hwnas.runs.rundir import load_run

FASTER = (3, 10, 20, 30, 40, 50)  # layers whose int8 is faster


@pytest.fixture(scope="module")
def problem(trained_run_dir):
    from hwnas.quant.qat import torch_threads

    with torch_threads(1):
        run = load_run(trained_run_dir)
        graph = graph_from_module(run.module, run.input_shape)
        n = len(graph.layers)
        rows = [
            {"fp32": 1.0 + 0.1 * (i % 4), "int8": 0.4 if i in FASTER else 1.5} for i in range(n)
        ]
        network = {p: sum(r[p] for r in rows) for p in ("fp32", "int8")}
        cost = calibrated_cost([layer.name for layer in graph.layers], rows, network)
        fp32 = cost.uniform_ms("fp32")
        saved = sum(rows[i]["fp32"] - rows[i]["int8"] for i in FASTER)
        settings = QuantizeConfig(
            trained_run_dir, "local", fp32 - 0.5 * saved, search_steps=1, batch_size=32
        )
        data = load_data(run.data, 128, 100, 0)
        return latency_problem(
            graph, cost, device_choices(n, True), data, settings.latency_ms, settings
        )


def test_budget_below_the_cheapest_policy_is_a_user_error(problem) -> None:
    with pytest.raises(UserError, match="cheapest achievable latency"):
        latency_problem(
            problem.graph,
            problem.cost,
            problem.choices,
            problem.data,
            problem.cheapest_ms - 0.01,
            problem.evaluate.settings,
        )


def test_random_and_haq_share_the_evaluator_and_fit(problem) -> None:
    runs = {m: search_latency(problem, m, episodes=2, seed=0) for m in ("random", "haq")}
    for found in runs.values():
        assert found.episodes == 2 and 1 <= found.evaluated_policies <= 2
        assert len(found.details["history"]) == 2
        for record in found.details["history"]:  # every policy went through the action wall
            assert record["latency_ms"] <= problem.budget_ms + 1e-9
        assert found.latency_ms <= problem.budget_ms + 1e-9
        assert {(b.w_bits, b.a_bits) for b in found.policy} <= {(32, 32), (8, 8)}
    # one shared, memoised evaluator: every scored policy is in it with the accuracy reported
    for found in runs.values():
        assert problem.evaluate.memo[tuple(found.policy)] == found.val_accuracy
    assert 0 <= runs["haq"].val_accuracy <= 100


def test_greedy_scores_only_the_layers_where_int8_is_faster(problem) -> None:
    found = search_latency(problem, "greedy", episodes=3)
    assert found.evaluated_policies == 1 + len(FASTER) + 1  # all-fp32, each faster layer, final
    assert found.latency_ms <= problem.budget_ms
    int8 = [i for i, b in enumerate(found.policy) if not b.is_float]
    assert set(int8) <= set(FASTER) and len(int8) >= 3  # half the possible saving needs >= 3
    table = found.details["sensitivity"]
    assert [i for i, row in enumerate(table) if "w8a8" in row] == list(FASTER)
    assert found.to_dict()["int8_layers"] == len(int8)


def test_uniform_is_infeasible_when_int8_is_slower_overall(problem) -> None:
    assert problem.cost.uniform_ms("int8") > problem.budget_ms
    with pytest.raises(UserError, match="uniform: no uniform precision fits"):
        search_latency(problem, "uniform", episodes=1)


@pytest.mark.slow
def test_dfq_on_latency_costs_fits_the_budget(problem) -> None:
    candidates, cost = dfq_cost_matrix(problem)
    assert candidates == (8, FLOAT_BITS) and cost.shape == (len(problem.names), 2)
    assert cost[FASTER[0], 0] < cost[FASTER[0], 1] and cost[0, 0] > cost[0, 1]
    config = DFQConfig(steps=3, batch_size=16, val_batch_size=32)
    found = search_latency(problem, "dfq", episodes=1, dfq_config=config)
    assert found.latency_ms <= problem.budget_ms + 1e-9
    assert found.evaluated_policies == 1  # DFQ's own policy, scored by the shared evaluator
    assert found.details["own_latency_ms"] >= found.latency_ms - 1e-9
    assert all(b.is_float or b.a_bits == 8 for b in found.policy)
