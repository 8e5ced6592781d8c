"""ProxylessNAS: the binary-gate gradient, the two-path rescaling, paths actually computed, runs."""

from __future__ import annotations

import pytest
import torch

from hwnas.errors import UserError
from hwnas.search.api import Hooks
from hwnas.search.bilevel import BilevelState, edge_probs
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.objectives import CostPenalty
from hwnas.search.proxyless import (
    ProxylessConfig,
    _step,
    arch_step,
    binary_gate_grad,
    gate_alpha_grad,
    run,
)
from hwnas.search.sampling import sample_paths, step_generator
from hwnas.search.trainer import BatchStream


def test_gate_gradient_is_the_gradient_of_the_probability_weighted_gates():
    """``sum_j dL/dg_j q_j (delta_ij - q_i)`` is d/dalpha of ``sum_j g'_j softmax(alpha)_j`` at
    fixed gate gradients g' (the binary gate replaced by its expectation)."""
    torch.manual_seed(0)
    a = torch.randn(5, 2, dtype=torch.float64, requires_grad=True)
    g = torch.randn(5, 2, dtype=torch.float64)
    (exact,) = torch.autograd.grad((g * torch.softmax(a, -1)).sum(), [a])
    torch.testing.assert_close(gate_alpha_grad(g, torch.softmax(a, -1).detach()), exact)


@pytest.fixture
def state(make_problem):
    problem = make_problem("fbnet", fraction=0.4, steps=4, eval_every=0, warmup_steps=1)
    torch.manual_seed(0)
    with torch.no_grad():
        s = BilevelState(problem, 0.05, (0.0, 0.999), 0.0)
        s.alpha.copy_(0.5 * torch.randn(s.alpha.shape))
    return problem, s


def test_binary_gate_grad_touches_only_the_sampled_pairs(state):
    problem, s = state
    x, y = problem.data.val_x[:8], problem.data.val_y[:8]
    pairs = sample_paths(edge_probs(s.alpha.detach()), 2, step_generator(0, 0))
    active = torch.randint(0, 2, (22,), generator=step_generator(0, 0, 9))
    grad, ce = binary_gate_grad(s.net, s.alpha, x, y, pairs, active)
    assert ce > 0
    off = torch.ones_like(grad, dtype=torch.bool)
    off[torch.arange(22)[:, None], pairs] = False
    assert (grad[off] == 0).all() and (grad[~off] != 0).any()
    torch.testing.assert_close(grad.sum(-1), torch.zeros(22))  # zero-sum per layer


def test_arch_step_keeps_the_unsampled_ops_probabilities(state):
    problem, s = state
    batch = (problem.data.val_x[:8], problem.data.val_y[:8])
    before = edge_probs(s.alpha.detach()).clone()
    pairs = sample_paths(before, 2, step_generator(0, 3, 1))  # what arch_step will draw
    arch_step(s, CostPenalty((), 0.0, "linear"), batch, step_generator(0, 3, 1))
    after = edge_probs(s.alpha.detach())
    sampled = torch.zeros_like(after, dtype=torch.bool)
    sampled[torch.arange(22)[:, None], pairs] = True
    torch.testing.assert_close(after[~sampled], before[~sampled], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(
        (after * sampled).sum(-1), (before * sampled).sum(-1), rtol=1e-5, atol=1e-7
    )
    assert not torch.allclose(after[sampled], before[sampled])


def test_the_latency_term_alone_lowers_the_expected_latency(state):
    problem, s = state
    objective = CostPenalty(problem.constraints, 1e4, "linear")  # the CE's part is negligible
    cost = problem.constraints[0].cost
    batch = (problem.data.val_x[:8], problem.data.val_y[:8])
    expected = [float(cost.expected(edge_probs(s.alpha.detach())))]
    for t in range(3):
        arch_step(s, objective, batch, step_generator(0, t, 1))
        expected.append(float(cost.expected(edge_probs(s.alpha.detach()))))
    assert all(a > b for a, b in zip(expected, expected[1:])), expected


def test_a_step_computes_one_op_per_layer_for_weights_and_two_for_alpha(state):
    problem, s = state
    calls: list = []
    s.net.stem.register_forward_hook(lambda *a: calls.append("stem"))
    for layer, ops in enumerate(s.net.layers):
        for op in ops:
            op.register_forward_hook(lambda *a, at=layer: calls.append(at))
    b = problem.budget
    streams = [BatchStream(problem.data.train_x, problem.data.train_y, b.batch_size, 0)] * 2
    objective = CostPenalty(problem.constraints, 0.1, "linear")
    row = _step(problem, ProxylessConfig(arch_every=2), s, streams, objective, t=1)
    assert "ce_val" in row and "sampled_latency_ms" in row
    arch, weights = "-".join(map(str, calls)).split("stem")[1:]
    assert arch.strip("-").split("-") == [str(i) for i in range(22) for _ in (0, 1)]
    assert weights.strip("-").split("-") == [str(i) for i in range(22)]
    calls.clear()
    row = _step(problem, ProxylessConfig(arch_every=2), s, streams, objective, t=2)
    assert "ce_val" not in row and calls.count("stem") == 1  # no arch step on this one


def test_run_logs_and_resumes(make_problem, tmp_path):
    problem = make_problem("fbnet", fraction=0.4, steps=5, eval_every=0, warmup_steps=1)
    config = ProxylessConfig(arch_lr=0.05, arch_every=2)
    reference = run(problem, config, Hooks())
    assert reference.arch == problem.space.arch_from_vector(reference.values.argmax(1))
    rows = reference.history
    assert [("ce_val" in r) for r in rows] == [False, True, False, True, False]
    assert all({"ce_train", "expected_latency_ms", "sampled_latency_ms"} <= set(r) for r in rows)

    def interrupt(done, total, status):
        if done == 2:
            raise KeyboardInterrupt

    store = CheckpointStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(problem, config, Hooks(interrupt, store))
    resumed = run(problem, config, Hooks(None, store))
    assert resumed.arch == reference.arch
    for a, b in zip(resumed.history, reference.history):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_config_is_validated(make_problem):
    with pytest.raises(UserError, match="arch_every"):
        ProxylessConfig(arch_every=0)
    with pytest.raises(UserError, match="layer-wise"):
        run(make_problem("ib-channel"), ProxylessConfig(), Hooks())
