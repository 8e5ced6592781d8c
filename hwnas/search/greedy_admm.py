"""Greedy-ADMM (FGA-NAS: Chen, Zhang, Li, Chen, Huang, "FGA-NAS: Fast Resource-Constrained
Architecture Search by Greedy-ADMM Algorithm", IJCNN 2022; METHODS.md §1).

Single-level problem: minimise ``L_train(w, alpha)`` over weights and architecture parameters
jointly, subject to ``sum_i h_ci ||alpha_i||_0 <= r_c`` for every constraint c. One copy
``beta_c`` of alpha and one dual variable ``m_c`` per constraint; one ADMM iteration per step:

1. beta-step (closed form, per constraint): ``v = alpha + m_c / rho``; keep the entries of
   largest total value under ``sum h_ci theta_i <= r_c`` and set ``beta_c = theta * v``. The
   slides' value of an entry is ``v_i^2`` (their "argmin" is a sign typo, METHODS.md §1.2).
   Here it is the loss's own preference [R], :func:`~hwnas.search.admm_values.knapsack_values`:
   both supernets make the loss blind to a common scale of one block's (layer's) gates (BN
   after the gated projection; per-layer L1 mixing), so ``v_i^2`` ranked blocks by a scale set
   by the initial value and the penalty, not the loss. Channel spaces use the Fisher (OBD)
   saliency ``F_i v_i^2``, layer-wise spaces ``v^2`` in the layer's mixing proportions. The
   knapsacks are solved greedily: on channel spaces the 0-1 knapsack over middle channels with
   a per-block setup cost and the one-channel-per-block guard
   (:func:`~hwnas.search.knapsack.greedy_knapsack`); on layer-wise spaces the multiple-choice
   knapsack (:func:`~hwnas.search.knapsack.greedy_mckp`).
2. (w, alpha)-step: one SGD step on ``CE + sum_c rho/2 ||alpha - beta_c + m_c/rho||^2`` (for
   alpha, the quadratic penalty is stepped exactly: :func:`admm_alpha_step`).
3. dual step: ``m_c += rho (alpha - beta_c)``; rho grows geometrically to ``rho_max`` [R].

alpha are gates: the supernet multiplies each op's (layer-wise) or middle channel's (channel-wise)
output by its alpha. The first ``warmup_steps`` train w and alpha on the loss alone. At the end
:func:`derive_own` derives the method's own architecture, which meets every constraint by
construction (channel spaces: the channels kept by every beta_c; layer-wise: a last beta-step,
jointly against all constraints when there are several); the pipeline then fills the budget left
if the run asks, ranking changes by the same values (:mod:`hwnas.search.finalize`).
``train_alpha=False`` is the null-alpha control.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from hwnas.costs.tables import CostTable
from hwnas.search.admm_values import (
    arch_from_start,
    goal_arch,
    knapsack_step,
    knapsack_values,
    mixing_weights,
    own_start,
)
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult, Tried
from hwnas.search.checkpoint import (
    load_module_arrays,
    load_optimizer_arrays,
    module_arrays,
    optimizer_arrays,
)
from hwnas.search.trainer import BatchStream, cosine_lr, make_sgd, set_lr

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GreedyADMMConfig:
    """Hyperparameters (METHODS.md §1.5; none are given by the paper, these are [R]).

    Attributes:
        rho0: penalty at the first ADMM step.
        rho_growth: rho is multiplied by this after every ADMM step ...
        rho_max: ... up to this cap.
        lr_alpha: step size of alpha: RMS-normalised loss step (cosine-decayed) and proximal
            penalty step.
        alpha_init: initial value of every gate ...
        init_noise: ... times ``1 + init_noise * N(0, 1)``, which breaks the ties that would
            otherwise make every layer-wise beta-step pick the cheapest op.
        support_threshold: a channel counts as kept in the logged per-step architecture if
            ``|alpha_i| >= support_threshold * alpha_init`` (Fig. 4 disparities).
        snapshot_every: steps between alpha snapshots (Fig. 4 distribution plot).
        train_alpha: False is the null-alpha control: alpha keeps its initial noise (no loss
            step, no penalty step, no gradient statistics, so the knapsack values are ``v**2``
            of noise) while the weights, beta-steps and dual steps run as usual.
    """

    rho0: float = 0.5
    rho_growth: float = 1.05
    rho_max: float = 50.0
    lr_alpha: float = 0.1
    alpha_init: float = 1.0
    init_noise: float = 0.01
    support_threshold: float = 0.5
    snapshot_every: int = 25
    train_alpha: bool = True


def beta_step(
    v: np.ndarray, table: CostTable, limit: float, values: Optional[np.ndarray] = None
) -> np.ndarray:
    """theta (0/1, shape of ``v``) of one constraint's greedy knapsack on ``values`` (default
    ``v**2``, the slides' values; the search passes :func:`knapsack_values`)."""
    return knapsack_step(v**2 if values is None else values, table, limit)


