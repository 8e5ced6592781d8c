"""ISTA-NAS on the darts cells: the sparse forward, the Eq. 11 identity through the network's
weights, budgets by rejection, one-stage freezing and BN folding (METHODS.md §4.5), resume."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hwnas.costs.models import make_constraints, make_cost_models
from hwnas.errors import UserError
from hwnas.search.api import Hooks, SearchBudget, SearchProblem
from hwnas.search.cell_repair import NODES, node_view
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.finalize import finalize
from hwnas.search.ista import ISTAConfig, _State, derive_untrained, run
from hwnas.search.sparse_coding import OPS, edge_values, select
from hwnas.spaces import darts_genotype as gt
from hwnas.spaces.base import SpaceConfig
from hwnas.spaces.darts import DartsSpace


def _problem(digits_data, fraction=0.6, metrics=("flops",), **budget) -> SearchProblem:
    space = DartsSpace(SpaceConfig(32, 10, 0.25), cells=3)
    costs = make_cost_models(space)
    limits = {m: costs[m].bounds()[0] + fraction * np.ptp(costs[m].bounds()) for m in metrics}
    options = {"steps": 6, "warmup_steps": 1, "batch_size": 8, "eval_every": 3,
               "eval_images": 16, "checkpoint_every": 2, **budget}  # fmt: skip
    return SearchProblem(
        space, digits_data, make_constraints(costs, limits), SearchBudget(**options), costs
    )


def _candidate_ops(net):
    return [(cell, e, k, op) for cell in net.cells for e, s in enumerate(cell.ops)
            for k, op in enumerate(s.ops)]  # fmt: skip


def test_only_the_support_runs(digits_data):
    """Two ops per node per cell run, and they are the support's (counted by module calls)."""
    problem = _problem(digits_data)
    state = _State(problem, ISTAConfig())
    state.recover(problem, ISTAConfig())
    calls: list = []
    for cell, e, k, op in _candidate_ops(state.net):
        key = (id(cell), e, k + 1)
        op.register_forward_hook(lambda m, i, o, key=key: calls.append(key))
    state.logits(problem.data.train_x[:4], state.weights())
    expected = []
    for cell in state.net.cells:
        first = gt.STEPS if cell.reduction else 0
        for node in range(gt.STEPS):
            for source, op in state.picks[first + node]:
                expected.append((id(cell), gt.edge_index(node, source), op))
    assert len(calls) == 3 * 4 * 2 == len(expected)
    assert sorted(calls) == sorted(expected)
    assert all(len({s for s, _ in picks}) == 2 for picks in state.picks)  # two distinct inputs


def test_every_forward_of_a_search_runs_exactly_two_ops_per_node(digits_data, monkeypatch):
    problem = _problem(digits_data, steps=4)
    counts = {"ops": 0, "forwards": 0}

    def count(key):
        def hook(module, inputs, output):
            counts[key] += 1

        return hook

    original = _State.__init__

    def hooked(self, *args):
        original(self, *args)
        self.net.stem.register_forward_hook(count("forwards"))
        for *_, op in _candidate_ops(self.net):
            op.register_forward_hook(count("ops"))

    monkeypatch.setattr(_State, "__init__", hooked)
    run(problem, ISTAConfig(recover_every=2), Hooks())
    assert counts["forwards"] > 4  # b steps, weight steps, evaluations
    assert counts["ops"] == 24 * counts["forwards"]


