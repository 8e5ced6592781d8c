"""Repair and fill against exact cost tables, on both relaxations and several budgets."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.costs.models import make_constraints, make_cost_models
from hwnas.errors import UserError
from hwnas.search.derive import make_feasible
from hwnas.spaces.base import SpaceConfig, create_space


@pytest.mark.parametrize("space_name", ["fbnet", "ib-channel"])
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5, 0.8])
def test_repair_lands_in_the_budget_band(space_name, fraction, pi4):
    space = create_space(space_name, SpaceConfig(32, 10, 0.25))
    costs = make_cost_models(space, pi4)
    low, high = costs["latency_ms"].bounds()
    p_low, p_high = costs["params"].bounds()
    limits = {"latency_ms": low + fraction * (high - low), "params": p_low + 0.5 * (p_high - p_low)}
    constraints = make_constraints(costs, limits)
    rng = np.random.default_rng(0)
    for _ in range(3):
        values = rng.random(space.alpha_shape)
        if space.relaxation == "choice":
            # bigger ops preferred (as a trained search would): repair from the most expensive
            # network must stop at the budget, not far below it
            values += 3 * costs["latency_ms"].table.values / costs["latency_ms"].table.values.max()
            start = np.full(22, 7)
        else:
            start = np.ones(space.alpha_shape, dtype=bool)
        arch = make_feasible(space, start, values, constraints)
        assert all(c.satisfied(arch) for c in constraints)
        assert max(c.value(arch) / c.limit for c in constraints) >= 0.9


@pytest.mark.parametrize("space_name", ["fbnet", "ib-channel"])
def test_fill_spends_the_budget_on_preferred_choices(space_name, pi4):
    space = create_space(space_name, SpaceConfig(32, 10, 0.25))
    costs = make_cost_models(space, pi4)
    low, high = costs["latency_ms"].bounds()
    (constraint,) = make_constraints(costs, {"latency_ms": low + 0.3 * (high - low)})
    values = np.random.default_rng(1).random(space.alpha_shape)
    if space.relaxation == "choice":
        values[:, 8] = 0.0  # skips are the least preferred op
        start = np.full(22, 8)
    else:
        start = np.zeros(space.alpha_shape, dtype=bool)
    arch = make_feasible(space, start, values, [constraint])
    assert 0.9 * constraint.limit <= constraint.value(arch) <= constraint.limit


def test_fill_respects_preferences(pi4):
    space = create_space("fbnet", SpaceConfig(32, 10, 0.25))
    costs = make_cost_models(space, pi4)
    (constraint,) = make_constraints(costs, {"latency_ms": 30.0})
    values = np.zeros(space.alpha_shape)
    values[:, 8] = 1.0  # skip preferred everywhere: nothing is worth more, nothing is added
    values[:, 2] = 0.5
    arch = make_feasible(space, np.full(22, 8), values, [constraint], fill=False)
    assert arch == (8,) * 22
    # filling (the default): the cost lands in the band below the budget
    spent = make_feasible(space, np.full(22, 8), values, [constraint])
    assert 0.9 * constraint.limit <= constraint.value(spent) <= constraint.limit


def test_jointly_infeasible_budgets_are_reported(pi4):
    space = create_space("fbnet", SpaceConfig(32, 10, 0.25))
    costs = make_cost_models(space, pi4)
    # Each budget alone is attainable, but not together: at the last layer the fewest parameters
    # are the grouped k3_e1_g2 op's, the lowest latency the 1x1-conv skip's.
    constraints = make_constraints(
        costs,
        {"latency_ms": costs["latency_ms"].bounds()[0], "params": costs["params"].bounds()[0]},
    )
    with pytest.raises(UserError, match="no architecture meets the budgets together"):
        make_feasible(space, np.zeros(22, int), np.ones(space.alpha_shape), constraints)
