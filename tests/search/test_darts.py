"""DARTS: gradients (METHODS.md §3.4), the latency penalty, repair of genotypes, real tiny runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.func import functional_call

from hwnas.costs.latency import LUTSource
from hwnas.costs.models import make_constraints, make_cost_models
from hwnas.errors import UserError
from hwnas.search.api import Hooks, SearchBudget, SearchProblem
from hwnas.search.bilevel import edge_probs
from hwnas.search.cell_repair import make_feasible_cells
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.darts import CostPenalty, DartsConfig, Unrolled, first_order_grad, run
from hwnas.search.finalize import finalize
from hwnas.spaces import darts_genotype as gt
from hwnas.spaces.base import SpaceConfig
from hwnas.spaces.darts import DartsSpace
from tests.spaces.test_darts import _synthetic_lut


def _smooth_(module: torch.nn.Module) -> torch.nn.Module:
    """ReLU -> Softplus(5), max pool -> average pool, in place.

    The finite-difference identities hold for twice-differentiable losses. In a 4-channel net on
    8 x 8 images, ReLU and max-pool switches make grad_alpha L jump within 1e-4 of w: on the ReLU
    supernet the central difference was off by 4-25x for radii 1e-2..1e-4 and exact (1e-9) at
    1e-6; on this smooth twin it is within 3e-4 at DARTS' radius 0.01 (O(r^2), as it should be).
    """
    for name, child in module.named_children():
        if isinstance(child, torch.nn.ReLU):
            setattr(module, name, torch.nn.Softplus(beta=5))
        elif isinstance(child, torch.nn.MaxPool2d):
            setattr(module, name, torch.nn.AvgPool2d(3, child.stride, 1))
        else:
            _smooth_(child)
    return module


@pytest.fixture(scope="module")
def tiny():
    """METHODS.md §3.4's tiny supernet in float64 (3 cells, C=4, 8 x 8 random images), with
    smooth activations (see :func:`_smooth_`)."""
    space = DartsSpace(SpaceConfig(32, 10, 0.25), cells=3)
    net = _smooth_(space.build_supernet(seed=0).double())
    g = torch.Generator().manual_seed(0)
    alpha = torch.nn.Parameter(0.3 * torch.randn(28, 8, generator=g, dtype=torch.float64))
    batch = lambda: (torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64),  # noqa: E731
                     torch.randint(0, 10, (8,), generator=g))  # fmt: skip
    return space, net, alpha, batch(), batch()


def _ce(net, params, alpha, x, y):
    return torch.nn.functional.cross_entropy(
        functional_call(net, params, (x, edge_probs(alpha))), y
    )


def test_finite_difference_hvp_matches_double_backward(tiny):
    _, net, alpha, (xt, yt), (xv, yv) = tiny
    params = dict(net.named_parameters())
    v = torch.autograd.grad(_ce(net, params, alpha, xv, yv), list(params.values()))
    grads_w = torch.autograd.grad(
        _ce(net, params, alpha, xt, yt), list(params.values()), create_graph=True
    )
    dot = sum((g * t).sum() for g, t in zip(grads_w, v))
    (exact,) = torch.autograd.grad(dot, [alpha])
    before = [p.detach().clone() for p in net.parameters()]
    approx = Unrolled(net, alpha, 0.9, 3e-4).hessian_vector_product(v, xt, yt)
    assert float((approx - exact).norm() / exact.norm()) < 1e-2
    assert exact.abs().max() > 0
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # restored


def test_second_order_gradient_matches_autograd_through_the_virtual_step(tiny):
    _, net, alpha, train, val = tiny
    xi = 0.05
    params = dict(net.named_parameters())
    names, values = list(params), list(params.values())
    grads_w = torch.autograd.grad(_ce(net, params, alpha, *train), values, create_graph=True)
    unrolled = {n: p - xi * g for n, p, g in zip(names, values, grads_w)}
    (exact,) = torch.autograd.grad(_ce(net, unrolled, alpha, *val), [alpha])
    optimizer = torch.optim.SGD(net.parameters(), lr=xi)  # no momentum buffer yet
    approx, _ = Unrolled(net, alpha, 0.0, 0.0).alpha_grad(train, val, xi, optimizer)
    assert float((approx - exact).norm() / exact.norm()) < 1e-2


def test_first_order_gradient_matches_finite_differences(tiny):
    _, net, alpha, _, (xv, yv) = tiny
    grad, loss = first_order_grad(net, alpha, xv, yv)
    params = dict(net.named_parameters())
    assert loss == pytest.approx(float(_ce(net, params, alpha, xv, yv).detach()))
    h = 1e-6
    for index in [(0, 0), (3, 4), (20, 7), (27, 1)]:
        bumped = [alpha.detach().clone() for _ in range(2)]
        bumped[0][index] += h
        bumped[1][index] -= h
        with torch.no_grad():
            up, down = (float(_ce(net, params, b, xv, yv)) for b in bumped)
        numeric = (up - down) / (2 * h)
        assert grad[index].item() == pytest.approx(numeric, rel=1e-4, abs=1e-9)


def test_expected_cost_gradient_is_the_closed_form(tiny):
    space = tiny[0]
    model = make_cost_models(space, _latency_source(space))["latency_ms"]
    limit = 0.5 * sum(model.bounds())
    (constraint,) = make_constraints({"latency_ms": model}, {"latency_ms": limit})
    alpha = torch.randn(28, 8, dtype=torch.float64, requires_grad=True)
    penalty = CostPenalty([constraint], weight=2.0, form="linear")
    (grad,) = torch.autograd.grad(penalty.loss(edge_probs(alpha)), [alpha])
    p = edge_probs(alpha).detach().numpy()
    table = model.table.values
    closed = 2.0 / limit * p * (table - (p * table).sum(1, keepdims=True))  # p (T - E_row[T])
    np.testing.assert_allclose(grad.numpy(), closed, rtol=1e-9, atol=1e-12)


def _latency_source(space: DartsSpace) -> LUTSource:
    return LUTSource(_synthetic_lut(space, 0.5), "synthetic")


def _darts_problem(digits_data, metric="latency_ms", fraction=0.4, steps=6, **budget):
    space = DartsSpace(SpaceConfig(32, 10, 0.25), cells=3)
    costs = make_cost_models(space, _latency_source(space))
    low, high = costs[metric].bounds()
    options = {"steps": steps, "warmup_steps": 1, "batch_size": 16, "eval_every": 3,
               "eval_images": 32, "checkpoint_every": 2, **budget}  # fmt: skip
    constraints = make_constraints(costs, {metric: low + fraction * (high - low)})
    return SearchProblem(space, digits_data, constraints, SearchBudget(**options), costs)


def test_expected_latency_decreases_as_the_penalty_weight_grows(digits_data):
    problem = _darts_problem(digits_data, steps=3, batch_size=8)
    expected = []
    for weight in (0.0, 1.0, 10.0, 100.0):
        config = DartsConfig(arch_lr=0.05, penalty_weight=weight, weight_sharing=True)
        result = run(problem, config, Hooks())
        expected.append(result.info["expected_costs"]["latency_ms"])
    assert all(a > b for a, b in zip(expected, expected[1:])), expected


def test_second_order_run_meets_the_budget_and_logs(digits_data):
    problem = _darts_problem(digits_data, metric="params", fraction=0.2, steps=3)
    result = run(problem, DartsConfig(order=2, arch_lr=0.05), Hooks())
    (constraint,) = problem.constraints
    assert result.arch == problem.space.derive(result.values)  # the method's own genotype
    done = finalize(problem, result.arch, result.values, fill=False)
    assert constraint.satisfied(done.arch)
    assert done.record["repair"]["needed"] == (not constraint.satisfied(result.arch))
    assert all(op != 0 for _, op in done.arch)
    rows = result.history
    assert [r["step"] for r in rows] == [0, 1, 2] and "ce_val" not in rows[0]
    assert all({"ce_val", "expected_params", "disparity_params"} <= set(r) for r in rows[1:])
    info = result.info
    assert info["order"] == 2 and info["expected_costs"]["params"] > 0


def test_repair_keeps_a_feasible_genotype_and_fixes_an_infeasible_one(digits_data):
    problem = _darts_problem(digits_data, metric="params", fraction=0.3)
    space, (constraint,) = problem.space, problem.constraints
    weights = np.random.default_rng(0).dirichlet(np.ones(8), size=28)
    start = space.derive(weights)
    big = make_constraints(problem.costs, {"params": constraint.cost.bounds()[1]})
    assert make_feasible_cells(start, weights, big, fill=False) == start
    tight = make_constraints(problem.costs, {"params": constraint.cost.bounds()[0] * 1.05})
    repaired = make_feasible_cells(start, weights, tight)
    assert tight[0].satisfied(repaired) and not tight[0].satisfied(start)
    gt.check_genotype(repaired)
    impossible = make_constraints(problem.costs, {"params": constraint.cost.bounds()[0]})
    low = impossible[0].limit
    with pytest.raises(UserError, match="no architecture meets"):
        from hwnas.costs.models import Constraint

        make_feasible_cells(start, weights, [Constraint(impossible[0].cost, 0.5 * low)])


def test_interrupted_search_resumes_to_the_same_result(digits_data, tmp_path):
    problem = _darts_problem(digits_data, metric="params", steps=4, batch_size=8)
    config = DartsConfig(arch_lr=0.05, weight_sharing=True)
    reference = run(problem, config, Hooks())

    def interrupt(done, total, status):
        if done == 2:
            raise KeyboardInterrupt

    store = CheckpointStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(problem, config, Hooks(interrupt, store))
    assert store.load("search")[1]["step"] == 2
    resumed = run(problem, config, Hooks(None, store))
    assert resumed.arch == reference.arch
    for a, b in zip(resumed.history, reference.history):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_config_is_validated():
    with pytest.raises(UserError, match="order must be 1 or 2"):
        DartsConfig(order=3)
    with pytest.raises(UserError, match="penalty must be"):
        DartsConfig(penalty="square")
    assert DartsConfig(arch_betas=[0.5, 0.9]).arch_betas == (0.5, 0.9)
