"""DCA-NAS: the Lagrangian toy (METHODS.md §2.4), dual ascent, real tiny runs with the lookup graph."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.costs.models import CostModel, make_constraints, make_cost_models
from hwnas.costs.tables import ChoiceTable
from hwnas.errors import UserError
from hwnas.search.api import Hooks, SearchBudget, SearchProblem
from hwnas.search.dca import DCAConfig, Lagrangian, expected_range, run
from hwnas.search.lookup_graph import graph_path, load_graph
from hwnas.spaces.base import SpaceConfig
from hwnas.spaces.darts import DartsSpace
from tests.search.dca_toy import lagrangian_toy


@pytest.mark.parametrize("bound", [6.0, 10.0, 14.0])
def test_toy_expected_cost_settles_on_the_bound_and_lambda_behaves(bound):
    out = lagrangian_toy(bound)
    tail = np.abs(out["violation"][-len(out["violation"]) // 10 :])
    assert tail.mean() < 0.05
    lam, violation = out["lambda"], out["violation"]
    assert (lam >= 0).all() and lam[-1] > 0
    grew = lam[1:] > lam[:-1]
    assert grew[violation[1:] > 0].all()  # lambda grows at every step the bound is violated
    assert not grew[violation[1:] < 0].any()  # and never while it is slack


def test_dual_ascent_is_projected_and_the_loss_is_the_lagrangian():
    table = ChoiceTable(np.array([[0.0, 2.0], [0.0, 4.0]]), 1.0)
    model = CostModel("flops", table, None, "toy")  # type: ignore[arg-type]
    lagrangian = Lagrangian({"flops": model}, {"flops": 3.0}, lr=0.5, init=0.0)
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)  # K = 1 + 1 + 2 = 4
    assert float(lagrangian.loss(probs)) == 0.0
    row: dict = {}
    lagrangian.observe(probs, row)
    assert row == {"lambda_flops": pytest.approx(0.5 / 3), "violation_flops": pytest.approx(1 / 3)}
    assert float(lagrangian.loss(probs)) == pytest.approx(0.5 / 3 * 1 / 3)
    slack = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # K = 1
    for _ in range(3):
        lagrangian.observe(slack, row)
    assert lagrangian.lam["flops"] == 0.0  # projected onto lambda >= 0
    restored = Lagrangian({"flops": model}, {"flops": 3.0}, lr=0.5, init=0.0)
    restored.load({"lambda": {"flops": 0.25}})
    assert restored.state() == {"lambda": {"flops": 0.25}}


def _problem(digits_data, fraction=0.3, steps=4, **budget) -> SearchProblem:
    space = DartsSpace(SpaceConfig(32, 10, 0.25), cells=3)
    costs = make_cost_models(space)
    low, high = costs["params"].bounds()
    options = {"steps": steps, "warmup_steps": 1, "batch_size": 8, "eval_every": 0,
               "eval_images": 16, **budget}  # fmt: skip
    constraints = make_constraints(costs, {"params": low + fraction * (high - low)})
    return SearchProblem(space, digits_data, constraints, SearchBudget(**options), costs)


def test_run_without_lookup_graph_searches_at_the_budget_and_repairs(digits_data):
    problem = _problem(digits_data)
    config = DCAConfig(lookup_graph=False, bound_ratio=0.8, arch_lr=0.05, lambda_lr=1.0,
                       weight_sharing=True)  # fmt: skip
    result = run(problem, config, Hooks())
    (constraint,) = problem.constraints
    assert constraint.satisfied(result.arch)
    assert result.info["search_bounds"]["params"] == pytest.approx(0.8 * constraint.limit)
    lambdas = [r["lambda_params"] for r in result.history if "lambda_params" in r]
    assert len(lambdas) == 3 and min(lambdas) >= 0
    assert result.info["lambda"]["params"] == lambdas[-1]
    # at uniform alpha the expected params exceed 0.8 K_d: lambda must have grown
    assert result.history[1]["violation_params"] > 0 and lambdas[0] > 0


def test_lookup_graph_is_built_once_cached_and_used(digits_data):
    problem = _problem(digits_data, steps=3)
    config = DCAConfig(arch_lr=0.05, lambda_lr=1.0, lookup_grid=(0.2, 0.5), lookup_refine=1,
                       lookup_steps=2, weight_sharing=True)  # fmt: skip
    first = run(problem, config, Hooks())
    graph_info = first.info["lookup_graphs"]["params"]
    path = graph_info["file"]
    document = json.loads(Path(path).read_text(encoding="utf-8"))
    assert document["kind"] == "hwnas-lookup-graph" and document["schema_version"] == 1
    assert 2 <= len(document["points"]) <= 3  # the grid, plus at most one refinement
    (constraint,) = problem.constraints
    low, high = expected_range(constraint.cost)
    bounds = [p["bound"] for p in document["points"]]
    assert pytest.approx(low + 0.2 * (high - low)) in bounds
    graph = load_graph("params", document["identity"])
    assert first.info["search_bounds"]["params"] == graph.search_bound(constraint.limit)
    assert constraint.satisfied(first.arch)
    # another run (no refinement asked): the cached graph, no new searches, the same bound
    second = run(problem, dataclasses.replace(config, lookup_refine=0), Hooks())
    assert json.loads(Path(path).read_text(encoding="utf-8"))["points"] == document["points"]
    assert second.info["search_bounds"] == first.info["search_bounds"]
    assert str(graph_path("params", graph.identity)) == path


def test_config_is_validated_and_speed_ups_need_the_darts_space(make_problem):
    with pytest.raises(UserError, match="lookup_grid"):
        DCAConfig(lookup_grid=(0.0, 0.5))
    with pytest.raises(UserError, match="lambda_lr"):
        DCAConfig(lambda_lr=0.0)
    problem = make_problem("fbnet", steps=3)
    with pytest.raises(UserError, match="options of the darts space"):
        run(problem, DCAConfig(lookup_graph=False, weight_sharing=True), Hooks())
    assert DCAConfig(order=2).bilevel().order == 2


def test_lookup_graph_identity_names_the_data_source_not_the_seed_split(make_problem):
    from hwnas.search.dca import lookup_identity

    problem = make_problem("fbnet", steps=3)
    cost = problem.constraints[0].cost
    data = problem.data
    other_split = dataclasses.replace(  # another seed's split: other tensors, same source
        data, train_x=data.train_x.flip(0), train_y=data.train_y.flip(0)
    )
    key = lambda d: lookup_identity(  # noqa: E731
        dataclasses.replace(problem, data=d), cost, DCAConfig(), 3
    )
    named = dataclasses.replace(data, source='{"dataset": "digits"}')
    assert key(named) == key(dataclasses.replace(other_split, source=named.source))
    assert key(data) != key(other_split)  # unnamed data: the tensors are the identity
    assert key(named) != key(dataclasses.replace(data, source='{"dataset": "mnist"}'))


def test_the_pipeline_names_its_data_without_the_seed():
    from hwnas.search.config import resolve_config
    from hwnas.search.pipeline import _load_data

    one, _ = _load_data(resolve_config(None, {"dataset": "digits", "seed": 1}))
    two, _ = _load_data(resolve_config(None, {"dataset": "digits", "seed": 2}))
    assert one.source == two.source and json.loads(one.source)["dataset"] == "digits"
    assert not torch.equal(one.train_y, two.train_y)  # the seeds' splits differ