def test_the_network_weights_are_z_on_its_support_when_b_is_a_z(digits_data):
    """METHODS.md §4.5 through the search state: planted 2-sparse z, b = A z -> weights = z_S."""
    problem = _problem(digits_data)
    state = _State(problem, ISTAConfig())
    rng = np.random.default_rng(3)
    view = node_view()
    state.choice = np.array([rng.integers(len(view.options[g])) for g in range(NODES)])
    z = np.zeros_like(state.z)
    for g, option in enumerate(state.choice):
        s1, o1, s2, o2 = view.options[g][option]
        z[g, [s1 * OPS + o1 - 1, s2 * OPS + o2 - 1]] = rng.standard_normal(2)
    state.z = z
    state._terms()
    with torch.no_grad():
        state.b.copy_(torch.from_numpy(np.einsum("gmn,gn->gm", state.A, z)))
    expected = np.stack([z[g][z[g] != 0] for g in range(NODES)])  # picks: sources ascending
    np.testing.assert_allclose(state.weights().detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert (state.weights().detach().numpy() != 0).all()  # s = 2 non-zero weights per node


def test_the_same_b_gives_the_same_support(digits_data):
    problem = _problem(digits_data)
    one, two = _State(problem, ISTAConfig()), _State(problem, ISTAConfig())
    one.recover(problem, ISTAConfig())
    two.recover(problem, ISTAConfig())
    assert np.array_equal(one.z, two.z) and np.array_equal(one.choice, two.choice)
    z, choice = one.z.copy(), one.choice.copy()
    one.recover(problem, ISTAConfig())  # b did not move: warm start, same answer
    assert np.array_equal(one.z, z) and np.array_equal(one.choice, choice)
    with torch.no_grad():
        one.b.add_(torch.randn_like(one.b) * 5e-3)
    one.recover(problem, ISTAConfig())
    assert not np.array_equal(one.z, z)


def test_a_support_over_budget_is_replaced_by_the_best_that_fits(digits_data):
    problem = _problem(digits_data, fraction=0.05, metrics=("flops", "params"))
    rng = np.random.default_rng(0)
    z = rng.standard_normal((NODES, 35)) * (rng.random((NODES, 35)) < 0.2)
    free = np.full(NODES, -1)
    top, facts = select(problem, z, free, budget_aware=False, visits=1000)
    view = node_view()
    assert not all(c.satisfied(view.arch_from_vector(top)) for c in problem.constraints)
    choice, facts = select(problem, z, free, budget_aware=True, visits=200_000)
    arch = view.arch_from_vector(choice)
    assert facts["rejected"] and facts["exhaustive"] and facts["over"]
    assert all(c.satisfied(arch) for c in problem.constraints)
    mass = view.scores(edge_values(z))
    best = mass[np.arange(NODES), choice].sum()
    for _ in range(300):  # no random genotype that fits has more |z| mass
        other = gt.sample_genotype(rng)
        if all(c.satisfied(other) for c in problem.constraints):
            assert mass[np.arange(NODES), view.arch_vector(other)].sum() <= best + 1e-12
    repaired = finalize(problem, view.arch_from_vector(top), edge_values(z), fill=False).arch
    assert mass[np.arange(NODES), view.arch_vector(repaired)].sum() <= best + 1e-12
    loose = dataclasses.replace(problem, constraints=())
    assert np.array_equal(select(loose, z, free, True, 1000)[0], top)


def test_a_tight_search_trains_feasible_supports_and_counts_rejections(digits_data):
    problem = _problem(digits_data, fraction=0.05, steps=4)
    result = run(problem, ISTAConfig(recover_every=2, arch_lr=0.05), Hooks())
    (constraint,) = problem.constraints
    assert constraint.satisfied(result.arch)
    info = result.info
    rows = [r for r in result.history if "recovery" in r]
    assert info["recoveries"] == 1 + len(rows) == 3
    rejected = info["initial_recovery"]["rejected"] + sum(r["rejected"] for r in rows)
    assert info["budget_rejections"] == rejected > 0
    assert info["rejections_by_metric"] == {"flops": rejected}
    assert all(r["disparity_flops"] <= 1e-9 for r in result.history)
    own = derive_untrained(problem, ISTAConfig())
    assert constraint.satisfied(own.arch) and own.info["budget_rejections"] == 1
    assert result.values.shape == (28, 8) and (result.values[:, 0] == 0).all()


def test_one_stage_freezes_nodes_once_z_stops_moving(digits_data):
    """Recoveries during the warm-up (b still) freeze nothing; afterwards b moves by ~1e-9 a
    step, z by far less than 1e-3: every node freezes, b stops, the BN affine train."""
    problem = _problem(digits_data, steps=8, warmup_steps=4)
    config = ISTAConfig(mode="one-stage", recover_every=2, arch_lr=1e-9)
    result = run(problem, config, Hooks())
    frozen = [r["frozen_nodes"] for r in result.history if "recovery" in r]
    assert frozen == [0, 0, 8]  # steps 2 and 4: warm-up; step 6: frozen; no recovery after
    assert result.info["all_frozen_at_step"] == 6 and result.info["frozen_nodes"] == 8
    assert abs(result.info["fold_max_abs_diff"]) < 1e-4
    moving = run(problem, dataclasses.replace(config, arch_lr=0.05), Hooks())
    assert moving.info["frozen_nodes"] < 8 and moving.info["all_frozen_at_step"] is None


def test_one_stage_bn_is_frozen_until_its_node_is_and_folding_keeps_the_outputs(digits_data):
    problem = _problem(digits_data)
    state = _State(problem, ISTAConfig(mode="one-stage"))
    state.recover(problem, ISTAConfig(mode="one-stage"))
    bns = [m for *_, op in _candidate_ops(state.net) for m in op.modules()
           if isinstance(m, torch.nn.BatchNorm2d)]  # fmt: skip
    assert bns and all(m.affine and not m.weight.requires_grad for m in bns)
    assert all((m.weight == 1).all() and (m.bias == 0).all() for m in bns)
    state._freeze(5)  # reduction cell, node 1
    on = [m for c in state.net.cells if c.reduction for e in (2, 3, 4)  # edges into node 1
          for m in c.ops[e].modules() if isinstance(m, torch.nn.BatchNorm2d)]  # fmt: skip
    assert on and all(m.weight.requires_grad and m.bias.requires_grad for m in on)
    assert sum(m.weight.requires_grad for m in bns) == len(on)  # only that node's ops
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # trained-looking BN affine
        for m in bns:
            m.weight.copy_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
            m.bias.copy_(0.3 * torch.randn(m.bias.shape, generator=g))
    state.net.eval()
    x = problem.data.val_x[:8]
    w = state.weights().detach() * 100  # weights far from 1, so folding has work to do
    with torch.no_grad():
        before = state.logits(x, w)
        assert not torch.allclose(state.logits(x, torch.ones_like(w)), before, atol=1e-3)
        state.net.fold_into_bn_(state.picks, w)
        after = state.logits(x, torch.ones_like(w))
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)


