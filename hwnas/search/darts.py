"""DARTS (Liu, Simonyan, Yang, "DARTS: Differentiable Architecture Search", ICLR 2019;
METHODS.md §3), first and second order, optionally with a resource penalty.

Bi-level problem: ``min_alpha L_val(w*(alpha), alpha)`` with ``w*(alpha) = argmin_w L_train``.
Every step, after ``warmup_steps`` weight-only steps:

1. alpha step (Adam) on a validation batch, with gradient
   * 1st order: ``grad_alpha L_val(w, alpha)``;
   * 2nd order: ``grad_alpha L_val(w', alpha) - xi * H v`` at the virtual step
     ``w' = w - xi (momentum + grad_w L_train + wd w)`` (xi = the current weight lr), where
     ``v = grad_w' L_val(w', alpha)`` and the Hessian-vector product
     ``H v = grad^2_{alpha, w} L_train(w, alpha) v`` is a central difference with
     ``eps = 0.01 / ||v||`` (:class:`Unrolled`);
   * the objective is a function of the validation CE and softmax(alpha)
     (:class:`~hwnas.search.objectives.Objective`), its gradient by the chain rule from the CE's:
     plain DARTS is the CE alone; ``penalty_weight`` > 0 adds a penalty on the expected cost
     ("DARTS + a latency penalty", METHODS.md §10.3 (b) and (d)); DCA-NAS plugs its Lagrangian
     in here; a multiplicative objective (FBNet's) works the same way;
2. weight step (SGD, cosine lr, grad-norm clip) on the training batch.

The architecture is derived at the end (DARTS' genotype rule on ``darts``, argmax per layer on
``fbnet``); the pipeline repairs it against the exact costs when it violates a budget
(:mod:`hwnas.search.finalize`). Defaults are
DARTS' CIFAR-10 search settings (METHODS.md §3.3); the weight lr, momentum, decay, batch and
steps come from the shared :class:`~hwnas.search.api.SearchBudget`. Data-parallel under torchrun
(:mod:`hwnas.search.distributed`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult, Tried
from hwnas.search.bilevel import (
    RELAXATIONS,
    BilevelSettings,
    BilevelState,
    derive_arch,
    edge_probs,
    expected_costs,
    observe,
)
from hwnas.search.distributed import current
from hwnas.search.objectives import CostPenalty, Objective, chain_grad
from hwnas.search.trainer import BatchStream, cosine_lr, set_lr

log = logging.getLogger(__name__)
PENALTIES = ("linear", "hinge")


@dataclass(frozen=True)
class DartsConfig(BilevelSettings):
    """DARTS: the bi-level loop's settings (:class:`~hwnas.search.bilevel.BilevelSettings`) and
    an optional resource penalty.

    Attributes:
        penalty_weight: weight of the resource penalty (0: plain DARTS, accuracy only).
        penalty: ``"linear"``: ``weight * sum_c E_c[cost] / limit_c`` (ProxylessNAS-style
            additive term, normalised by the budget); ``"hinge"``: ``weight * sum_c max(0,
            E_c / limit_c - 1)``.
    """

    penalty_weight: float = 0.0
    penalty: str = "linear"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.penalty not in PENALTIES:
            raise UserError(f"darts penalty must be one of {', '.join(PENALTIES)}")
        if self.penalty_weight < 0:
            raise UserError("darts: penalty_weight >= 0")


def _grads(loss: torch.Tensor, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of ``loss`` (zeros where unused), averaged over data-parallel ranks."""
    grads = torch.autograd.grad(loss, list(tensors), allow_unused=True)
    out = [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]
    current().all_reduce_mean_(out)
    return out


