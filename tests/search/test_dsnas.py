"""DSNAS: METHODS.md §5.4's checks (toy estimator, gradient plumbing, one op per block, the cost
hinge alone), the Lagrangian form, early fixing, resume, and the inherited (not retrained)
child."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.costs.models import Constraint, CostModel
from hwnas.costs.tables import ChoiceTable
from hwnas.errors import UserError
from hwnas.search.api import Hooks
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.dsnas import (
    DSNASConfig,
    early_fix,
    inherited_child,
    make_objective,
    recalibrate_bn,
    run,
    score_gradient,
    search_with_supernet,
    single_path_backward,
)
from hwnas.search.objectives import CostPenalty
from hwnas.search.sampling import sample_paths, step_generator


class ToyNet(nn.Module):
    """Residual blocks of ops on (B, C, 8, 8) features (``x + d * op(x)``), DSNAS'
    ``forward_path`` contract."""

    def __init__(self, layers: list[list[nn.Module]], stem: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.stem, self.head = stem, head
        self.layers = nn.ModuleList(nn.ModuleList(ops) for ops in layers)

    def forward_path(self, x, path, gates):
        x = self.stem(x)
        for layer, ops in enumerate(self.layers):
            k = int(path[layer])
            x = x + gates[layer, k] * ops[k](x)
        return self.head(x)


class Zero(nn.Module):
    def forward(self, x):
        return 0.0 * x


class Noise(nn.Module):
    def forward(self, x):
        return torch.randn_like(x) * 3.0


def _toy(ops) -> ToyNet:
    c = 8
    stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10))
    return ToyNet([ops(c) for _ in range(3)], stem, head)


def _conv(c: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU())


def test_toy_estimator_prefers_the_useful_op_and_fixes_every_block(digits_data):
    """3 blocks x 3 ops on 8 x 8 digits: a conv block, and two ops that output noise."""
    torch.manual_seed(0)
    net = _toy(lambda c: [_conv(c), Noise(), Noise()])
    alpha = nn.Parameter(torch.zeros(3, 3))
    opt_a = torch.optim.Adam([alpha], lr=0.05, betas=(0.5, 0.999))
    opt_w = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    objective = CostPenalty((), 0.0, "hinge")  # CE alone
    x, y = digits_data.train_x, digits_data.train_y
    for step in range(300):
        idx = torch.randint(0, len(x), (32,), generator=step_generator(0, step, 5))
        probs = torch.softmax(alpha.detach(), -1)
        path = sample_paths(probs, 1, step_generator(0, step))[:, 0]
        opt_w.zero_grad()
        credit, _, _ = single_path_backward(net, x[idx], y[idx], path, objective, alpha.detach())
        opt_w.step()
        opt_a.zero_grad()
        alpha.grad = score_gradient(probs, path, credit)
        opt_a.step()
    probs = torch.softmax(alpha.detach(), -1)
    assert (probs[:, 0] > 0.8).all(), probs
    assert early_fix(probs, 0.3, {}) == {0: 0, 1: 0, 2: 0}


def test_a_zero_op_gets_no_credit(digits_data):
    """The credit is the first-order effect of scaling the op's output: a zero output has none,
    so a zero op is never pushed down (documented limitation; fbnet has no zero op)."""
    torch.manual_seed(0)
    net = _toy(lambda c: [_conv(c), Zero()])
    x, y = digits_data.train_x[:16], digits_data.train_y[:16]
    objective = CostPenalty((), 0.0, "hinge")
    credit, _, _ = single_path_backward(
        net, x, y, torch.tensor([0, 1, 0]), objective, torch.zeros(3, 2)
    )
    assert credit[1] == 0.0 and credit[0] != 0.0 and credit[2] != 0.0


class LinearToy(nn.Module):
    """Three blocks of K linear maps on vectors (no stem, no head): logits = x_3."""

    def __init__(self, d: int, k: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(nn.Linear(d, d, bias=False).double() for _ in range(k)) for _ in range(3)
        )

    def forward_path(self, x, path, gates):
        for layer, ops in enumerate(self.layers):
            x = gates[layer, path[layer]] * ops[path[layer]](x)
        return x


def test_credit_is_dl_dx_dot_x_and_the_alpha_gradient_is_the_score_times_it():
    torch.manual_seed(1)
    net = LinearToy(4, 3)
    x, y = torch.randn(1, 4, dtype=torch.float64), torch.tensor([2])
    path = torch.tensor([2, 0, 1])
    alpha = torch.randn(3, 3, dtype=torch.float64)
    objective = CostPenalty((), 0.0, "hinge")
    credit, ce, _ = single_path_backward(net, x, y, path, objective, alpha)
    # analytic: x_l = W_l x_{l-1}; dL/dx_3 = softmax(x_3) - e_y; dL/dx_{l-1} = W_l^T dL/dx_l
    w = [net.layers[i][int(path[i])].weight.detach().numpy() for i in range(3)]
    xs = [x.numpy()[0]]
    for m in w:
        xs.append(m @ xs[-1])
    g = np.exp(xs[3]) / np.exp(xs[3]).sum() - np.eye(4)[2]
    expected = [0.0, 0.0, 0.0]
    for layer in (2, 1, 0):
        expected[layer] = float(g @ xs[layer + 1])  # credit_l = dL/dx_l . x_l
        g = w[layer].T @ g
    np.testing.assert_allclose(credit.numpy(), expected, rtol=1e-10)
    assert ce == pytest.approx(float(-np.log(np.exp(xs[3])[2] / np.exp(xs[3]).sum())))
    # the alpha gradient: backward of sum_l log p(Z_l) scaled by credit_l (the paper's recipe)
    a = alpha.clone().requires_grad_()
    log_p = torch.log_softmax(a, -1)[torch.arange(3), path]
    (reference,) = torch.autograd.grad((log_p * credit).sum(), [a])
    grad = score_gradient(torch.softmax(alpha, -1), path, credit)
    torch.testing.assert_close(grad, reference)
    assert torch.allclose(grad.sum(-1), torch.zeros(3, dtype=torch.float64))


def _toy_cost(budget: float, values=((1.0, 2.0, 4.0, 8.0),) * 3) -> Constraint:
    table = ChoiceTable(np.array(values), 0.0)
    return Constraint(CostModel("latency_ms", table, None, "toy"), budget)  # type: ignore[arg-type]


class Constant(nn.Module):
    """A network whose loss does not depend on the path: the CE gives no credit."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(10, dtype=torch.float64))

    def forward_path(self, x, path, gates):
        return self.bias.expand(len(x), 10)


