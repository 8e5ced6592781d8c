"""FBNet (Gumbel-softmax, multiplicative latency loss): temperature, masks, runs."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from hwnas.costs.models import Constraint, CostModel
from hwnas.costs.tables import ChoiceTable
from hwnas.errors import UserError
from hwnas.search.api import Hooks
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.fbnet_gumbel import FBNetConfig, run, temperature
from hwnas.search.sampling import gumbel_softmax, step_generator


def test_temperature_is_the_papers_schedule_spread_over_the_steps():
    config = FBNetConfig()
    assert temperature(config, 0, 900) == 5.0
    assert temperature(config, 10, 900) == pytest.approx(5.0 * 0.956)  # one of 90 epochs
    assert temperature(config, 450, 900) == pytest.approx(5.0 * math.exp(-0.045 * 45), rel=2e-3)
    assert temperature(config, 900, 900) == 0.1  # 5 * 0.956^90 = 0.087, floored
    assert temperature(FBNetConfig(epochs=10), 900, 900) == pytest.approx(5.0 * 0.956**10)


def test_gumbel_masks_are_seeded_distributions_that_sharpen_as_tau_falls():
    alpha = torch.tensor([[2.0, 0.0, -1.0, 0.5]] * 200)
    soft = gumbel_softmax(alpha, 5.0, step_generator(0, 1))
    torch.testing.assert_close(soft.sum(-1), torch.ones(200))
    torch.testing.assert_close(soft, gumbel_softmax(alpha, 5.0, step_generator(0, 1)))
    assert not torch.equal(soft, gumbel_softmax(alpha, 5.0, step_generator(0, 2)))
    sharp = gumbel_softmax(alpha, 0.1, step_generator(0, 1))
    assert soft.max(-1).values.mean() < 0.5 < 0.95 < sharp.max(-1).values.mean()
    # argmax of the sharp mask follows softmax(alpha): op 0 is drawn most often
    counts = np.bincount(sharp.argmax(-1).numpy(), minlength=4) / 200
    probs = torch.softmax(alpha[0], -1).numpy()
    assert np.abs(counts - probs).max() < 0.1
    alpha = alpha.clone().requires_grad_()
    (grad,) = torch.autograd.grad(
        gumbel_softmax(alpha, 1.0, step_generator(0, 1))[:, 0].sum(), [alpha]
    )
    assert (grad[:, 0] > 0).all()  # differentiable in alpha


def test_run_logs_temperature_loss_and_latency_and_resumes(make_problem, tmp_path):
    problem = make_problem("fbnet", fraction=0.4, steps=4, eval_every=0, warmup_steps=1)
    config = FBNetConfig(epochs=10)
    result = run(problem, config, Hooks())
    assert result.arch == problem.space.arch_from_vector(result.values.argmax(1))
    rows = result.history
    assert [r["tau"] for r in rows] == pytest.approx([temperature(config, t, 4) for t in range(4)])
    assert "objective" not in rows[0] and all("objective" in r for r in rows[1:])
    low, high = (0.2 * np.log(v) ** 0.6 for v in problem.constraints[0].cost.bounds())
    for r in rows[1:]:  # CE times a factor in [0.2 log(min)^0.6, 0.2 log(max)^0.6]
        assert low * r["ce_val"] <= r["objective"] <= high * r["ce_val"]
    for r in rows:
        assert problem.constraints[0].cost.bounds()[0] <= r["sampled_latency_ms"]
        assert r["sampled_latency_ms"] <= problem.constraints[0].cost.bounds()[1]
    assert result.info["tau_end"] == pytest.approx(5.0 * 0.956**10)

    def interrupt(done, total, status):
        if done == 2:
            raise KeyboardInterrupt

    store = CheckpointStore(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        run(problem, config, Hooks(interrupt, store))
    resumed = run(problem, config, Hooks(None, store))
    assert resumed.arch == result.arch
    for a, b in zip(resumed.history, result.history):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_a_latency_at_or_below_1_ms_is_refused(make_problem):
    problem = make_problem("fbnet", fraction=0.4, steps=3)
    (c,) = problem.constraints
    table = c.cost.table
    tiny = ChoiceTable(table.values / 100.0, table.constant / 100.0)  # cheapest 0.078 ms
    model = CostModel(c.metric, tiny, problem.space, "tiny")
    small = dataclasses.replace(problem, constraints=(Constraint(model, 0.3),))
    with pytest.raises(UserError, match=r"log\(latency_ms\)"):
        run(small, FBNetConfig(), Hooks())


def test_config_is_validated():
    with pytest.raises(UserError, match="tau_min"):
        FBNetConfig(tau_min=0.0)
    with pytest.raises(UserError, match="tau_decay"):
        FBNetConfig(tau_decay=1.5)
    with pytest.raises(UserError, match="epochs"):
        FBNetConfig(epochs=0)
