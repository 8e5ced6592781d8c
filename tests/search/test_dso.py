"""DSO-NAS: APG exact zeros, latency-weighted L1, the gamma bisection, the search on digits
(METHODS.md §7.4)."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.search.api import Hooks, get_method, method_config
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.dso import DSOConfig, apg_step, bisect_gamma, multipliers, soft_threshold
from hwnas.spaces import dso_geometry as geo
from hwnas.spaces.base import SpaceConfig, create_space
from hwnas.spaces.dso import edge_savings, surviving

BUDGET = {"steps": 24, "warmup_steps": 6, "eval_every": 12}


def test_soft_threshold_gives_exact_zeros():
    z = np.array([-0.3, -0.1, 0.0, 0.05, 0.1, 0.25])
    out = soft_threshold(z, np.full(6, 0.1))
    assert out.tolist() == pytest.approx([-0.2, 0.0, 0.0, 0.0, 0.0, 0.15])
    assert (out[1:5] == 0.0).all()  # exactly, not nearly


def test_apg_keeps_lambda_nonnegative_and_zeros_grow_with_gamma():
    rng = np.random.default_rng(0)
    lam0, grads = rng.uniform(0.2, 1.5, 200), rng.normal(0, 1, (30, 200))
    zeros = []
    for gamma in np.geomspace(0.01, 10, 13):
        lam, velocity = lam0.copy(), np.zeros(200)
        for g in grads:  # the same task gradients at every gamma
            lam, velocity = apg_step(lam, g, velocity, 0.1, np.full(200, gamma), 0.9)
            assert (lam >= 0).all()
        zeros.append(int((lam == 0).sum()))
    assert zeros == sorted(zeros) and zeros[0] < 100 and zeros[-1] == 200


def test_expensive_edges_die_first_at_equal_task_gradients():
    space = create_space("dso", SpaceConfig(32, 10, 0.25))
    table = space.cost_table("flops")
    cost = lambda arch: table.discrete(space.arch_vector(arch))  # noqa: E731
    mult = multipliers(edge_savings(cost, np.ones(geo.NUM_EDGES, bool)), 0.5)
    ops = np.array([geo.EDGES[e % geo.EDGES_PER_BLOCK].op for e in range(geo.NUM_EDGES)])
    # conv3x3 edges cost the same in every block (2.36 M MACs), conv1x1 the least
    assert np.all(mult[ops == 0] == 1.0) and np.all(mult[ops == 2] == 0.5)
    assert np.all((mult[ops == 1] > 0.5) & (mult[ops == 1] < 1.0))
    lam, velocity = np.ones(geo.NUM_EDGES), np.zeros(geo.NUM_EDGES)
    died = np.full(geo.NUM_EDGES, -1)
    for step in range(300):
        grad = np.full(geo.NUM_EDGES, -0.02)  # the task pulls every edge up equally
        lam, velocity = apg_step(lam, grad, velocity, 0.1, 0.05 * mult, 0.9)
        died[(lam == 0) & (died < 0)] = step
    assert (died >= 0).all()
    assert (
        died[ops == 0].max() < died[ops == 1].min() <= died[ops == 1].max() < died[ops == 2].min()
    )
    order = np.argsort(-mult, kind="stable")  # a larger saving never dies later
    assert (np.diff(died[order]) >= 0).all()


def test_bisection_finds_the_smallest_fitting_gamma():
    calls = []

    def fits(gamma: float) -> bool:
        calls.append(gamma)
        return gamma >= 3.7

    found = bisect_gamma(fits, 1e-3, 50.0, 12, 0.05)
    assert 3.7 <= found <= 3.7 * 1.05 and len(calls) <= 12
    assert calls[:2] == [1e-3, 50.0]
    calls.clear()
    assert bisect_gamma(fits, 5.0, 50.0, 12, 0.05) == 5.0 and calls == [5.0]
    calls.clear()
    assert bisect_gamma(lambda g: calls.append(g) and False, 1e-3, 1.0, 6, 0.05) is None
    assert len(calls) == 6 and calls[1:] == [1.0, 2.0, 4.0, 8.0, 16.0]  # raised until it gives up


def test_config_errors_are_user_errors():
    with pytest.raises(UserError, match="gamma_l1 >= 0"):
        DSOConfig(gamma_l1=-1.0)
    with pytest.raises(UserError, match="counts >= 1"):
        DSOConfig(max_probes=0)
    with pytest.raises(UserError, match="unknown method setting"):
        method_config(get_method("dso"), {"gamma": 0.1})


def _run(problem, hooks=None, **settings):
    spec = get_method("dso")
    return spec.run(problem, method_config(spec, settings), hooks or Hooks())


def test_tighter_budget_yields_a_cheaper_pruned_arch(make_problem):
    results = {}
    for fraction in (0.6, 0.15):
        problem = make_problem("dso", fraction=fraction, **BUDGET)
        result = _run(problem, w_steps_per_lambda=1)
        (constraint,) = problem.constraints
        info = result.info
        assert info["budget_met"] and constraint.satisfied(result.arch)
        results[fraction] = constraint.value(result.arch)
        # the method's own arch: exactly the live edges with lambda > 0, lambda >= 0
        lam = result.values
        assert lam.shape == (geo.NUM_EDGES,) and (lam >= 0).all()
        assert result.arch == surviving(lam)
        # the bisection starts at the paper's gamma and delivers the smallest fitting one
        probes = info["bisection"]
        assert probes[0]["gamma_l1"] == 1e-3 and len(probes) <= 8
        fitting = [p["gamma_l1"] for p in probes if p["fits"]]
        assert info["gamma_l1"] == min(fitting)
        assert not any(p["fits"] for p in probes if p["gamma_l1"] < info["gamma_l1"])
        assert info["steps"]["total"] == 24 + (len(probes) - 1) * info["steps"]["probe"]
        assert any("disparity_flops" in row for row in result.history)
    assert results[0.15] < results[0.6]


def test_an_interrupted_search_resumes_to_the_same_result(make_problem, tmp_path):
    problem = make_problem("dso", fraction=0.3, **BUDGET)
    plain = _run(problem)
    store = CheckpointStore(tmp_path / "ckpt")
    seen = []

    def stop() -> bool:
        return len(seen) == 9

    hooks = Hooks(lambda done, total, status: seen.append(done), store, stop)
    with pytest.raises(KeyboardInterrupt):
        _run(problem, hooks)
    resumed = _run(problem, Hooks(checkpoint=store))
    assert resumed.arch == plain.arch
    np.testing.assert_array_equal(resumed.values, plain.values)
    assert resumed.info["bisection"] == plain.info["bisection"]


def test_multipliers_are_normalised_over_the_surviving_edges():
    savings = np.array([0.0, 1.0, 2.0, 3.0, 5.0])
    alive = np.array([False, True, True, True, False])
    assert multipliers(savings, 0.5).tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8, 1.0])
    assert multipliers(savings, 0.5, alive).tolist() == pytest.approx([0.5, 0.5, 0.75, 1.0, 1.0])
    assert multipliers(np.full(4, 2.0), 0.5).tolist() == [1.0] * 4
