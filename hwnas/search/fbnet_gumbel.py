"""FBNet's differentiable search (Wu, Dai, Zhang, Wang, Sun, Wu, Tian, Vajda, Jia, Keutzer,
"FBNet: Hardware-Aware Efficient ConvNet Design via Differentiable Neural Architecture Search",
CVPR 2019; METHODS.md §10.2), the latency from the LUT.

Per layer a Gumbel-softmax mask ``m_l = softmax((theta_l + g_l) / tau)`` mixes all the ops
(one Gumbel draw per batch). Every step, after the budget's ``warmup_steps`` weight-only steps:

1. theta step (Adam) on a validation batch: ``J = CE(m) * a * (log LAT(m))^b`` with
   ``LAT(m) = sum_lk m_lk LUT_lk + const`` in ms, the LUT's expected cost evaluated at the same
   mask (Eq. 6; :class:`~hwnas.search.objectives.LogCostObjective`, which refuses a space
   whose cheapest architecture has ``LAT <= 1`` ms: ``log`` would flip the loss' sign);
2. weight step (SGD, cosine lr) on a training batch and a fresh mask, on the CE alone: the cost
   factor does not depend on the weights, it would only rescale the shared learning rate.

Temperature: ``tau = tau_init * tau_decay^epoch`` (5.0 x 0.956 = exp(-0.045) per epoch [V]),
floored at ``tau_min`` (METHODS.md §10.3: a tiny tau overflows to NaN). ``epochs`` says how
many of the paper's epochs the search's steps stand for (default 90, the paper's whole search),
so the temperature ends where the paper's does whatever the step budget; it is applied per step
(``epoch = epochs * step / steps``).

The budget does not enter the loss (``a`` and ``b`` set the trade-off, as in the paper): the
derived architecture (argmax theta per layer) is the same for every budget and is repaired to
it by :mod:`hwnas.search.finalize`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult
from hwnas.search.bilevel import BilevelState, edge_probs
from hwnas.search.objectives import LogCostObjective
from hwnas.search.sampling import (
    check_layerwise,
    check_sampling_config,
    cost_row,
    finish,
    gumbel_softmax,
    run_steps,
    step_generator,
)
from hwnas.search.trainer import BatchStream, cosine_lr, set_lr


@dataclass(frozen=True)
class FBNetConfig:
    """FBNet's settings ([V]: paper / the third-party reference's config; the weights' SGD,
    steps, batch and warm-up come from the shared :class:`~hwnas.search.api.SearchBudget`).

    Attributes:
        arch_lr: Adam learning rate of theta (0.01 [V]).
        arch_betas: Adam betas ((0.9, 0.999), PyTorch's default: the paper names none).
        arch_weight_decay: L2 on theta (5e-4 [V]).
        scale: ``a`` of ``CE * a * (log LAT)^b`` (0.2 [V]).
        exponent: ``b`` (0.6 [V]).
        tau_init: initial Gumbel-softmax temperature (5.0 [V]).
        tau_decay: its factor per epoch (0.956 = exp(-0.045) [V]).
        epochs: the paper's epochs the search's steps stand for (90 [V]: its whole search; the
            temperature then ends at 5.0 * 0.956^90 = 0.087, floored at ``tau_min``).
        tau_min: floor of the temperature (0.1 [R]).
        grad_clip: max global norm of the weight gradient (None [V]).
        snapshot_every: steps between theta snapshots.
    """

    arch_lr: float = 0.01
    arch_betas: tuple[float, float] = (0.9, 0.999)
    arch_weight_decay: float = 5e-4
    scale: float = 0.2
    exponent: float = 0.6
    tau_init: float = 5.0
    tau_decay: float = 0.956
    epochs: float = 90.0
    tau_min: float = 0.1
    grad_clip: Optional[float] = None
    snapshot_every: int = 25

    def __post_init__(self) -> None:
        check_sampling_config(self, "fbnet-gumbel")
        if self.scale <= 0 or self.exponent <= 0:
            raise UserError("fbnet-gumbel: scale and exponent must be > 0")
        if not 0 < self.tau_min <= self.tau_init or not 0 < self.tau_decay <= 1:
            raise UserError("fbnet-gumbel: 0 < tau_min <= tau_init and 0 < tau_decay <= 1")
        if self.epochs <= 0:
            raise UserError("fbnet-gumbel: epochs must be > 0")


def temperature(config: FBNetConfig, step: int, steps: int) -> float:
    """``max(tau_min, tau_init * tau_decay^(epochs * step / steps))``."""
    epoch = config.epochs * step / max(steps, 1)
    return max(config.tau_min, config.tau_init * config.tau_decay**epoch)


def _step(problem: SearchProblem, config: FBNetConfig, state, streams, objective, t) -> dict:
    b, net, alpha = problem.budget, state.net, state.alpha
    lr = cosine_lr(b.lr, t, b.steps)
    set_lr(state.opt_w, lr)
    tau = temperature(config, t, b.steps)
    row: dict = {"step": t, "lr": lr, "tau": tau}
    if t >= b.warmup_steps:
        x, y = (v.to(alpha.device) for v in streams[1].batch(t))
        mask = gumbel_softmax(alpha, tau, step_generator(b.seed, t, 1))
        ce = nn.functional.cross_entropy(net(x, mask), y)
        value = objective.objective(ce, mask)
        state.opt_a.zero_grad(set_to_none=True)
        (alpha.grad,) = torch.autograd.grad(value, [alpha])
        state.opt_a.step()
        row.update(ce_val=float(ce.detach()), objective=float(value.detach()))
    mask = gumbel_softmax(alpha.detach(), tau, step_generator(b.seed, t))
    x, y = (v.to(alpha.device) for v in streams[0].batch(t))
    loss = nn.functional.cross_entropy(net(x, mask), y)
    state.opt_w.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
    state.opt_w.step()
    row["ce_train"] = float(loss.detach())
    cost_row(problem, row, edge_probs(alpha.detach()), mask)
    return row


def run(problem: SearchProblem, config: FBNetConfig, hooks: Hooks) -> SearchResult:
    """FBNet search (module docstring)."""
    check_layerwise(problem, "fbnet-gumbel")
    b = problem.budget
    objective = LogCostObjective(problem.constraints, config.scale, config.exponent)
    state = BilevelState(problem, config.arch_lr, config.arch_betas, config.arch_weight_decay)
    streams = (
        BatchStream(problem.data.train_x, problem.data.train_y, b.batch_size, b.seed),
        BatchStream(problem.data.val_x, problem.data.val_y, b.batch_size, b.seed + 1),
    )
    run_steps(
        problem,
        state,
        hooks,
        lambda t: _step(problem, config, state, streams, objective, t),
        config.snapshot_every,
        "fbnet-gumbel",
    )
    tau_end = temperature(config, b.steps, b.steps)
    return finish(problem, state, "fbnet-gumbel", {"tau_end": tau_end})


METHODS.add(
    "fbnet-gumbel",
    MethodSpec(
        run,
        FBNetConfig,
        ("choice",),
        "FBNet: Gumbel-softmax over ops, loss CE * a * (log E[latency])^b from the LUT",
    ),
)
