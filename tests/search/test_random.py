"""Random search: feasible candidates near the budget, and the equal-wall-clock mode."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.search.api import Hooks
from hwnas.search.random import RandomSearchConfig, run, sample_feasible


def test_samples_are_feasible_and_fill_puts_them_near_the_budget(make_problem):
    problem = make_problem("fbnet", fraction=0.4)
    (constraint,) = problem.constraints
    rng = np.random.default_rng(0)
    filled = [sample_feasible(problem, rng, fill=True) for _ in range(5)]
    repaired = [sample_feasible(problem, rng, fill=False) for _ in range(5)]
    assert all(constraint.satisfied(a) for a in filled + repaired)
    assert min(constraint.value(a) for a in filled) >= 0.9 * constraint.limit
    assert np.mean([constraint.value(a) for a in repaired]) < np.mean(
        [constraint.value(a) for a in filled]
    )


def test_a_time_budget_trains_candidates_until_it_is_spent(make_problem):
    problem = make_problem("fbnet", fraction=0.5, steps=4)
    tiny = run(problem, RandomSearchConfig(candidates=2, seconds=1e-6), Hooks())
    assert tiny.info["candidates"] == 1 and len(tiny.tried) == 1  # at least one is trained
    capped = run(problem, RandomSearchConfig(candidates=2, seconds=3600, max_candidates=3), Hooks())
    assert capped.info["candidates"] == 3 and capped.info["seconds_budget"] == 3600
    assert capped.tried[0].arch == tiny.tried[0].arch  # the same sample sequence
    assert all(c.satisfied(capped.arch) for c in problem.constraints)


@pytest.mark.parametrize("space", ["darts", "dso"])
def test_cell_and_edge_spaces_sample_through_the_same_repair_and_fill(make_problem, space):
    problem = make_problem(space, fraction=0.3, steps=3)
    (constraint,) = problem.constraints
    rng = np.random.default_rng(1)
    filled = [sample_feasible(problem, rng, fill=True) for _ in range(4)]
    repaired = [sample_feasible(problem, rng, fill=False) for _ in range(4)]
    assert all(constraint.satisfied(a) for a in filled + repaired)
    assert np.mean([constraint.value(a) for a in repaired]) < np.mean(
        [constraint.value(a) for a in filled]
    )
    result = run(problem, RandomSearchConfig(candidates=1), Hooks())
    assert constraint.satisfied(result.arch) and len(result.tried) == 1