def _hinge_only(
    budget: float, steps: int = 300, betas=(0.5, 0.999)
) -> tuple[torch.Tensor, list[bool], list[bool]]:
    """Adam on alpha with the cost hinge alone; (probs, sampled cost > budget, alpha moved)."""
    constraint = _toy_cost(budget)
    objective = CostPenalty((constraint,), 1.0, "hinge")
    alpha = nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))
    opt = torch.optim.Adam([alpha], lr=0.05, betas=betas)
    net, x, y = Constant(), torch.zeros(2, 1), torch.zeros(2, dtype=torch.long)
    over, moved = [], []
    for step in range(steps):
        probs = torch.softmax(alpha.detach(), -1)
        path = sample_paths(probs, 1, step_generator(3, step))[:, 0]
        credit, _, _ = single_path_backward(net, x, y, path, objective, alpha.detach())
        before = alpha.detach().clone()
        opt.zero_grad()
        alpha.grad = score_gradient(probs, path, credit)
        opt.step()
        over.append(constraint.cost.table.discrete(path.tolist()) > budget)
        moved.append(not torch.equal(before, alpha.detach()))
    return torch.softmax(alpha.detach(), -1), over, moved


def test_the_cost_hinge_alone_drives_every_layer_to_its_cheapest_op():
    probs, over, _ = _hinge_only(budget=2.0)  # below the cheapest path (3): always active
    assert all(over) and (probs[:, 0] > 0.9).all(), probs


def test_the_cost_hinge_acts_only_while_the_sampled_cost_exceeds_the_budget():
    _, over, moved = _hinge_only(budget=24.0)  # the dearest path: never exceeded
    assert not any(over) and not any(moved)
    _, over, moved = _hinge_only(budget=9.0, steps=200, betas=(0.0, 0.999))
    assert over == moved  # Adam without momentum: alpha moves exactly on the steps over budget
    assert 0 < sum(over[-50:]) < sum(over[:50])  # fewer and fewer paths exceed the budget


