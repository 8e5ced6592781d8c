"""What the softmax-relaxed, bi-level methods share (DARTS and DCA-NAS, ``hwnas.search.darts`` /
``hwnas.search.dca``): the search state, its checkpoint arrays, and derive-then-repair.

* Architecture parameters ``alpha`` have the space's ``alpha_shape`` ((L, K) for "choice" spaces
  such as ``fbnet``, (28, 8) for the ``darts`` cells); the supernet mixes ops with
  ``softmax(alpha)`` over the last axis. Initialised ``1e-3 * N(0, 1)`` as in DARTS.
* Weights: SGD (the search budget's lr, momentum and weight decay; cosine decay). Alpha: Adam.
* Derivation: DARTS' genotype rule on ``darts``, the argmax op per layer on "choice" spaces.
  That is the method's own architecture; the pipeline repairs (and optionally fills) it against
  the exact costs, ranking changes by softmax(alpha) (:mod:`hwnas.search.finalize`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search.api import SearchProblem
from hwnas.search.checkpoint import (
    load_module_arrays,
    load_optimizer_arrays,
    module_arrays,
    optimizer_arrays,
)
from hwnas.search.distributed import current
from hwnas.search.trainer import make_sgd
from hwnas.spaces.base import Arch

RELAXATIONS = ("choice", "cell")


@dataclass(frozen=True)
class BilevelSettings:
    """Settings of the bi-level loop (DARTS CIFAR-10 search, METHODS.md §3.3, unless marked);
    :class:`~hwnas.search.darts.DartsConfig` and :class:`~hwnas.search.dca.DCAConfig` extend it.

    Attributes:
        order: 1 (first order) or 2 (unrolled, finite-difference Hessian-vector product).
        arch_lr: Adam learning rate of alpha (3e-4).
        arch_betas: Adam betas of alpha ((0.5, 0.999)).
        arch_weight_decay: L2 on alpha (1e-3).
        grad_clip: max global norm of the weight gradient (5).
        weight_sharing: DCA-NAS' per-source shared ops (``darts`` space only).
        bottleneck: DCA-NAS' channel bottleneck factor (``darts`` only; 1: none).
        snapshot_every: steps between alpha snapshots.
    """

    order: int = 1
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    weight_sharing: bool = False
    bottleneck: int = 1
    snapshot_every: int = 25
    data_parallel: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch_betas", tuple(float(b) for b in self.arch_betas))
        if self.order not in (1, 2):
            raise UserError(f"order must be 1 or 2, got {self.order}")
        if self.arch_lr <= 0 or self.bottleneck < 1:
            raise UserError("arch_lr > 0 and bottleneck >= 1")

    def bilevel(self) -> BilevelSettings:
        """Only the loop settings (what a method built on the loop passes to it)."""
        return BilevelSettings(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(BilevelSettings)}
        )


def edge_probs(alpha: torch.Tensor) -> torch.Tensor:
    """softmax over the ops of each row: (L, K) -> (L, K)."""
    return torch.softmax(alpha, dim=-1)


def build_supernet(problem: SearchProblem, weight_sharing: bool, bottleneck: int) -> nn.Module:
    """The space's supernet; the DCA-NAS speed-up options exist on the ``darts`` space only."""
    space, seed = problem.space, problem.budget.seed
    if space.relaxation == "cell":
        return space.build_supernet(seed, weight_sharing=weight_sharing, bottleneck=bottleneck)
    if weight_sharing or bottleneck != 1:
        raise UserError(
            f"weight sharing and the channel bottleneck are options of the darts space, "
            f"not of {space.name!r}"
        )
    return space.build_supernet(seed)


