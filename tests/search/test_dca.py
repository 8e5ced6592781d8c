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
from hwnas.search.dca import DCAConfig, expected_range, run
from hwnas.search.lagrangian import Lagrangian, convergence
from hwnas.search.lookup_graph import graph_path, load_graph
from hwnas.spaces.base import SpaceConfig
from hwnas.spaces.darts import DartsSpace
from tests.search.dca_toy import lagrangian_toy, toy_tables


@pytest.mark.parametrize("scale", [1.0, 30.0])
@pytest.mark.parametrize("bound", [6.0, 10.0, 14.0])
def test_toy_expected_cost_settles_on_the_bound_and_lambda_settles(bound, scale):
    out = lagrangian_toy(bound, steps=300, scale=scale)  # 300 Adam steps at lr 0.01
    figures = convergence(out["history"])["flops"]
    assert figures["converged"] and figures["steps"] == 300
    assert figures["gap"] < 0.01  # |K - K'| / K' over the last 30 steps
    assert figures["lambda_change"] < 0.02  # and lambda no longer moves
    assert abs(out["expected"] - bound) < 0.01 * bound
    assert out["lambda"][-1] > 0  # the objective wants more cost: the bound binds from above


def test_the_multiplier_finds_its_scale():
    """The balancing multiplier scales with the objective; the relative gain finds it either way,
    where plain dual ascent (a fixed step, the old update) has not by the end of the run."""
    small, large = (lagrangian_toy(10.0, scale=s)["lambda"][-1] for s in (1.0, 30.0))
    assert 20 < large / small < 40
    plain = {"lr": 0.1 / 1e6, "unit": 1e6, "damping": 0.0}  # lambda += 0.1 x, lambda >= 0
    old = lagrangian_toy(10.0, scale=30.0, equality=False, **plain)
    figures = convergence(old["history"], unit=1e6)["flops"]
    assert figures["gap"] > 0.05 and old["lambda"][-1] < 0.2 * large


def test_equality_spends_a_slack_bound_inequality_leaves_it():
    """An objective that prefers cheap ops (scale < 0): the paper's K <= K' is slack (lambda 0,
    K well under K'); the default equality holds K at K' with a negative multiplier."""
    slack = lagrangian_toy(10.0, scale=-1.0, equality=False)
    assert slack["expected"] < 0.5 * 10.0 and (slack["lambda"] == 0).all()
    spent = lagrangian_toy(10.0, scale=-1.0)
    assert convergence(spent["history"])["flops"]["converged"]
    assert abs(spent["expected"] - 10.0) < 0.1 and spent["lambda"][-1] < 0


def test_dual_update_is_the_relative_pi_and_projected_without_equality():
    table = ChoiceTable(np.array([[0.0, 2.0], [0.0, 4.0]]), 1.0)
    model = CostModel("flops", table, None, "toy")  # type: ignore[arg-type]
    lagrangian = Lagrangian({"flops": model}, {"flops": 3.0}, 0.5, 0.0, damping=2.0, unit=1.0)
    probs = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)  # K = 1 + 1 + 2 = 4
    assert float(lagrangian.loss(probs)) == 0.0
    row: dict = {}
    lagrangian.observe(probs, row)  # first step: no change term; gain max(|0|, unit) = 1
    assert row == {"lambda_flops": pytest.approx(0.5 / 3), "violation_flops": pytest.approx(1 / 3)}
    assert float(lagrangian.loss(probs)) == pytest.approx(0.5 / 3 * 1 / 3)
    lagrangian.lam["flops"] = 4.0  # above the unit: the gain is |lambda|
    slack = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # K = 1, x = -2/3
    lagrangian.observe(slack, row)  # 4 + 4 * (0.5 * (-2/3) + 2 * (-2/3 - 1/3)) = -5.333
    assert lagrangian.lam["flops"] == pytest.approx(4 + 4 * (-1 / 3 - 2))
    one_sided = Lagrangian({"flops": model}, {"flops": 3.0}, 0.5, 0.0, equality=False)
    for _ in range(3):
        one_sided.observe(slack, row)
    assert one_sided.lam["flops"] == 0.0  # projected onto lambda >= 0
    restored = Lagrangian({"flops": model}, {"flops": 3.0}, 0.5, 0.0)
    restored.load(lagrangian.state())
    assert restored.state() == lagrangian.state()
    assert restored.last == {"flops": pytest.approx(-2 / 3)}  # the change term survives a resume


