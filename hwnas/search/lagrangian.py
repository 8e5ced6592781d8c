"""DCA-NAS' Lagrangian (Dutta, Kanvar, Agarwal, arXiv 2307.04443, Eq. 4; METHODS.md §2.2) with a
dual update that settles inside a short search, and the figures that say whether it did.

The alpha objective gets ``sum_c lambda_c x_c(alpha)`` with the relative violation
``x_c = (K_c(alpha) - K'_c) / K'_c`` (``K_c``: expected cost under softmax(alpha), Eq. 3).

Why plain projected dual ascent ``lambda <- max(0, lambda + eta x)`` did not converge in the
default search (fbnet / pi4 recipe: 200 steps, 40 of them weight-only, Adam lr 0.01 on alpha,
``eta`` = 0.1), measured:

* **Scale.** The multiplier that balances the cross-entropy is large and unknown: on that recipe
  the alpha gradient of the validation CE has norm ~1-1.7, the gradient of ``x`` ~0.03-0.12, so
  the balancing ``lambda*`` is O(10-50) (it grows with ``K'`` since ``x`` is relative, and depends
  on the data, space and cost model). Dual ascent grows ``lambda`` by ``eta |x|`` <= 0.05 a step:
  after the 160 alpha steps it has not reached ``lambda*``, and the expected cost is 15-80 % off
  the bound at the end.
* **Overshoot.** Adam normalises the alpha step (each element moves by about ``arch_lr`` a step
  whatever ``lambda`` is), so once the cost term wins, ``K`` moves at a fixed pace and a pure
  integral controller is an undamped oscillator: ``lambda`` winds up while ``K`` travels, carries
  ``K`` through the bound, and unwinds as slowly (a larger ``eta`` trades the first problem for
  this one; neither settles in 160 steps).
* **One-sided.** With ``lambda >= 0`` a bound above what the CE prefers is slack, ``lambda``
  stays 0 and ``K`` ends anywhere below ``K'``: the search does not spend its budget.

The update here is a **PI controller on the relative violation** (velocity form, after Stooke,
Achiam, Abbeel, "Responsive Safety in RL by PID Lagrangian Methods", ICML 2020; the
proportional term is the damping of Platt & Barr's "modified differential method of
multipliers", NeurIPS 1988) **whose gain is relative to the multiplier's magnitude**:

    lambda <- lambda + max(|lambda|, unit, floor * max_seen |lambda|) * (lr * x_t
                                                                 + damping * (x_t - x_{t-1}))

* relative gain: ``lambda`` changes by a fraction of itself, so it finds ``lambda*`` of any
  magnitude geometrically (in a number of steps logarithmic in ``lambda* / unit``) without a
  hand-set scale; the gain never drops below ``unit`` nor below ``floor`` (1/4) of the largest
  ``|lambda|`` so far: the linear zone around 0 grows with the scale found, so a multiplier that
  must change sign (the bound binding from the other side) does so at the pace of its scale
  instead of crawling through 0;
* the proportional (``damping``) term stops the growth once ``K`` approaches the bound at
  ``x / (damping / lr)`` a step, i.e. ``K`` closes the gap exponentially with a time constant of
  ``damping / lr`` = 20 alpha steps [R] instead of overshooting, and it holds ``lambda`` still
  once ``x`` is 0 and not moving: ``lambda`` settles;
* ``equality`` (default [R]): ``lambda`` may go negative, i.e. ``K(alpha) = K'`` is enforced from
  both sides and the search spends its bound. The paper's form ``K(alpha) <= K'`` (``lambda >= 0``)
  is ``equality = False``.

Defaults (``lr`` 1, ``damping`` 20, ``unit`` 1) are [R]: tuned on a synthetic problem (the pi4
fbnet table with a noisy stand-in for the CE gradient, Adam lr 0.01 and 0.03, budgets 15-75 %
of the range, both CE preferences) and checked on real fbnet searches; nothing in them is
specific to a device or a table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import numpy as np
import torch

from hwnas.costs.models import CostModel

GAP_TOLERANCE = 0.03  # |K - K'| / K' averaged over the tail: "within a few percent"
SETTLE_TOLERANCE = 0.1  # |lambda_end - lambda_tail_start| / max(max_t |lambda_t|, unit)
TAIL = 0.1  # the last 10 % of the dual steps


class Lagrangian:
    """``sum_c lambda_c (K_c - K'_c) / K'_c`` with the relative PI dual update (module docstring).

    Args:
        costs: cost model per metric.
        bounds: search-time bound K' per metric (same unit).
        lr: integral gain (relative to ``max(|lambda|, unit)``, per unit of relative violation).
        init: initial multiplier.
        damping: proportional gain on the change of the violation.
        unit: the multiplier scale below which the gain stops being relative.
        floor: the gain is at least this fraction of the largest ``|lambda|`` so far.
        equality: enforce ``K = K'`` (lambda of either sign), else ``K <= K'`` (lambda >= 0).
    """

    def __init__(
        self,
        costs: Mapping[str, CostModel],
        bounds: Mapping[str, float],
        lr: float,
        init: float,
        damping: float = 20.0,
        unit: float = 1.0,
        equality: bool = True,
        floor: float = 0.25,
    ) -> None:
        self.costs, self.bounds, self.lr = dict(costs), dict(bounds), lr
        self.damping, self.unit, self.equality, self.floor = damping, unit, equality, floor
        self.lam = {m: float(init) for m in self.costs}
        self.last: dict[str, float] = {}  # the previous violation per metric
        self.largest = {m: abs(float(init)) for m in self.costs}  # max |lambda| so far

    def violation(self, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Relative violation ``(K(alpha) - K') / K'`` per metric (differentiable)."""
        return {
            m: (c.expected(probs) - self.bounds[m]) / self.bounds[m] for m, c in self.costs.items()
        }

    def loss(self, probs: torch.Tensor) -> Optional[torch.Tensor]:
        if not self.costs:
            return None
        terms = self.violation(probs)
        return sum(self.lam[m] * terms[m] for m in terms)  # type: ignore[return-value]

    def objective(self, ce: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """The Lagrangian: ``CE + sum_c lambda_c x_c`` (an additive
        :class:`~hwnas.search.objectives.Objective`)."""
        term = self.loss(probs)
        return ce if term is None else ce + term

    def observe(self, probs: torch.Tensor, row: dict) -> None:
        """The dual update after the alpha step; logs lambda and the violation."""
        with torch.no_grad():
            for m, v in self.violation(probs).items():
                self.lam[m] = self.update(m, float(v))
                row[f"lambda_{m}"] = self.lam[m]
                row[f"violation_{m}"] = float(v)

    def update(self, metric: str, x: float) -> float:
        """The new multiplier of ``metric`` after observing violation ``x``."""
        change = x - self.last.get(metric, x)
        self.last[metric] = x
        lam = self.lam[metric]
        gain = max(abs(lam), self.unit, self.floor * self.largest[metric])
        lam += gain * (self.lr * x + self.damping * change)
        lam = lam if self.equality else max(0.0, lam)
        self.largest[metric] = max(self.largest[metric], abs(lam))
        return lam

    def state(self) -> dict:
        return {
            "lambda": dict(self.lam),
            "last_violation": dict(self.last),
            "largest": dict(self.largest),
        }

    def load(self, state: dict) -> None:
        self.lam.update(state.get("lambda", {}))
        self.last.update(state.get("last_violation", {}))
        self.largest.update(state.get("largest", {}))


def from_settings(
    costs: Mapping[str, CostModel], bounds: Mapping[str, float], settings: Any
) -> Lagrangian:
    """The Lagrangian of a method whose config carries the dual settings ``lambda_lr``,
    ``lambda_init``, ``lambda_damping``, ``lambda_unit`` and ``equality`` (DCA-NAS, DSNAS'
    Lagrangian form)."""
    return Lagrangian(
        costs,
        bounds,
        settings.lambda_lr,
        settings.lambda_init,
        damping=settings.lambda_damping,
        unit=settings.lambda_unit,
        equality=settings.equality,
    )


def convergence(history: Sequence[Mapping], unit: float = 1.0, tail: float = TAIL) -> dict:
    """How well the Lagrangian settled, per metric, over the last ``tail`` of the dual steps.

    Returns:
        ``{metric: {gap, lambda_change, converged, steps}}``: ``gap`` the mean ``|K - K'| / K'``
        over the tail; ``lambda_change`` ``|lambda_end - lambda_tail_start|`` relative to the
        multiplier's scale, its largest magnitude in the run (at least ``unit``): where the
        multiplier settles near 0 (the CE alone holds K near K') its own relative change is
        meaningless; ``converged``: both under :data:`GAP_TOLERANCE` / :data:`SETTLE_TOLERANCE`.
    """
    metrics = sorted(
        {k[len("lambda_") :] for row in history for k in row if k.startswith("lambda_")}
    )
    out = {}
    for m in metrics:
        rows = [r for r in history if f"lambda_{m}" in r]
        n = max(1, int(np.ceil(tail * len(rows))))
        x = np.abs([r[f"violation_{m}"] for r in rows[-n:]])
        lam = [r[f"lambda_{m}"] for r in rows[-n - 1 :]]
        scale = max(max(abs(r[f"lambda_{m}"]) for r in rows), unit)
        gap = float(x.mean())
        change = abs(lam[-1] - lam[0]) / scale
        out[m] = {
            "gap": gap,
            "lambda_change": float(change),
            "converged": bool(gap <= GAP_TOLERANCE and change <= SETTLE_TOLERANCE),
            "steps": len(rows),
        }
    return out


def reachable_range(
    cost: CostModel,
    shape: Sequence[int],
    steps: int,
    lr: float,
    betas: tuple[float, float] = (0.5, 0.999),
) -> tuple[float, float]:
    """The expected costs the alpha optimiser can reach at all in ``steps`` steps: Adam (``lr``,
    ``betas``, no decay) from uniform alpha on ``-K`` and on ``+K`` alone, nothing pulling back.

    Adam moves each alpha by about ``lr`` a step whatever the multiplier, so a bound outside this
    range cannot be met in the search, however the dual is updated (more steps or a larger
    ``arch_lr`` can). Milliseconds of CPU: the cost model only, no network.
    """
    ends = []
    for sign in (1.0, -1.0):
        alpha = torch.zeros(tuple(shape), dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.Adam([alpha], lr=lr, betas=betas)
        for _ in range(steps):
            optimizer.zero_grad()
            (sign * cost.expected(torch.softmax(alpha, -1))).backward()
            optimizer.step()
        with torch.no_grad():
            ends.append(float(cost.expected(torch.softmax(alpha, -1))))
    return ends[0], ends[1]
