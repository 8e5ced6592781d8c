"""ProxylessNAS with binary gates (Cai, Zhu, Han, "ProxylessNAS: Direct Neural Architecture Search
on Target Task and Hardware", ICLR 2019; METHODS.md §10.1), the latency from the LUT.

Per layer the architecture is ``p = softmax(alpha)`` over the ops; only sampled paths run.

* Weight step (every step, training batch): one op per layer drawn from ``p``; only it runs; SGD.
* Architecture step (every ``arch_every`` weight steps after the budget's ``warmup_steps``,
  validation batch), the paper's memory-saving two-path mode:
  1. per layer draw two distinct ops from ``p``; ``q = softmax(alpha_pair)`` renormalised over
     them; the active one drawn from ``q``; binary gates ``g`` (1 on the active op, 0 on the
     other); both ops run, the layer outputs ``sum_j g_j op_j(x)``;
  2. gate gradients ``dCE/dg_j = <op_j(x), dCE/d out>`` by autograd, and the CE's alpha
     gradient on the pair ``dCE/dalpha_i = sum_j dCE/dg_j q_j (delta_ij - q_i)``;
  3. objective ``CE + lambda * E[LAT] / B`` with ``E[LAT] = sum_lk p_lk LUT_lk + const`` under
     the full softmax (ProxylessNAS' additive latency loss, the budget as its reference); its
     gradient by the chain rule (:func:`~hwnas.search.objectives.chain_grad`);
  4. Adam on alpha, then the pair's two alphas are shifted by a common offset so that their
     total ``exp`` mass is what it was: the ops that were not sampled keep their probability
     under the CE part of the update (the latency term moves every alpha, as in the paper).

The derived architecture is the argmax op per layer; the budget enters only as the penalty's
reference, so it may be exceeded (then repaired by :mod:`hwnas.search.finalize`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult
from hwnas.search.bilevel import BilevelState, edge_probs
from hwnas.search.objectives import CostPenalty, Objective, chain_grad
from hwnas.search.sampling import (
    check_layerwise,
    check_sampling_config,
    cost_row,
    finish,
    one_hot,
    run_steps,
    sample_paths,
    step_generator,
)
from hwnas.search.trainer import BatchStream, cosine_lr, set_lr


@dataclass(frozen=True)
class ProxylessConfig:
    """ProxylessNAS' settings ([V]: the reference search code's arguments; the weights' SGD
    (Nesterov), steps, batch and warm-up come from the shared
    :class:`~hwnas.search.api.SearchBudget`).

    Attributes:
        arch_lr: Adam learning rate of alpha (1e-3 [V]; the recipe's short search uses 0.03).
        arch_betas: Adam betas ((0, 0.999) [V]: no momentum, so only the alphas with a gradient
            move).
        arch_weight_decay: L2 on alpha (0 [V]).
        latency_weight: ``lambda`` of ``CE + lambda * E[cost] / B`` per constraint (0.1 [V]: the
            code's ``add#linear`` weight, whose reference is the target latency; here the budget).
        arch_every: weight steps per architecture step (5 [V]; the recipe uses 1).
        grad_clip: max global norm of the weight gradient (None [V]).
        snapshot_every: steps between alpha snapshots.
    """

    arch_lr: float = 1e-3
    arch_betas: tuple[float, float] = (0.0, 0.999)
    arch_weight_decay: float = 0.0
    latency_weight: float = 0.1
    arch_every: int = 5
    grad_clip: Optional[float] = None
    snapshot_every: int = 25

    def __post_init__(self) -> None:
        check_sampling_config(self, "proxyless")
        if self.latency_weight < 0 or self.arch_every < 1:
            raise UserError("proxyless: latency_weight >= 0, arch_every >= 1")


def gate_alpha_grad(gate_grad: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``dL/dalpha_i = sum_j dL/dg_j q_j (delta_ij - q_i)`` over a sampled pair: (L, 2)."""
    return q * (gate_grad - (q * gate_grad).sum(-1, keepdim=True))


def binary_gate_grad(
    net: nn.Module,
    alpha: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    pairs: torch.Tensor,
    active: torch.Tensor,
) -> tuple[torch.Tensor, float]:
    """The CE's alpha gradient (shaped like alpha, zero off the pairs) through binary gates.

    Args:
        pairs: (L, 2) the two sampled ops per layer; active: (L,) 0 or 1, which one is on.
    """
    layers = torch.arange(len(pairs))
    gates = one_hot(pairs[layers, active], alpha.detach()).requires_grad_()
    ce = nn.functional.cross_entropy(net.forward_path(x, pairs.tolist(), gates), y)
    (g,) = torch.autograd.grad(ce, [gates])
    q = torch.softmax(alpha.detach()[layers[:, None], pairs], dim=-1)
    grad = torch.zeros_like(alpha)
    grad[layers[:, None], pairs] = gate_alpha_grad(g[layers[:, None], pairs], q)
    return grad, float(ce.detach())


def arch_step(
    state: BilevelState, objective: Objective, batch: tuple, generator: torch.Generator
) -> tuple[float, float]:
    """One two-path architecture step (module docstring, 1-4); returns (CE, objective)."""
    alpha = state.alpha
    pairs = sample_paths(edge_probs(alpha.detach()), 2, generator)
    layers = torch.arange(len(pairs))
    q = torch.softmax(alpha.detach().cpu().double()[layers[:, None], pairs], dim=-1)
    active = torch.multinomial(q, 1, generator=generator)[:, 0]
    ce_grad, ce = binary_gate_grad(state.net, alpha, *batch, pairs, active)
    grad, value = chain_grad(objective, ce, ce_grad, edge_probs(alpha), alpha)
    before = alpha.detach()[layers[:, None], pairs].clone()
    state.opt_a.zero_grad(set_to_none=True)
    alpha.grad = grad
    state.opt_a.step()
    with torch.no_grad():  # the pair keeps its total exp mass: the others keep their share
        after = alpha[layers[:, None], pairs]
        offset = torch.logsumexp(after, -1, keepdim=True) - torch.logsumexp(before, -1, True)
        alpha[layers[:, None], pairs] = after - offset
    return ce, value


def _step(problem: SearchProblem, config: ProxylessConfig, state, streams, objective, t) -> dict:
    b, net, alpha = problem.budget, state.net, state.alpha
    lr = cosine_lr(b.lr, t, b.steps)
    set_lr(state.opt_w, lr)
    row: dict = {"step": t, "lr": lr}
    if t >= b.warmup_steps and (t - b.warmup_steps) % config.arch_every == 0:
        val = tuple(v.to(alpha.device) for v in streams[1].batch(t))
        row["ce_val"], row["objective"] = arch_step(
            state, objective, val, step_generator(b.seed, t, 1)
        )
    path = sample_paths(edge_probs(alpha.detach()), 1, step_generator(b.seed, t))[:, 0]
    x, y = (v.to(alpha.device) for v in streams[0].batch(t))
    loss = nn.functional.cross_entropy(net.forward_path(x, path.tolist()), y)
    state.opt_w.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
    state.opt_w.step()
    row["ce_train"] = float(loss.detach())
    cost_row(problem, row, edge_probs(alpha.detach()), one_hot(path, alpha.detach()))
    return row


def run(problem: SearchProblem, config: ProxylessConfig, hooks: Hooks) -> SearchResult:
    """ProxylessNAS search (module docstring)."""
    check_layerwise(problem, "proxyless")
    b = problem.budget
    state = BilevelState(problem, config.arch_lr, config.arch_betas, config.arch_weight_decay)
    streams = (
        BatchStream(problem.data.train_x, problem.data.train_y, b.batch_size, b.seed),
        BatchStream(problem.data.val_x, problem.data.val_y, b.batch_size, b.seed + 1),
    )
    objective = CostPenalty(problem.constraints, config.latency_weight, "linear")
    run_steps(
        problem,
        state,
        hooks,
        lambda t: _step(problem, config, state, streams, objective, t),
        config.snapshot_every,
        "proxyless",
    )
    return finish(problem, state, "proxyless", {"arch_every": config.arch_every})


METHODS.add(
    "proxyless",
    MethodSpec(
        run,
        ProxylessConfig,
        ("choice",),
        "ProxylessNAS: two-path binary gates, CE + lambda * E[latency] / budget from the LUT",
    ),
)
