"""The shared step after every method: the own architecture, repair and fill, and their record."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.costs.models import make_constraints, make_cost_models
from hwnas.search.api import SearchBudget, SearchData, SearchProblem
from hwnas.search.finalize import finalize
from hwnas.spaces.base import SpaceConfig, create_space


def _problem(space_name: str, pi4, fraction: float, metrics=("latency_ms",)) -> SearchProblem:
    space = create_space(space_name, SpaceConfig(32, 10, 0.25))
    costs = make_cost_models(space, pi4)
    limits = {}
    for m in metrics:
        low, high = costs[m].bounds()
        limits[m] = low + fraction * (high - low)
    empty = SearchData(*(np.zeros(0) for _ in range(4)))
    return SearchProblem(space, empty, make_constraints(costs, limits), SearchBudget(), costs)


def _replay(record: dict, stage: str) -> dict:
    """Costs of the stage's start plus what each recorded step added."""
    start = record["own"] if stage == "repair" else record["repair"]
    total = dict(start["costs"])
    for step in record[stage]["steps"]:
        for m, added in step["added"].items():
            total[m] += added
    return total


@pytest.mark.parametrize("space_name", ["fbnet", "ib-channel"])
def test_an_infeasible_own_arch_is_repaired_and_every_step_is_recorded(space_name, pi4):
    problem = _problem(space_name, pi4, 0.3, metrics=("latency_ms", "params"))
    space = problem.space
    rng = np.random.default_rng(0)
    values = rng.random(space.alpha_shape)
    if space.relaxation == "choice":
        own = space.arch_from_vector(np.full(22, 7))  # the most expensive op everywhere
    else:
        own = space.arch_from_vector(space.cost_table("flops").max_units.copy())
    done = finalize(problem, own, values, fill=True)
    record = json.loads(json.dumps(done.record))
    assert not record["own"]["feasible"] and record["repair"]["needed"]
    assert record["repair"]["steps"] and record["repair"]["feasible"]
    assert all(c.satisfied(done.arch) for c in problem.constraints)
    for stage in ("repair", "fill"):  # the steps add up to the stage's cost change
        replayed = _replay(record, stage)
        for m, cost in record[stage]["costs"].items():
            assert replayed[m] == pytest.approx(cost, rel=1e-9, abs=1e-9)
    assert record["fill"]["arch"] == space.format_arch(done.arch)
    assert record["changed"]


@pytest.mark.parametrize("space_name", ["fbnet", "ib-channel"])
def test_fill_is_a_choice_and_needs_preferences(space_name, pi4):
    problem = _problem(space_name, pi4, 0.5)
    space, (constraint,) = problem.space, problem.constraints
    if space.relaxation == "choice":
        own = space.arch_from_vector(np.full(22, 8))  # all skips: far below the budget
    else:
        table = space.cost_table("flops")  # the least each block needs
        counts = np.zeros_like(table.max_units)
        counts[table.required, 0] = table.granularity
        own = space.arch_from_vector(counts)
    values = np.random.default_rng(1).random(space.alpha_shape)
    off = finalize(problem, own, values, fill=False)
    assert off.record["fill"]["steps"] == [] and off.record["fill"]["enabled"] is False
    if space.relaxation == "choice":  # a feasible own arch is delivered as it is
        assert off.arch == own and not off.record["repair"]["needed"]
    on = finalize(problem, own, values, fill=True)
    assert on.record["fill"]["steps"]
    assert 0.9 * constraint.limit <= constraint.value(on.arch) <= constraint.limit
    assert on.record["fill"]["of_budget"]["latency_ms"] == pytest.approx(
        constraint.value(on.arch) / constraint.limit
    )
    none = finalize(problem, off.arch, None, fill=True)  # no preferences: nothing to fill with
    assert none.arch == off.arch and none.record["fill"]["applies"] is False