def test_the_expected_cost_update_is_the_gradient_of_the_expected_cost():
    """Enumerating every path of 2 layers x 3 ops: E_Z[(onehot - p) credit] with the hinge
    active everywhere equals d/dalpha of weight * E_p[cost] / budget."""
    values = ((1.0, 3.0, 6.0), (2.0, 0.5, 4.0))
    constraint = _toy_cost(0.5, values)
    objective = CostPenalty((constraint,), 2.0, "hinge")
    alpha = torch.tensor([[0.2, -0.4, 0.1], [0.0, 0.7, -0.3]], dtype=torch.float64)
    probs = torch.softmax(alpha, -1)
    net, x, y = Constant(), torch.zeros(1, 1), torch.zeros(1, dtype=torch.long)
    mean = torch.zeros_like(alpha)
    for path in itertools.product(range(3), range(3)):
        z = torch.tensor(path)
        credit, _, _ = single_path_backward(net, x, y, z, objective, alpha)
        mean += probs[0, path[0]] * probs[1, path[1]] * score_gradient(probs, z, credit)
    a = alpha.clone().requires_grad_()
    (exact,) = torch.autograd.grad(2.0 * constraint.cost.expected(torch.softmax(a, -1)) / 0.5, [a])
    torch.testing.assert_close(mean, exact)


def _lagrangian_only(budget: float, steps: int = 400) -> tuple[torch.Tensor, list[dict]]:
    """Adam on alpha with the Lagrangian term alone and its dual update after every step, as
    DSNAS' step does it; (final probs, rows with lambda and the expected-cost violation)."""
    constraint = _toy_cost(budget)
    config = DSNASConfig(cost_form="lagrangian")
    objective = make_objective(SimpleNamespace(constraints=(constraint,)), config)  # type: ignore[arg-type]
    alpha = nn.Parameter(torch.zeros(3, 4, dtype=torch.float64))
    opt = torch.optim.Adam([alpha], lr=0.05, betas=config.arch_betas)
    net, x, y = Constant(), torch.zeros(2, 1), torch.zeros(2, dtype=torch.long)
    rows: list[dict] = []
    for step in range(steps):
        probs = torch.softmax(alpha.detach(), -1)
        path = sample_paths(probs, 1, step_generator(5, step))[:, 0]
        credit, _, _ = single_path_backward(net, x, y, path, objective, alpha.detach())
        opt.zero_grad()
        alpha.grad = score_gradient(probs, path, credit)
        opt.step()
        row: dict = {}
        objective.observe(torch.softmax(alpha.detach(), -1), row)
        rows.append(row)
    return torch.softmax(alpha.detach(), -1), rows


@pytest.mark.parametrize("budget", [6.0, 18.0])  # below and above the uniform start's 11.25
def test_the_lagrangian_form_settles_the_expected_cost_on_the_budget_from_either_side(budget):
    probs, rows = _lagrangian_only(budget)
    expected = float(_toy_cost(budget).cost.expected(probs))
    assert expected == pytest.approx(budget, rel=0.05), (expected, rows[-1])
    lam = [r["lambda_latency_ms"] for r in rows]
    assert (lam[-1] > 0) == (budget < 11.25)  # pushes down below the start, up above it
    assert all(abs(r["violation_latency_ms"]) < 0.05 for r in rows[-40:])


def test_the_hinge_stops_short_of_a_budget_the_lagrangian_reaches():
    """The hinge never pushes up: from the uniform start (11.25) a budget of 18 stays unspent."""
    probs, _, _ = _hinge_only(budget=18.0, steps=400)
    assert float(_toy_cost(18.0).cost.expected(probs)) < 12.0


def _interrupted_and_resumed(problem, config: DSNASConfig, tmp_path, at: int):
    """The search interrupted after ``at`` steps (checkpointed to ``tmp_path``), then resumed."""

    def interrupt(done, total, status):
        if done == at:
            raise KeyboardInterrupt

    store = CheckpointStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(problem, config, Hooks(interrupt, store))
    return run(problem, config, Hooks(None, store))


def test_a_lagrangian_search_reports_its_multiplier_and_resumes(make_problem, tmp_path):
    problem = make_problem("fbnet", fraction=0.6, steps=6, eval_every=0, warmup_steps=1)
    config = DSNASConfig(arch_lr=0.2, cost_form="lagrangian", fix_threshold=1.0)
    reference = run(problem, config, Hooks())
    assert reference.info["cost_form"] == "lagrangian"
    lam = [r["lambda_latency_ms"] for r in reference.history if "lambda_latency_ms" in r]
    assert len(lam) == 5 and reference.info["lambda"]["latency_ms"] == lam[-1] != 0.0
    assert reference.info["convergence"]["latency_ms"]["steps"] == 5
    resumed = _interrupted_and_resumed(problem, config, tmp_path, at=4)  # lambda comes back too
    assert resumed.arch == reference.arch and resumed.info == reference.info