def test_interrupted_search_resumes_to_the_same_result(digits_data, tmp_path):
    problem = _problem(digits_data, steps=5)
    config = ISTAConfig(mode="one-stage", recover_every=2, arch_lr=0.05)
    reference = run(problem, config, Hooks())

    def interrupt(done, total, status):
        if done == 3:
            raise KeyboardInterrupt

    store = CheckpointStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(problem, config, Hooks(interrupt, store))
    assert store.load("search")[1]["step"] == 3
    resumed = run(problem, config, Hooks(None, store))
    assert resumed.arch == reference.arch
    np.testing.assert_allclose(resumed.info["z"], reference.info["z"], rtol=1e-5, atol=1e-9)
    for a, b in zip(resumed.history, reference.history):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_bad_settings_and_spaces_are_user_errors(make_problem):
    with pytest.raises(UserError, match="mode must be one of two-stage, one-stage"):
        ISTAConfig(mode="three-stage")
    with pytest.raises(UserError, match="recover_every must be at least 1"):
        ISTAConfig(recover_every=0)
    with pytest.raises(UserError, match="measurements >= 1"):
        ISTAConfig(measurements=0)
    with pytest.raises(UserError, match="searches the darts cells, not space 'fbnet'"):
        run(make_problem("fbnet"), ISTAConfig(), Hooks())
    assert ISTAConfig(arch_betas=[0.5, 0.9]).arch_betas == (0.5, 0.9)