def test_convergence_figures():
    settle = [{"step": i, "lambda_m": 2.0, "violation_m": 0.01} for i in range(20)]
    swing = [{"step": i, "lambda_m": float(i), "violation_m": 0.2} for i in range(20)]
    assert convergence(settle)["m"] == {
        "gap": pytest.approx(0.01),
        "lambda_change": 0.0,
        "converged": True,
        "steps": 20,
    }
    # a multiplier that found its scale (30) and then sits near 0, moving by 1: settled
    near_zero = [30.0 * np.exp(-i / 5) + (-1) ** i * 0.5 for i in range(40)]
    rows = [{"step": i, "lambda_m": v, "violation_m": 0.005} for i, v in enumerate(near_zero)]
    assert convergence(rows)["m"]["converged"]
    assert convergence(rows)["m"]["lambda_change"] < 0.1
    figures = convergence([{"step": -1}, *swing])["m"]  # rows without duals are skipped
    assert figures["gap"] == pytest.approx(0.2) and figures["lambda_change"] == pytest.approx(
        2 / 19
    )
    assert not figures["converged"]


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
    config = DCAConfig(lookup_graph=False, bound_ratio=0.8, arch_lr=0.05, weight_sharing=True)
    result = run(problem, config, Hooks())
    (constraint,) = problem.constraints
    assert constraint.satisfied(result.arch)
    assert result.info["search_bounds"]["params"] == pytest.approx(0.8 * constraint.limit)
    lambdas = [r["lambda_params"] for r in result.history if "lambda_params" in r]
    assert len(lambdas) == 3 and min(lambdas) >= 0
    assert result.info["lambda"]["params"] == lambdas[-1]
    # at uniform alpha the expected params exceed 0.8 K_d: lambda must have grown
    assert result.history[1]["violation_params"] > 0 and lambdas[0] > 0
    figures = result.info["convergence"]["params"]
    assert set(figures) == {"gap", "lambda_change", "converged", "steps"}
    low, high = result.info["reachable"]["params"]
    assert low < result.info["expected_costs"]["params"] < high
    assert figures["steps"] == 3 and figures["gap"] == pytest.approx(
        abs(result.history[-1]["violation_params"])
    )


def test_lookup_graph_is_built_once_cached_and_used(digits_data):
    problem = _problem(digits_data, steps=3)
    config = DCAConfig(arch_lr=0.05, lookup_grid=(0.2, 0.5), lookup_refine=1, lookup_steps=2,
                       lookup_seeds=(0, 1), weight_sharing=True)  # fmt: skip
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
    assert document["identity"]["seeds"] == [0, 1] == graph_info["seeds"]
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
    with pytest.raises(UserError, match="lookup_seeds"):
        DCAConfig(lookup_seeds=())
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


def test_lagrangian_plot_is_written_for_histories_with_multipliers(tmp_path):
    from hwnas.search.plots import plot_lagrangian
    from hwnas.search.report import write_lagrangian_plot
    from hwnas.search.rundir import RunDir

    history = lagrangian_toy(10.0, steps=40)["history"]
    path = plot_lagrangian(history, tmp_path / "lagrangian.png")
    assert path is not None and path.read_bytes()[:4] == b"\x89PNG"
    assert plot_lagrangian([{"step": 0, "ce_train": 1.0}], tmp_path / "none.png") is None
    write_lagrangian_plot(RunDir(tmp_path / "run"), [{"step": 0}])  # no multipliers: no file
    assert not (tmp_path / "run" / "lagrangian.png").exists()
    (tmp_path / "run").mkdir()
    write_lagrangian_plot(RunDir(tmp_path / "run"), history)
    assert (tmp_path / "run" / "lagrangian.png").is_file()


def test_reachable_range_is_what_adam_can_travel():
    from hwnas.search.lagrangian import reachable_range

    cost, _ = toy_tables()
    model = CostModel("flops", ChoiceTable(cost, 0.0), None, "toy")  # type: ignore[arg-type]
    uniform = float(cost.mean(1).sum())  # 14 * 4.5 / 7 = 9
    short = reachable_range(model, cost.shape, 10, 0.01)
    long = reachable_range(model, cost.shape, 300, 0.05)
    assert cost.min(1).sum() <= long[0] < short[0] < uniform < short[1] < long[1]
    assert long[1] <= cost.max(1).sum() and long[0] < 0.05 and long[1] > 0.95 * 28
    assert short[1] - short[0] < 0.3 * 28  # 10 steps of 0.01 barely move the softmax