class BilevelState:
    """Everything that changes during a bi-level search (and goes into checkpoints).

    Args:
        problem: the search problem (space, budget...).
        arch_lr, arch_betas, arch_weight_decay: Adam on alpha.
        weight_sharing, bottleneck: supernet options (``darts`` only).
    """

    def __init__(
        self,
        problem: SearchProblem,
        arch_lr: float,
        arch_betas: tuple[float, float],
        arch_weight_decay: float,
        weight_sharing: bool = False,
        bottleneck: int = 1,
    ) -> None:
        b, ctx = problem.budget, current()
        torch.manual_seed(b.seed)
        self.net = ctx.prepare(build_supernet(problem, weight_sharing, bottleneck))
        noise = np.random.default_rng(b.seed).standard_normal(problem.space.alpha_shape)
        alpha = torch.from_numpy(1e-3 * noise).to(torch.get_default_dtype())
        self.alpha = nn.Parameter(alpha.to(ctx.device))
        self.opt_w = make_sgd(self.net.parameters(), b.lr, b.momentum, b.weight_decay)
        self.opt_a = torch.optim.Adam(
            [self.alpha], lr=arch_lr, betas=tuple(arch_betas), weight_decay=arch_weight_decay
        )
        self.step = 0
        self.history: list[dict] = []
        self.snapshots: list[dict] = []
        self.tried: list[dict] = []
        self.extra: dict = {}  # method state (JSON), e.g. Lagrange multipliers

    def probs(self) -> np.ndarray:
        return edge_probs(self.alpha.detach()).cpu().numpy().astype(np.float64)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {**module_arrays("net", self.net), **optimizer_arrays("opt", self.opt_w)}
        out["alpha"] = self.alpha.detach().cpu().numpy().copy()
        adam = self.opt_a.state.get(self.alpha, {})
        for key in ("exp_avg", "exp_avg_sq"):
            if key in adam:
                out[f"adam.{key}"] = adam[key].detach().cpu().numpy().copy()
        return out

    def meta(self) -> dict:
        adam = self.opt_a.state.get(self.alpha, {})
        return {
            "step": self.step,
            "adam_step": float(adam["step"]) if "step" in adam else None,
            "history": self.history,
            "snapshots": self.snapshots,
            "tried": self.tried,
            "extra": self.extra,
        }

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        load_module_arrays("net", self.net, arrays)
        load_optimizer_arrays("opt", self.opt_w, arrays)
        device = self.alpha.device
        with torch.no_grad():
            self.alpha.copy_(torch.from_numpy(arrays["alpha"]).to(device))
        if meta["adam_step"] is not None:
            self.opt_a.state[self.alpha] = {
                "step": torch.tensor(meta["adam_step"]),
                "exp_avg": torch.from_numpy(arrays["adam.exp_avg"]).to(device),
                "exp_avg_sq": torch.from_numpy(arrays["adam.exp_avg_sq"]).to(device),
            }
        self.step = meta["step"]
        self.history, self.snapshots = meta["history"], meta["snapshots"]
        self.tried, self.extra = meta["tried"], meta["extra"]


def derive_arch(problem: SearchProblem, probs: np.ndarray) -> Arch:
    """The discrete architecture ``probs`` encodes (before any repair)."""
    space = problem.space
    if space.relaxation == "cell":
        return space.derive(probs)
    return space.arch_from_vector(np.argmax(probs, axis=1))


@torch.no_grad()
def supernet_accuracy(
    net: nn.Module, probs: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> float:
    """Accuracy of the supernet mixed with ``probs`` (BN on batch statistics, as in search;
    running statistics are left as they were)."""
    net.train()
    device = current().device
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0
    correct = 0
    try:
        for i in range(0, len(x), 250):
            out = net(x[i : i + 250].to(device), probs)
            correct += int((out.argmax(1).cpu() == y[i : i + 250]).sum())
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
    return correct / max(len(x), 1)


def tried_entry(problem: SearchProblem, arch: Arch, accuracy: float, note: str) -> dict[str, Any]:
    return {
        "arch": problem.space.format_arch(arch),
        "costs": problem.arch_costs(arch),
        "val_accuracy": accuracy,
        "note": note,
    }


def expected_costs(problem: SearchProblem, state: BilevelState) -> dict[str, float]:
    """Expected cost under softmax(alpha) of every available cost model."""
    probs = edge_probs(state.alpha.detach())
    return {m: float(model.expected(probs)) for m, model in problem.costs.items()}


def observe(problem: SearchProblem, state: BilevelState, snapshot_every: int) -> None:
    """Alpha snapshots and periodic validation of the supernet (for the plots)."""
    b, step = problem.budget, state.step
    if step == 1 or step % snapshot_every == 0 or step == b.steps:
        alpha = state.alpha.detach().cpu().numpy().ravel()
        state.snapshots.append({"step": step, "alpha": np.round(alpha, 5).tolist()})
    if (b.eval_every and step % b.eval_every == 0) or step == b.steps:
        n = b.eval_images
        probs = edge_probs(state.alpha.detach())
        acc = supernet_accuracy(state.net, probs, problem.data.val_x[:n], problem.data.val_y[:n])
        arch = derive_arch(problem, state.probs())
        state.tried.append(tried_entry(problem, arch, acc, f"supernet at step {step}"))
