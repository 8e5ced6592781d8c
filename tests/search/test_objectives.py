"""Architecture objectives: additive and multiplicative, the chain rule, FBNet's loss (§10.4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.costs.models import Constraint, CostModel
from hwnas.costs.tables import ChoiceTable
from hwnas.errors import UserError
from hwnas.search.api import Hooks
from hwnas.search.bilevel import BilevelSettings
from hwnas.search.darts import search
from hwnas.search.lagrangian import Lagrangian
from hwnas.search.objectives import CostPenalty, LogCostObjective, chain_grad

TABLE = np.array([[1.0, 2.0, 4.0, 8.0], [0.5, 3.0, 6.0, 1.0], [2.0, 2.0, 5.0, 7.0]])


def _constraint(limit: float = 12.0, constant: float = 2.0) -> Constraint:
    model = CostModel("latency_ms", ChoiceTable(TABLE, constant), None, "toy")  # type: ignore[arg-type]
    return Constraint(model, limit)


def _ce_of(alpha: torch.Tensor) -> torch.Tensor:
    """A differentiable stand-in for a CE that depends on alpha (positive)."""
    target = torch.tensor([[0.1, 0.7, 0.1, 0.1]] * 3, dtype=alpha.dtype)
    return 1.0 + ((torch.softmax(alpha, -1) - target) ** 2).sum()


@pytest.mark.parametrize(
    "objective",
    [
        CostPenalty((_constraint(),), 0.7, "linear"),
        CostPenalty((_constraint(),), 0.7, "hinge"),
        LogCostObjective((_constraint(),), 0.2, 0.6),
        Lagrangian({"latency_ms": _constraint().cost}, {"latency_ms": 9.0}, 1.0, 0.4),
    ],
    ids=["linear", "hinge", "fbnet-log", "lagrangian"],
)
def test_chain_rule_gradient_equals_autograd_of_the_whole_objective(objective):
    torch.manual_seed(0)
    alpha = (2 * torch.randn(3, 4, dtype=torch.float64)).requires_grad_()
    probs = torch.softmax(alpha, -1)
    (exact,) = torch.autograd.grad(objective.objective(_ce_of(alpha), probs), [alpha])
    ce = _ce_of(alpha)
    (ce_grad,) = torch.autograd.grad(ce, [alpha])
    grad, value = chain_grad(objective, ce.item(), ce_grad, torch.softmax(alpha, -1), alpha)
    torch.testing.assert_close(grad, exact)
    assert value == pytest.approx(objective.objective(ce, probs).item())


def test_additive_objectives_add_their_term_to_the_ce():
    probs = torch.full((3, 4), 0.25, dtype=torch.float64)  # E = 2 + 4.75 + 2.625 + 4 = 13.375
    ce = torch.tensor(2.0, dtype=torch.float64)
    expected = 2 + (TABLE.mean(1).sum())
    linear = CostPenalty((_constraint(),), 0.5, "linear").objective(ce, probs)
    assert float(linear) == pytest.approx(2.0 + 0.5 * expected / 12.0)
    hinge = CostPenalty((_constraint(20.0),), 0.5, "hinge").objective(ce, probs)
    assert float(hinge) == 2.0  # within budget: the CE alone
    assert CostPenalty((), 1.0, "linear").objective(ce, probs) is ce


def test_fbnet_loss_value_and_sign():
    """``CE * a * (log E)^b``; its alpha gradient at a fixed CE > 0 pushes dearer-than-average ops
    down: ``d/dalpha_lk = CE a b (log E)^(b-1) / E * p_lk (T_lk - E_l[T])``."""
    objective = LogCostObjective((_constraint(),), 0.2, 0.6)
    alpha = torch.tensor(
        [[0.3, -0.2, 0.1, 0.0], [0.0, 0.5, -0.5, 0.2], [1.0, 0.0, 0.0, -1.0]], dtype=torch.float64
    ).requires_grad_()
    probs = torch.softmax(alpha, -1)
    expected = _constraint().cost.expected(probs).item()
    ce = torch.tensor(1.7, dtype=torch.float64)
    value = objective.objective(ce, probs)
    assert value.item() == pytest.approx(1.7 * 0.2 * np.log(expected) ** 0.6)
    (grad,) = torch.autograd.grad(value, [alpha])
    p = probs.detach().numpy()
    closed = p * (TABLE - (p * TABLE).sum(1, keepdims=True))
    factor = 1.7 * 0.2 * 0.6 * np.log(expected) ** -0.4 / expected
    np.testing.assert_allclose(grad.numpy(), factor * closed, rtol=1e-10)
    average = (p * TABLE).sum(1, keepdims=True)
    dearer = average < TABLE
    assert (grad.numpy()[dearer] > 0).all() and (grad.numpy()[~dearer] < 0).all()


def test_fbnet_loss_refuses_costs_whose_log_is_not_positive():
    with pytest.raises(UserError, match=r"log\(latency_ms\).*above 1 ms.*costs 0.5"):
        LogCostObjective((_constraint(constant=-3.0),), 0.2, 0.6)


def test_the_darts_loop_minimises_a_multiplicative_objective(make_problem):
    """The shared bi-level loop takes FBNet's loss: the logged objective is CE times the cost
    factor (0.2 (log E[LAT])^0.6 < 1 on the pi4 LUT), not CE plus a term."""
    problem = make_problem("fbnet", fraction=0.4, steps=3, eval_every=0, warmup_steps=1)
    objective = LogCostObjective(problem.constraints, 0.2, 0.6)
    result = search(problem, BilevelSettings(arch_lr=0.05), Hooks(), objective, "darts")
    rows = [r for r in result.history if "objective" in r]
    assert len(rows) == 2
    for r in rows:
        low, high = (0.2 * np.log(v) ** 0.6 for v in problem.constraints[0].cost.bounds())
        assert low * r["ce_val"] <= r["objective"] <= high * r["ce_val"]
