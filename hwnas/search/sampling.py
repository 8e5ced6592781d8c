"""What the sampling methods share (DSNAS, ProxylessNAS, FBNet: :mod:`hwnas.search.dsnas`,
:mod:`hwnas.search.proxyless`, :mod:`hwnas.search.fbnet_gumbel`).

* Randomness is a function of ``(seed, step, stream)`` (:func:`step_generator`), like the batches
  (:class:`~hwnas.search.trainer.BatchStream`): a resumed search draws the same paths.
* Paths: ``(L, n)`` op indices, ``n`` distinct ops per layer drawn from ``softmax(alpha)``
  (:func:`sample_paths`); Gumbel-softmax masks (:func:`gumbel_softmax`).
* The loop around a method's step (:func:`run_steps`): resume, checkpoint, alpha snapshots,
  periodic validation of the derived path through the supernet (only its ops run), progress.
  The state is :class:`~hwnas.search.bilevel.BilevelState` (supernet, alpha, SGD, Adam).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search.api import Hooks, SearchProblem, SearchResult, Tried
from hwnas.search.bilevel import BilevelState, derive_arch, expected_costs, tried_entry

log = logging.getLogger(__name__)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for the random draws of ``step`` (``stream`` tells draws apart)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 7 + stream)


def sample_paths(probs: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` distinct ops per layer drawn from ``probs`` (L, K) without replacement -> (L, n)."""
    return torch.multinomial(probs.detach().cpu().double(), n, False, generator=generator)


def one_hot(path: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(L, K) zeros with 1 at ``path`` (L,), dtype and device of ``like``."""
    out = torch.zeros_like(like)
    out[torch.arange(len(path)), path.to(out.device)] = 1.0
    return out


def gumbel_softmax(alpha: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    """``softmax((alpha + g) / tau)`` per row with Gumbel(0, 1) noise ``g`` (differentiable in
    alpha); one draw for the whole batch."""
    u = torch.rand(alpha.shape, generator=generator, dtype=torch.float64)
    g = -torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-12)))
    return torch.softmax((alpha + g.to(alpha)) / tau, dim=-1)


def check_sampling_config(config: Any, name: str) -> None:
    """What every sampling method's config (frozen dataclass) must hold: ``arch_betas`` a tuple of
    floats (TOML gives lists), ``arch_lr > 0``, ``grad_clip`` unset or > 0,
    ``snapshot_every >= 1``; a UserError names the method."""
    object.__setattr__(config, "arch_betas", tuple(float(b) for b in config.arch_betas))
    if config.arch_lr <= 0:
        raise UserError(f"{name}: arch_lr must be > 0, got {config.arch_lr}")
    if config.grad_clip is not None and config.grad_clip <= 0:
        raise UserError(f"{name}: grad_clip must be > 0 (or unset), got {config.grad_clip}")
    if config.snapshot_every < 1:
        raise UserError(f"{name}: snapshot_every must be at least 1, got {config.snapshot_every}")


def check_layerwise(problem: SearchProblem, name: str) -> None:
    """Refuse spaces that are not one op per layer (their supernets run no sparse paths)."""
    if problem.space.relaxation != "choice":
        raise UserError(
            f"{name} chooses one op per layer: it works on layer-wise spaces (fbnet), "
            f"not {problem.space.name!r}"
        )


@torch.no_grad()
def path_accuracy(net: nn.Module, path: Any, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the supernet along ``path`` (one op per layer), BN on batch statistics as in
    the search (running statistics left as they were)."""
    net.train()
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    device = next(net.parameters()).device
    correct = 0
    try:
        for i in range(0, len(x), 250):
            out = net.forward_path(x[i : i + 250].to(device), path)
            correct += int((out.argmax(1).cpu() == y[i : i + 250]).sum())
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
    return correct / max(len(x), 1)


def cost_row(problem: SearchProblem, row: dict, probs: torch.Tensor, sampled: torch.Tensor) -> None:
    """Per constraint: the expected cost under ``probs``, the cost of the ``sampled`` relaxation
    (a one-hot path: its exact cost; a Gumbel mask: the cost it mixes) and the relative
    disparity of the argmax architecture."""
    derived = derive_arch(problem, probs.detach().cpu().numpy().astype(np.float64))
    for c in problem.constraints:
        row[f"expected_{c.metric}"] = float(c.cost.expected(probs.detach()))
        row[f"sampled_{c.metric}"] = float(c.cost.expected(sampled.detach()))
        row[f"disparity_{c.metric}"] = c.disparity(derived)


def run_steps(
    problem: SearchProblem,
    state: BilevelState,
    hooks: Hooks,
    step: Callable[[int], dict],
    snapshot_every: int,
    name: str,
) -> None:
    """Run ``step(t) -> history row`` from the state's step to the budget's, resumably."""
    b = problem.budget
    if hooks.checkpoint is not None and (loaded := hooks.checkpoint.load("search")) is not None:
        state.restore(*loaded)
        log.info("%s resumed at step %d", name, state.step)

    def save() -> None:
        if hooks.checkpoint is not None:
            hooks.checkpoint.save("search", state.arrays(), state.meta())

    while state.step < b.steps:
        row = step(state.step)
        state.history.append(row)
        state.step += 1
        _observe(problem, state, snapshot_every)
        status = {k: v for k, v in row.items() if k in ("ce_train", "tau", "fixed")}
        hooks.step_done(state.step, b.steps, status, save, b.checkpoint_every)


def _observe(problem: SearchProblem, state: BilevelState, snapshot_every: int) -> None:
    b, t = problem.budget, state.step
    if t == 1 or t % snapshot_every == 0 or t == b.steps:
        alpha = state.alpha.detach().cpu().numpy().ravel()
        state.snapshots.append({"step": t, "alpha": np.round(alpha, 5).tolist()})
    if (b.eval_every and t % b.eval_every == 0) or t == b.steps:
        arch = derive_arch(problem, state.probs())
        x, y = problem.data.val_x[: b.eval_images], problem.data.val_y[: b.eval_images]
        acc = path_accuracy(state.net, arch, x, y)
        state.tried.append(tried_entry(problem, arch, acc, f"derived path at step {t}"))


def finish(problem: SearchProblem, state: BilevelState, name: str, info: dict) -> SearchResult:
    """The argmax architecture of softmax(alpha) (before any repair), softmax(alpha) as its
    preferences, the history, and ``info`` with the expected costs."""
    probs = state.probs()
    facts = {"method": name, "alpha_shape": list(problem.space.alpha_shape), **info}
    facts["expected_costs"] = expected_costs(problem, state)
    return SearchResult(
        derive_arch(problem, probs),
        tuple(state.history),
        tuple(Tried(**t) for t in state.tried),
        tuple(state.snapshots),
        facts,
        values=probs,
    )