def _ce(net: nn.Module, alpha: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(net(x, edge_probs(alpha)), y)


def first_order_grad(
    net: nn.Module, alpha: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """``(grad_alpha L_val(w, alpha), L_val)`` on the batch ``(x, y)``."""
    loss = _ce(net, alpha, x, y)
    return _grads(loss, [alpha])[0], float(loss.detach())


class Unrolled:
    """Second-order DARTS: the alpha gradient through one virtual weight step (Eq. 7-8).

    The weights are moved in place and always restored; nothing else changes (the supernet's
    BNs keep no running statistics).

    Args:
        net: the supernet; ``net(x, softmax(alpha))``.
        alpha: the architecture parameters.
        momentum, weight_decay: of the weight optimizer (the virtual step mimics it).
        r: finite-difference radius: ``eps = r / ||v||`` (0.01 in DARTS).
    """

    def __init__(
        self, net: nn.Module, alpha: torch.Tensor, momentum: float, weight_decay: float, r=0.01
    ) -> None:
        self.net, self.alpha = net, alpha
        self.params = list(net.parameters())
        self.momentum, self.weight_decay, self.r = momentum, weight_decay, r

    def alpha_grad(
        self, train: tuple, val: tuple, xi: float, optimizer: torch.optim.Optimizer
    ) -> tuple[torch.Tensor, float]:
        """``(grad_alpha L_val(w', alpha) - xi * H v, L_val(w', alpha))``."""
        w0 = [p.detach().clone() for p in self.params]
        g_train = _grads(_ce(self.net, self.alpha, *train), self.params)
        with torch.no_grad():
            for p, g, p0 in zip(self.params, g_train, w0):
                buf = optimizer.state.get(p, {}).get("momentum_buffer")
                step = g + self.weight_decay * p0
                p.sub_(xi * (step if buf is None else step + self.momentum * buf))
        loss = _ce(self.net, self.alpha, *val)
        g_alpha, *v = _grads(loss, [self.alpha, *self.params])
        self._load(w0)
        return g_alpha - xi * self.hessian_vector_product(v, *train), float(loss.detach())

    def hessian_vector_product(
        self, v: Sequence[torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        """``grad^2_{alpha, w} L(w, alpha) v`` by central differences, shape of alpha."""
        w0 = [p.detach().clone() for p in self.params]
        eps = self.r / torch.sqrt(sum((t * t).sum() for t in v))
        grads = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for p, p0, t in zip(self.params, w0, v):
                    p.copy_(p0 + sign * eps * t)
            grads.append(_grads(_ce(self.net, self.alpha, x, y), [self.alpha])[0])
        self._load(w0)
        return (grads[0] - grads[1]) / (2 * eps)

    @torch.no_grad()
    def _load(self, values: Sequence[torch.Tensor]) -> None:
        for p, value in zip(self.params, values):
            p.copy_(value)


def search(
    problem: SearchProblem,
    config: BilevelSettings,
    hooks: Hooks,
    penalty: Objective,
    name: str,
) -> SearchResult:
    """The bi-level loop (module docstring) minimising ``penalty``'s objective of the validation
    CE and softmax(alpha) (:mod:`hwnas.search.objectives`: additive or multiplicative) in alpha;
    returns the derived architecture (before any repair) with softmax(alpha) as its
    preferences."""
    space, b = problem.space, problem.budget
    if space.relaxation not in RELAXATIONS:
        raise UserError(f"{name} works on softmax-relaxed spaces (fbnet, darts), not {space.name}")
    state = BilevelState(
        problem,
        config.arch_lr,
        config.arch_betas,
        config.arch_weight_decay,
        config.weight_sharing,
        config.bottleneck,
    )
    if hooks.checkpoint is not None and (loaded := hooks.checkpoint.load("search")) is not None:
        state.restore(*loaded)
        penalty.load(state.extra.get("penalty", {}))
        log.info("%s resumed at step %d", name, state.step)
    streams = (
        BatchStream(problem.data.train_x, problem.data.train_y, b.batch_size, b.seed),
        BatchStream(problem.data.val_x, problem.data.val_y, b.batch_size, b.seed + 1),
    )
    unrolled = None
    if config.order == 2:
        unrolled = Unrolled(state.net, state.alpha, b.momentum, b.weight_decay)

    def save() -> None:
        if hooks.checkpoint is not None:
            state.extra["penalty"] = penalty.state()
            hooks.checkpoint.save("search", state.arrays(), state.meta())

    while state.step < b.steps:
        row = _one_step(problem, config, state, streams, penalty, unrolled)
        state.history.append(row)
        state.step += 1
        observe(problem, state, config.snapshot_every)
        status = {k: v for k, v in row.items() if k == "ce_train" or k.startswith("lambda_")}
        hooks.step_done(state.step, b.steps, status, save, b.checkpoint_every)
    probs = state.probs()
    arch = derive_arch(problem, probs)
    info = {"method": name, "order": config.order, "alpha_shape": list(space.alpha_shape)}
    info["expected_costs"] = expected_costs(problem, state)
    tried = tuple(Tried(**t) for t in state.tried)
    history, snapshots = tuple(state.history), tuple(state.snapshots)
    return SearchResult(arch, history, tried, snapshots, info, values=probs)


def _one_step(problem, config, state, streams, penalty, unrolled) -> dict:
    b, ctx, net, alpha = problem.budget, current(), state.net, state.alpha
    lr = cosine_lr(b.lr, state.step, b.steps)
    set_lr(state.opt_w, lr)
    train = ctx.shard(*streams[0].batch(state.step))
    row: dict = {"step": state.step, "lr": lr}
    local: dict = {}
    if state.step >= b.warmup_steps:
        val = ctx.shard(*streams[1].batch(state.step))
        if unrolled is not None:
            grad, local["ce_val"] = unrolled.alpha_grad(train, val, lr, state.opt_w)
        else:
            grad, local["ce_val"] = first_order_grad(net, alpha, *val)
        ce_val = ctx.mean({"ce": local["ce_val"]})["ce"]  # the global batch's, on every rank
        grad, row["objective"] = chain_grad(penalty, ce_val, grad, edge_probs(alpha), alpha)
        state.opt_a.zero_grad(set_to_none=True)
        alpha.grad = grad
        state.opt_a.step()
        penalty.observe(edge_probs(alpha.detach()), row)
    probs = edge_probs(alpha.detach())
    loss = nn.functional.cross_entropy(net(train[0], probs), train[1])
    state.opt_w.zero_grad(set_to_none=True)
    loss.backward()
    ctx.all_reduce_mean_(p.grad for p in net.parameters())
    nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
    state.opt_w.step()
    local["ce_train"] = float(loss.detach())
    row.update(ctx.mean(local))
    derived = derive_arch(problem, probs.cpu().numpy().astype(np.float64))
    for c in problem.constraints:
        row[f"expected_{c.metric}"] = float(c.cost.expected(probs))
        row[f"disparity_{c.metric}"] = c.disparity(derived)
    return row


def run(problem: SearchProblem, config: DartsConfig, hooks: Hooks) -> SearchResult:
    """DARTS search (module docstring)."""
    penalty = CostPenalty(problem.constraints, config.penalty_weight, config.penalty)
    return search(problem, config, hooks, penalty, "darts")


METHODS.add(
    "darts",
    MethodSpec(
        run,
        DartsConfig,
        RELAXATIONS,
        "DARTS bi-level search (1st/2nd order), optional cost penalty; derived arch repaired",
    ),
)
