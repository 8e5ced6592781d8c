"""Architecture objectives: how the budget enters an architecture step (METHODS.md §10.3).

An :class:`Objective` receives the cross-entropy of the step and the relaxed architecture the
costs are evaluated at, and returns the *whole* objective, so both kinds of resource loss fit:

* additive, ``CE + term(weights)``: DARTS' penalty and ProxylessNAS' ``CE + lambda E[LAT] / B``
  (:class:`CostPenalty`), DSNAS' hinge on the sampled cost (the same class, ``form="hinge"``,
  evaluated at the sampled one-hot path), DCA-NAS' Lagrangian
  (:class:`hwnas.search.lagrangian.Lagrangian`);
* multiplicative, ``CE * a * (log E[LAT])^b``: FBNet (Wu et al., CVPR 2019, Eq. 6;
  :class:`LogCostObjective`).

``weights`` is (L, K) (or the space's alpha shape): softmax probabilities (DARTS, DCA,
ProxylessNAS), a Gumbel-softmax mask (FBNet) or a one-hot path (DSNAS). Where the method
estimates the CE's alpha gradient itself (DARTS' unrolled step, ProxylessNAS' binary gates) the
chain rule gives the objective's gradient from it (:func:`chain_grad`): for an additive
objective that is the CE gradient plus the term's, for FBNet's the CE gradient times the cost
factor plus CE times the factor's gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional, Protocol

import torch

from hwnas.costs.models import Constraint
from hwnas.errors import UserError


class Objective(Protocol):
    """What an architecture step minimises, given its cross-entropy.

    ``objective(ce, weights)``: the full objective (scalar tensor) from the cross-entropy
    ``ce`` (scalar tensor) and the relaxed architecture ``weights``; differentiable in both.
    ``observe`` runs after each architecture step (DCA-NAS updates its multipliers there and
    logs into ``row``); ``state``/``load`` carry what it keeps across a checkpoint.
    """

    def objective(self, ce: torch.Tensor, weights: torch.Tensor) -> torch.Tensor: ...

    def observe(self, weights: torch.Tensor, row: dict) -> None: ...

    def state(self) -> dict: ...

    def load(self, state: dict) -> None: ...


class CostPenalty:
    """``CE + weight * sum_c f(E_c[cost](weights) / limit_c)``, f linear or a hinge at 1.

    ``"linear"`` is ProxylessNAS' additive latency loss with the budget as its reference
    (``lambda (E - ref) / ref`` up to a constant); ``"hinge"`` is zero while every expected cost
    is within its budget. At a one-hot path ``E_c`` is the path's exact cost (DSNAS).
    """

    def __init__(self, constraints: Sequence[Constraint], weight: float, form: str) -> None:
        self.constraints, self.weight, self.form = tuple(constraints), weight, form

    def loss(self, weights: torch.Tensor) -> Optional[torch.Tensor]:
        """The additive term alone (None: there is none)."""
        if self.weight == 0 or not self.constraints:
            return None
        ratios = torch.stack([c.cost.expected(weights) / c.limit for c in self.constraints])
        terms = ratios if self.form == "linear" else torch.relu(ratios - 1.0)
        return self.weight * terms.sum()

    def objective(self, ce: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        term = self.loss(weights)
        return ce if term is None else ce + term

    def observe(self, weights: torch.Tensor, row: dict) -> None:
        return None

    def state(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        return None


class LogCostObjective:
    """FBNet's loss ``CE * scale * prod_c (log E_c[cost](weights))^exponent``.

    Costs are in their metric's unit (ms for latency, as in the paper). ``log E`` must be
    positive over the whole space, or the factor changes sign (METHODS.md §10.3, "unit
    gotcha"): a space whose cheapest architecture costs 1 or less is refused. The budget does
    not enter: ``scale`` and ``exponent`` set the accuracy/cost trade-off, as in the paper.
    """

    def __init__(self, constraints: Sequence[Constraint], scale: float, exponent: float) -> None:
        for c in constraints:
            low = c.cost.bounds()[0]
            if low <= 1.0:
                raise UserError(
                    f"FBNet's loss takes log({c.metric}) and needs every cost above 1 "
                    f"{c.cost.unit}; the cheapest architecture costs {low:.4g}"
                )
        self.constraints, self.scale, self.exponent = tuple(constraints), scale, exponent

    def factor(self, weights: torch.Tensor) -> torch.Tensor:
        """``scale * prod_c (log E_c)^exponent`` (scale alone without constraints)."""
        out = torch.tensor(self.scale, dtype=weights.dtype, device=weights.device)
        for c in self.constraints:
            out = out * torch.log(c.cost.expected(weights)) ** self.exponent
        return out

    def objective(self, ce: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return ce * self.factor(weights)

    def observe(self, weights: torch.Tensor, row: dict) -> None:
        return None

    def state(self) -> dict:
        return {}

    def load(self, state: dict) -> None:
        return None


def chain_grad(
    objective: Objective,
    ce: float,
    ce_grad: torch.Tensor,
    weights: torch.Tensor,
    alpha: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    """The alpha gradient of ``objective`` when the CE's alpha gradient was estimated apart.

    ``d J / d alpha = (dJ / dCE) * ce_grad + (partial J / partial alpha)`` at the CE value
    ``ce``, the second term through ``weights`` (a function of ``alpha``).

    Returns:
        (gradient shaped like ``alpha``, objective value).
    """
    leaf = torch.tensor(ce, dtype=weights.dtype, device=weights.device, requires_grad=True)
    value = objective.objective(leaf, weights)
    d_ce, d_alpha = torch.autograd.grad(value, [leaf, alpha], allow_unused=True)
    grad = ce_grad if d_ce is None else d_ce * ce_grad
    if d_alpha is not None:
        grad = grad + d_alpha
    return grad, float(value.detach())
