"""Greedy-ADMM: the METHODS.md §1.6 toy, the layer-wise toy, real tiny runs and resuming."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.costs.tables import ChannelTable, ChoiceTable
from hwnas.search.api import Hooks
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.greedy_admm import GreedyADMMConfig, admm_alpha_step, beta_step, run


def _admm_toy(tables, limits, target, steps, rho0=0.5, rho_max=50.0, lr=0.1, growth=1.02):
    """ADMM on the surrogate loss 0.5 ||alpha - target||^2 with the module's own steps."""
    alpha = np.ones_like(target)
    duals = [np.zeros_like(target) for _ in tables]
    rho = rho0
    for _ in range(steps):
        betas = []
        for table, limit, m in zip(tables, limits, duals):
            v = alpha + m / rho
            betas.append(beta_step(v, table, limit) * v)
        alpha = admm_alpha_step(alpha, lr * (alpha - target), betas, duals, rho, lr)
        duals = [m + rho * (alpha - b) for m, b in zip(duals, betas)]
        rho = min(rho * growth, rho_max)
    return alpha, betas


def test_channel_toy_ends_feasible_with_alpha_equal_to_beta():
    # METHODS.md §1.6: 40 channels, 3 constraints at ~35 % of the full cost, quadratic loss.
    rng = np.random.default_rng(0)
    costs = rng.uniform(1, 10, size=(3, 40))
    tables = [
        ChannelTable(c[:, None], np.ones((40, 1), int), np.zeros(40), np.zeros(40, bool), 0.0)
        for c in costs
    ]
    limits = 0.35 * costs.sum(1)
    alpha, betas = _admm_toy(tables, limits, rng.uniform(0.5, 2.0, 40), steps=1200)
    support = np.abs(alpha) > 1e-3
    assert 0 < support.sum() < 40
    for c, table in enumerate(tables):
        assert 0.9 * limits[c] <= table.discrete(support[:, None].astype(int)) <= limits[c]
        assert np.max(np.abs(alpha - betas[c])[support]) < 1e-5
    assert np.max(np.abs(alpha[~support])) < 1e-6


def test_layerwise_toy_derives_a_tight_feasible_choice(pi4):
    table = ChoiceTable(np.array(pi4.option_table_ms()), pi4.constant_ms)
    limit = table.minimum() + 0.2 * (table.maximum() - table.minimum())
    rng = np.random.default_rng(1)
    target = 1 + 0.3 * rng.standard_normal(table.shape)
    alpha, (beta,) = _admm_toy([table], [limit], target, steps=400)
    choice = np.argmax(alpha**2, axis=1)
    assert np.array_equal(choice, np.argmax(beta**2, axis=1))
    assert 0.9 * limit <= table.discrete(choice) <= limit


@pytest.mark.parametrize("space", ["fbnet", "ib-channel"])
def test_real_search_meets_the_budget_and_logs_fig4_data(space, make_problem):
    problem = make_problem(space, fraction=0.3)
    result = run(problem, GreedyADMMConfig(snapshot_every=2), Hooks())
    (constraint,) = problem.constraints
    assert constraint.satisfied(result.arch)
    assert constraint.value(result.arch) >= 0.8 * constraint.limit
    assert [r["step"] for r in result.history] == list(range(6))
    assert all("disparity_latency_ms" in r for r in result.history)
    assert "gap_latency_ms" in result.history[-1] and "gap_latency_ms" not in result.history[0]
    assert [s["step"] for s in result.snapshots] == [1, 2, 4, 6]
    assert len(result.tried) == 2 and all(0 <= t.val_accuracy <= 1 for t in result.tried)


def test_interrupted_search_resumes_to_the_same_result(make_problem, tmp_path):
    problem = make_problem("fbnet", steps=6)
    reference = run(problem, GreedyADMMConfig(), Hooks())

    def interrupt(done, total, status):
        if done == 3:
            raise KeyboardInterrupt

    store = CheckpointStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(problem, GreedyADMMConfig(), Hooks(interrupt, store))
    assert store.load("search")[1]["step"] == 3
    resumed = run(problem, GreedyADMMConfig(), Hooks(None, store))
    assert resumed.arch == reference.arch
    for a, b in zip(resumed.history, reference.history):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