class _State:
    """Everything that changes during the search (and goes into checkpoints)."""

    def __init__(self, problem: SearchProblem, config: GreedyADMMConfig) -> None:
        b = problem.budget
        torch.manual_seed(b.seed)
        self.net = problem.space.build_supernet(seed=b.seed)
        noise = np.random.default_rng(b.seed).standard_normal(problem.space.alpha_shape)
        init = config.alpha_init * (1.0 + config.init_noise * noise)
        self.alpha = nn.Parameter(torch.from_numpy(init).float())
        self.duals = [np.zeros(self.alpha.shape) for _ in problem.constraints]
        self.grad_sq = np.zeros(self.alpha.shape)
        self.opt_w = make_sgd(self.net.parameters(), b.lr, b.momentum, b.weight_decay)
        self.rho, self.step = config.rho0, 0
        self.history: list[dict] = []
        self.snapshots: list[dict] = []
        self.tried: list[dict] = []

    def arrays(self) -> dict[str, np.ndarray]:
        out = {**module_arrays("net", self.net), **optimizer_arrays("opt", self.opt_w)}
        out["alpha"] = self.alpha.detach().numpy().copy()
        out["grad_sq"] = self.grad_sq
        out.update({f"dual.{c}": m for c, m in enumerate(self.duals)})
        return out

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        load_module_arrays("net", self.net, arrays)
        with torch.no_grad():
            self.alpha.copy_(torch.from_numpy(arrays["alpha"]))
        self.duals = [arrays[f"dual.{c}"] for c in range(len(self.duals))]
        load_optimizer_arrays("opt", self.opt_w, arrays)
        self.grad_sq = arrays["grad_sq"]
        self.rho, self.step = meta["rho"], meta["step"]
        self.history, self.snapshots, self.tried = meta["history"], meta["snapshots"], meta["tried"]


def run(problem: SearchProblem, config: GreedyADMMConfig, hooks: Hooks) -> SearchResult:
    """Greedy-ADMM search; see the module docstring."""
    b = problem.budget
    state = _State(problem, config)
    if hooks.checkpoint is not None and (loaded := hooks.checkpoint.load("search")) is not None:
        state.restore(*loaded)
        log.info("greedy-admm resumed at step %d", state.step)
    stream = BatchStream(problem.data.train_x, problem.data.train_y, b.batch_size, b.seed)

    def save() -> None:
        if hooks.checkpoint is not None:
            meta = {
                "step": state.step,
                "rho": state.rho,
                "history": state.history,
                "snapshots": state.snapshots,
                "tried": state.tried,
            }
            hooks.checkpoint.save("search", state.arrays(), meta)

    while state.step < b.steps:
        row = _one_step(problem, config, state, stream)
        state.history.append(row)
        state.step += 1
        _observe(problem, config, state)
        hooks.step_done(
            state.step, b.steps, {"ce": row["ce"], "rho": state.rho}, save, b.checkpoint_every
        )
    return _derive(problem, config, state)


def admm_alpha_step(
    alpha: np.ndarray, step: np.ndarray, betas: list, duals: list, rho: float, lr: float
) -> np.ndarray:
    """The alpha half of the (w, alpha)-step: the loss step ``step`` (already scaled) and an exact
    (proximal) step of size ``lr`` on the penalty ``sum_c rho/2 ||alpha - beta_c + m_c/rho||^2``,
    stable for any ``rho * lr`` (a plain gradient step would need ``rho * lr * n_c < 2``)."""
    pull = sum(b - m / rho for b, m in zip(betas, duals))
    return (alpha - step + lr * rho * pull) / (1.0 + lr * rho * len(betas))


def loss_step(
    state: _State, grad: np.ndarray, config: GreedyADMMConfig, budget: Any, alpha: np.ndarray
) -> np.ndarray:
    """RMS-normalised loss step on alpha (RMSProp, decay 0.99), decayed like the weights' lr.

    Gate gradients of a supernet are far from unit scale and noisy; normalising makes
    ``lr_alpha`` mean the same on every space, and the cosine decay lets the penalty settle
    alpha onto the consensus of the beta_c at the end. On layer-wise spaces the loss depends only
    on each layer's gate proportions (:func:`mixing_weights`), so the step is also scaled by the
    layer's mean ``|alpha|``: a relative step, which stays small when the penalty has shrunk the
    layer's gates (an absolute step would then reshuffle its op every step)."""
    state.grad_sq = 0.99 * state.grad_sq + 0.01 * grad**2
    scale = cosine_lr(config.lr_alpha, state.step, budget.steps)
    step = scale * grad / (np.sqrt(state.grad_sq / (1 - 0.99 ** (state.step + 1))) + 1e-8)
    if alpha.ndim == 2:
        step = step * np.mean(np.abs(alpha), axis=1, keepdims=True)
    return step


