"""Greedy-ADMM: the METHODS.md §1.6 toy, the layer-wise toy, real tiny runs and resuming."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwnas.costs.models import make_constraints
from hwnas.costs.tables import ChannelTable, ChoiceTable
from hwnas.search.admm_values import knapsack_values
from hwnas.search.api import Hooks
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.greedy_admm import (
    GreedyADMMConfig,
    _State,
    admm_alpha_step,
    beta_step,
    derive_own,
    mixing_weights,
    run,
)
from hwnas.spaces.base import SpaceConfig, create_space


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


def _loss_and_grad(net, space, alpha, x, y):
    a = torch.tensor(alpha, dtype=torch.float32, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(net(x, mixing_weights(a, space)), y)
    (grad,) = torch.autograd.grad(loss, a)
    return float(loss.detach()), grad.numpy().astype(np.float64)


@pytest.mark.parametrize("space_name", ["ib-channel", "fbnet"])
def test_the_loss_is_blind_to_a_blocks_gate_scale_and_so_are_the_values(space_name, digits_data):
    # The finding behind the knapsack values: BN after the gated projection (ib-channel) and the
    # per-layer L1 mixing (fbnet) make the loss invariant to a common scale of one block's
    # gates, so v**2 ranks blocks by a scale the loss never sees; the new values do not.
    space = create_space(space_name, SpaceConfig(32, 10, 0.25))
    net = space.build_supernet(seed=0)
    x, y = digits_data.train_x[:32], digits_data.train_y[:32]
    alpha = 1.0 + 0.1 * np.random.default_rng(0).standard_normal(space.alpha_shape)
    if space_name == "fbnet":
        block = (slice(5, 6), slice(None))  # layer 5
    else:
        table = space.cost_table("flops")
        block = table.item_block == np.flatnonzero(table.required)[0]  # no residual
    scaled = alpha.copy()
    scaled[block] *= 3.0
    loss, grad = _loss_and_grad(net, space, alpha, x, y)
    loss_scaled, grad_scaled = _loss_and_grad(net, space, scaled, x, y)
    assert loss_scaled == pytest.approx(loss, abs=1e-5)
    along = np.abs(np.sum(alpha[block] * grad[block])) / np.sum(np.abs(alpha[block] * grad[block]))
    assert along < 1e-4  # no loss gradient along the block's scale
    # the gradient scales as 1/s (up to BN's eps: ~5 % at this init)
    change = np.linalg.norm(3.0 * grad_scaled[block] - grad[block]) / np.linalg.norm(grad[block])
    assert change < 0.1

    def share(values):
        return values[block].sum() / values.sum()

    old = share(scaled**2) / share(alpha**2)
    new = knapsack_values(alpha, alpha, grad**2, space.relaxation)
    new_scaled = knapsack_values(scaled, scaled, grad_scaled**2, space.relaxation)
    assert old > 4.0  # the slides' values v**2 follow the scale the loss does not see
    assert share(new_scaled) / share(new) == pytest.approx(1.0, abs=0.15)


def _three_budgets(problem, fraction=0.4):
    limits = {}
    for metric, model in problem.costs.items():
        low, high = model.bounds()
        limits[metric] = low + fraction * (high - low)
    return dataclasses.replace(problem, constraints=make_constraints(problem.costs, limits))


@pytest.mark.parametrize("space", ["fbnet", "ib-channel"])
def test_own_derived_arch_meets_every_budget(space, make_problem):
    problem = _three_budgets(make_problem(space, steps=6))
    assert len(problem.constraints) == 3
    state = _State(problem, GreedyADMMConfig())
    own, values = derive_own(problem, GreedyADMMConfig(), state)  # alpha at init, no duals
    assert values.shape == problem.space.alpha_shape
    assert all(c.satisfied(own) for c in problem.constraints)
    result = run(problem, GreedyADMMConfig(), Hooks())
    own = problem.space.parse_arch(result.info["own_arch"])
    assert all(c.satisfied(own) for c in problem.constraints)
    assert result.info["own_costs"] == problem.arch_costs(own)
    # the binding budget is mostly used (the derivation is a projection, not a guess)
    assert max(c.value(own) / c.limit for c in problem.constraints) >= 0.7


@pytest.mark.parametrize("space", ["fbnet", "ib-channel"])
def test_null_alpha_control_keeps_alpha_at_its_initial_noise(space, make_problem):
    problem = make_problem(space, steps=6)
    config = GreedyADMMConfig(train_alpha=False, snapshot_every=1)
    result = run(problem, config, Hooks())
    noise = np.random.default_rng(problem.budget.seed).standard_normal(problem.space.alpha_shape)
    init = np.round(config.alpha_init * (1 + config.init_noise * noise), 5).ravel()
    for snapshot in result.snapshots:
        np.testing.assert_allclose(snapshot["alpha"], init, atol=2e-5)
    assert result.history[-1]["gap_latency_ms"] > 0  # the beta- and dual steps did run
    (constraint,) = problem.constraints
    assert constraint.satisfied(problem.space.parse_arch(result.info["own_arch"]))