def test_training_forwards_run_exactly_one_op_per_block(make_problem):
    problem = make_problem("fbnet", fraction=0.4, steps=4, eval_every=2)
    import hwnas.search.dsnas as dsnas

    calls: list = []
    build = dsnas.BilevelState.__init__

    def hooked(self, *args, **kwargs):
        build(self, *args, **kwargs)
        self.net.stem.register_forward_hook(lambda *a: calls.append("stem"))
        for layer, ops in enumerate(self.net.layers):
            for op in ops:
                op.register_forward_hook(lambda *a, at=layer: calls.append(at))

    dsnas.BilevelState.__init__ = hooked
    try:
        run(problem, DSNASConfig(arch_lr=0.05), Hooks())
    finally:
        dsnas.BilevelState.__init__ = build
    forwards = "-".join(str(c) for c in calls).split("stem")[1:]
    assert len(forwards) >= 4  # 4 training steps (+ the evaluations of the derived path)
    assert all(f.strip("-").split("-") == [str(i) for i in range(22)] for f in forwards)


def test_early_fix_rule():
    probs = torch.tensor([[0.6, 0.25, 0.15], [0.4, 0.35, 0.25], [0.1, 0.2, 0.7]])
    assert early_fix(probs, 0.3, {}) == {0: 0, 2: 2}
    assert early_fix(probs, 0.3, {0: 1}) == {0: 1, 2: 2}  # a fixed layer stays as it was
    assert early_fix(probs, 0.7, {}) == {}


def test_fixed_layers_are_frozen_and_derived_as_fixed(make_problem):
    problem = make_problem("fbnet", fraction=0.4, steps=6, eval_every=0, warmup_steps=1)
    config = DSNASConfig(arch_lr=0.2, fix_threshold=0.02, fix_every=1, snapshot_every=1)
    result = run(problem, config, Hooks())
    fixed = {int(k): v for k, v in result.info["fixed_layers"].items()}
    assert fixed and all(result.arch[k] == v for k, v in fixed.items())
    counts = [r["fixed"] for r in result.history]
    assert counts[:2] == [0, 0] and counts == sorted(counts) and counts[-1] == len(fixed)
    t = counts.index(counts[-1])  # the step whose early-fix check fixed the last layer
    alpha = {s["step"]: np.reshape(s["alpha"], (22, 9)) for s in result.snapshots}
    rows = sorted(fixed)
    np.testing.assert_array_equal(alpha[t][rows], alpha[6][rows])
    assert not np.array_equal(alpha[t], alpha[6])  # the others still moved


def test_interrupted_search_resumes_to_the_same_result(make_problem, tmp_path):
    problem = make_problem("fbnet", fraction=0.4, steps=5, eval_every=0, warmup_steps=1)
    config = DSNASConfig(arch_lr=0.2, fix_threshold=0.02, fix_every=2)
    reference = run(problem, config, Hooks())
    resumed = _interrupted_and_resumed(problem, config, tmp_path, at=3)
    assert resumed.arch == reference.arch and resumed.info == reference.info
    for a, b in zip(resumed.history, reference.history):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_inherited_child_keeps_the_search_weights(make_problem):
    problem = make_problem("fbnet", fraction=0.4, steps=3, eval_every=0)
    result, supernet = search_with_supernet(problem, DSNASConfig(), Hooks())
    inherited = result.info["inherited"]
    assert 0.0 <= inherited["val_accuracy"] <= 1.0 and inherited["width"] == 0.25
    x = problem.data.train_x[:64]
    child = inherited_child(supernet, result.arch, x)
    stem = dict(child[0].named_parameters())["0.weight"]
    assert torch.equal(stem, supernet.stem[0].weight)  # the search's weights, not a new init
    with torch.no_grad():  # running statistics are the calibration images' own
        features = child[0][0](x)
    bn = child[0][1]
    torch.testing.assert_close(bn.running_mean, features.mean((0, 2, 3)))
    assert recalibrate_bn(child, x) is child


def test_config_is_validated():
    with pytest.raises(UserError, match="cost_weight"):
        DSNASConfig(cost_weight=-1.0)
    with pytest.raises(UserError, match="fix_every"):
        DSNASConfig(fix_every=0)
    with pytest.raises(UserError, match="cost_form"):
        DSNASConfig(cost_form="quadratic")
    with pytest.raises(UserError, match="lambda_lr"):
        DSNASConfig(lambda_lr=0.0)
    assert DSNASConfig(arch_betas=[0.5, 0.9]).arch_betas == (0.5, 0.9)