def _one_step(problem: SearchProblem, config: GreedyADMMConfig, state: _State, stream) -> dict:
    b, alpha = problem.budget, state.alpha
    x, y = stream.batch(state.step)
    set_lr(state.opt_w, cosine_lr(b.lr, state.step, b.steps))
    ce = nn.functional.cross_entropy(state.net(x, mixing_weights(alpha, problem.space)), y)
    state.opt_w.zero_grad(set_to_none=True)
    alpha.grad = None
    ce.backward()
    state.opt_w.step()
    a, grad = alpha.detach().numpy().astype(np.float64), alpha.grad.numpy().astype(np.float64)
    row = {"step": state.step, "ce": float(ce.detach()), "rho": state.rho}
    if not config.train_alpha:
        grad = None
    if state.step >= b.warmup_steps and problem.constraints:
        betas = []
        for c, constraint in enumerate(problem.constraints):
            v = a + state.duals[c] / state.rho
            values = _values(problem, state, v, a, config)
            betas.append(beta_step(v, constraint.cost.table, constraint.limit, values) * v)
        if grad is not None:
            step = loss_step(state, grad, config, b, a)
            a = admm_alpha_step(a, step, betas, state.duals, state.rho, config.lr_alpha)
        for c, constraint in enumerate(problem.constraints):
            state.duals[c] = state.duals[c] + state.rho * (a - betas[c])
            row[f"gap_{constraint.metric}"] = float(np.max(np.abs(a - betas[c])))
        state.rho = min(state.rho * config.rho_growth, config.rho_max)
    elif grad is not None:
        a = a - loss_step(state, grad, config, b, a)
    with torch.no_grad():
        alpha.copy_(torch.from_numpy(a))
    arch = goal_arch(problem, a, config.support_threshold * config.alpha_init)
    for constraint in problem.constraints:
        row[f"disparity_{constraint.metric}"] = constraint.disparity(arch)
    return row


def _observe(problem: SearchProblem, config: GreedyADMMConfig, state: _State) -> None:
    """Alpha snapshots and periodic validation of the supernet (for the plots)."""
    b, step = problem.budget, state.step
    alpha = state.alpha.detach().numpy()
    if step == 1 or step % config.snapshot_every == 0 or step == b.steps:
        state.snapshots.append({"step": step, "alpha": np.round(alpha.ravel(), 5).tolist()})
    if (b.eval_every and step % b.eval_every == 0) or step == b.steps:
        arch = goal_arch(problem, alpha, config.support_threshold * config.alpha_init)
        n = b.eval_images
        gates = mixing_weights(state.alpha.detach(), problem.space)
        acc = _supernet_accuracy(state.net, gates, problem.data.val_x[:n], problem.data.val_y[:n])
        state.tried.append(
            {
                "arch": problem.space.format_arch(arch),
                "costs": problem.arch_costs(arch),
                "val_accuracy": acc,
                "note": f"supernet with gates alpha at step {step}",
            }
        )


@torch.no_grad()
def _supernet_accuracy(
    net: nn.Module, alpha: torch.Tensor, x: torch.Tensor, y: torch.Tensor
) -> float:
    """Validation accuracy of the gated supernet. BN uses batch statistics: its running
    statistics lag the moving gates (one-shot NAS re-estimates them for the same reason)."""
    net.train()
    correct = 0
    for i in range(0, len(x), 250):
        correct += int((net(x[i : i + 250], alpha).argmax(1) == y[i : i + 250]).sum())
    return correct / max(len(x), 1)


def _values(problem: SearchProblem, state: _State, v, alpha, config) -> np.ndarray:
    """Knapsack values of ``v`` (:func:`~hwnas.search.admm_values.knapsack_values`)."""
    fisher = state.grad_sq if config.train_alpha else None
    return knapsack_values(v, alpha, fisher, problem.space.relaxation)


def derive_own(
    problem: SearchProblem, config: GreedyADMMConfig, state: _State
) -> tuple[object, np.ndarray]:
    """The method's own architecture (no repair, no fill; meets every constraint) and its
    alpha-shaped preferences ``values`` (the knapsack values of alpha itself) for a shared
    repair/fill step. See :func:`~hwnas.search.admm_values.own_start`."""
    start, values = _own_start(problem, config, state)
    return arch_from_start(problem, start), values


def _own_start(problem: SearchProblem, config: GreedyADMMConfig, state: _State) -> tuple:
    alpha = state.alpha.detach().numpy().astype(np.float64)
    values = _values(problem, state, alpha, alpha, config)
    per_constraint = [
        _values(problem, state, alpha + state.duals[c] / state.rho, alpha, config)
        for c in range(len(problem.constraints))
    ]
    return own_start(problem, per_constraint, values), values


def _derive(problem: SearchProblem, config: GreedyADMMConfig, state: _State) -> SearchResult:
    own, values = derive_own(problem, config, state)
    info = {
        "final_rho": state.rho,
        "alpha_shape": list(values.shape),
        "own_arch": problem.space.format_arch(own),
        "own_costs": problem.arch_costs(own),
        "derivation": own_start.__doc__.splitlines()[0],
    }
    tried = tuple(Tried(**t) for t in state.tried)
    history, snapshots = tuple(state.history), tuple(state.snapshots)
    return SearchResult(own, history, tried, snapshots, info, values=values)


METHODS.add(
    "greedy-admm",
    MethodSpec(
        run,
        GreedyADMMConfig,
        ("choice", "channel"),
        "FGA-NAS Greedy-ADMM: hard constraints by per-constraint greedy knapsack",
    ),
)
