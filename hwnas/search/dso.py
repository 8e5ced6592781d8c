"""DSO-NAS (Zhang, Huang, Wang, "You Only Search Once: Single Shot Neural Architecture Search via
Direct Sparse Optimization", arXiv 1811.01567; METHODS.md §7) on the ``dso`` space.

NAS as pruning: one scale factor lambda per edge of the completely connected blocks
(:mod:`hwnas.spaces.dso`, whose supernet fixes every op's BN gamma at 1), driven to exact zeros.

1. Pretrain: ``warmup_steps`` weight steps, every lambda = ``lambda_init``.
2. Sparse search: SGD (Nesterov) on the weights with training batches; after every
   ``w_steps_per_lambda`` of them one lambda step on a validation batch (the paper's second
   split of the training images) by APG with soft thresholding (:func:`apg_step`): exact zeros,
   lambda >= 0, no weight decay on lambda.
   Latency-aware L1 (the paper's adaptive latency, priced by the LUT instead of timed): edge e's
   L1 multiplier grows with what its removal saves, ``sum_c DeltaLUT_c(e) / budget_c``
   (:func:`~hwnas.spaces.dso.edge_savings`: the edge and every edge its removal leaves dead),
   normalised to [0, 1] over the surviving edges and mapped to [``multiplier_floor``, 1] (the
   others clipped into it), refreshed every ``refresh_every`` lambda steps. At equal task
   gradients expensive edges die first.
3. Prune: edges with lambda == 0 go, with every edge left without a path in or out.
4. Budget [R] (the paper sets gamma_l1 by hand): the last ``final_fraction`` of the sparse steps
   are replayed as *probes* from the state before them, each at one gamma_l1, then pruned. If the
   paper's gamma_l1 leaves a budget broken, gamma is raised (:func:`bisect_gamma`) until the
   pruned network fits, and the smallest fitting gamma's probe is the result. Every probe is in
   ``info["bisection"]``; probes after the first cost their steps on top of ``steps``
   (``info["steps"]``).
5. Retrain from scratch: the pipeline's final training of the own architecture.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search import checkpoint as ck
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult, Tried
from hwnas.search.trainer import BatchStream, cosine_lr, make_sgd, set_lr
from hwnas.spaces.dso import edge_savings, surviving

log = logging.getLogger(__name__)
LOGS = ("history", "snapshots", "tried")


@dataclass(frozen=True)
class DSOConfig:
    """Hyperparameters; the defaults are the paper's CIFAR search (``Cifar/config/cfgs.py``).

    Attributes:
        gamma_l1: L1 weight on lambda (CIFAR 1e-3, ImageNet 1e-2): the first probe's; raised
            by the bisection when the pruned network breaks a budget.
        lambda_lr: APG step size (the weights' lr, 0.1, in the paper), cosine-decayed with it.
        lambda_momentum: APG momentum mu (0.9).
        lambda_init: initial lambda (1).
        w_steps_per_lambda: weight batches per lambda batch (CIFAR: ``transform_num`` 5, one
            lambda batch after every 4 weight batches; ImageNet alternates: 1).
        latency_aware: scale each edge's L1 by its saving (False: plain DSO, all 1).
        multiplier_floor: the cheapest edge's multiplier (the paper maps savings to [0.5, 1]).
        refresh_every: lambda steps between multiplier refreshes (the paper: every epoch).
        final_fraction: share of the sparse steps each probe replays [R].
        max_probes: probes of the gamma bisection, the first at ``gamma_l1`` included [R].
        gamma_tolerance: bisect until the fitting and failing gammas are this close [R].
        snapshot_every: steps between lambda snapshots (``alpha.png``).
    """

    gamma_l1: float = 1e-3
    lambda_lr: float = 0.1
    lambda_momentum: float = 0.9
    lambda_init: float = 1.0
    w_steps_per_lambda: int = 4
    latency_aware: bool = True
    multiplier_floor: float = 0.5
    refresh_every: int = 10
    final_fraction: float = 0.25
    max_probes: int = 8
    gamma_tolerance: float = 0.05
    snapshot_every: int = 25

    def __post_init__(self) -> None:
        rules = {
            "gamma_l1 >= 0": self.gamma_l1 >= 0,
            "lambda_lr > 0 and lambda_init > 0": min(self.lambda_lr, self.lambda_init) > 0,
            "0 <= lambda_momentum < 1": 0 <= self.lambda_momentum < 1,
            "0 < multiplier_floor <= 1": 0 < self.multiplier_floor <= 1,
            "0 < final_fraction <= 1": 0 < self.final_fraction <= 1,
            "gamma_tolerance > 0": self.gamma_tolerance > 0,
            "counts >= 1": min(self.w_steps_per_lambda, self.refresh_every, self.max_probes) >= 1,
        }
        if not all(rules.values()):
            broken = ", ".join(rule for rule, ok in rules.items() if not ok)
            raise UserError(f"dso settings must satisfy: {broken}")


def soft_threshold(z: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """``sign(z) * max(|z| - threshold, 0)``: the proximal map of ``threshold * |z|`` (exact 0s)."""
    return np.sign(z) * np.maximum(np.abs(z) - threshold, 0.0)


def apg_step(
    lam: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, l1: np.ndarray, mu: float
) -> tuple[np.ndarray, np.ndarray]:
    """One APG step (the paper's NAG form): ``z = S(lam - lr grad, lr l1)``,
    ``v = z - lam + mu v``, ``lam = max(z + mu v, 0)``; ``l1`` per edge (gamma * multiplier).
    Returns (lam, v)."""
    z = soft_threshold(lam - lr * grad, lr * l1)
    velocity = z - lam + mu * velocity
    return np.maximum(z + mu * velocity, 0.0), velocity


def multipliers(
    savings: np.ndarray, floor: float, among: Optional[np.ndarray] = None
) -> np.ndarray:
    """Savings normalised to [0, 1] over the edges ``among`` (default all; the paper: the
    surviving ones), mapped to [floor, 1] and clipped there (all 1 when they are equal)."""
    ref = savings[among] if among is not None and among.any() else savings
    low, high = float(ref.min()), float(ref.max())
    if high - low <= 1e-12 * max(abs(high), 1.0):
        return np.ones_like(savings)
    return np.clip(floor + (1.0 - floor) * (savings - low) / (high - low), floor, 1.0)


def bisect_gamma(
    fits: Callable[[float], bool], start: float, zero_all: float, max_probes: int, tol: float
) -> Optional[float]:
    """The smallest gamma found with ``fits(gamma)`` in ``max_probes`` calls (None: none fits).

    ``start`` first; if it fails, ``zero_all`` (where the threshold alone zeroes every lambda),
    doubled until it fits; then geometric bisection between the largest failing and the smallest
    fitting gamma, at most a factor 4 down per probe, until they are within ``1 + tol``.
    """
    calls = [0]

    def test(gamma: float) -> bool:
        calls[0] += 1
        return fits(gamma)

    if test(start):
        return start
    lo, gamma, hi = start, max(2 * start, zero_all), None
    while hi is None and calls[0] < max_probes:
        if test(gamma):
            hi = gamma
        else:
            lo, gamma = gamma, 2 * gamma
    while hi is not None and calls[0] < max_probes and hi > lo * (1 + tol):
        mid = max(math.sqrt(lo * hi), hi / 4)
        hi, lo = (mid, lo) if test(mid) else (hi, mid)
    return hi


class _State:
    """What changes during the search (all of it goes into checkpoints and probe restarts)."""

    def __init__(self, problem: SearchProblem, config: DSOConfig) -> None:
        b = problem.budget
        torch.manual_seed(b.seed)
        self.net = problem.space.build_supernet(seed=b.seed)
        params = [p for p in self.net.parameters() if p.requires_grad]  # BN gamma is fixed
        self.opt = make_sgd(params, b.lr, b.momentum, b.weight_decay)
        self.lam = np.full(problem.space.alpha_shape, config.lambda_init)
        self.velocity, self.mult = np.zeros_like(self.lam), np.ones_like(self.lam)
        self.step, self.lambda_steps = 0, 0
        self.logs: dict[str, list] = {name: [] for name in LOGS}

    def arrays(self) -> dict[str, np.ndarray]:
        out = {**ck.module_arrays("net", self.net), **ck.optimizer_arrays("opt", self.opt)}
        mine = {"lam": self.lam, "velocity": self.velocity, "mult": self.mult}
        return {**out, **{k: v.copy() for k, v in mine.items()}}

    def meta(self) -> dict:
        logs = {name: list(rows) for name, rows in self.logs.items()}
        return {"step": self.step, "lambda_steps": self.lambda_steps, **logs}

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        arrays = {k: v.copy() for k, v in arrays.items()}  # the optimizer keeps what it is given
        ck.load_module_arrays("net", self.net, arrays)
        ck.load_optimizer_arrays("opt", self.opt, arrays)
        self.lam, self.velocity, self.mult = arrays["lam"], arrays["velocity"], arrays["mult"]
        self.step, self.lambda_steps = meta["step"], meta["lambda_steps"]
        self.logs = {name: list(meta[name]) for name in LOGS}


@dataclass(frozen=True)
class _Plan:
    """Steps: pretrain [0, warmup), sparse [warmup, steps), replayed by probes [final, steps)."""

    warmup: int
    steps: int
    period: int  # weight steps per lambda step
    final: int

    @classmethod
    def of(cls, budget, config: DSOConfig) -> _Plan:
        sparse = budget.steps - budget.warmup_steps
        period = max(1, min(config.w_steps_per_lambda, sparse))
        replay = min(sparse, max(period, math.ceil(config.final_fraction * sparse)))
        return cls(budget.warmup_steps, budget.steps, period, budget.steps - replay)

    def lambda_step(self, t: int) -> bool:
        return t >= self.warmup and (t - self.warmup) % self.period == self.period - 1


def _refresh(problem: SearchProblem, config: DSOConfig, state: _State) -> None:
    """Multipliers from the normalised savings ``sum_c DeltaLUT_c(e) / limit_c``."""
    if config.latency_aware and problem.constraints:
        cost = lambda arch: sum(c.value(arch) / c.limit for c in problem.constraints)  # noqa: E731
        live = problem.space.arch_vector(surviving(state.lam)).ravel() > 0
        savings = edge_savings(cost, state.lam > 0)
        state.mult = multipliers(savings, config.multiplier_floor, among=live)


def _step(problem, config: DSOConfig, state: _State, plan: _Plan, gamma: float, data) -> dict:
    """One weight step and, when due, one lambda step; returns the history row."""
    b, t = problem.budget, state.step
    decay = cosine_lr(1.0, t, b.steps)
    set_lr(state.opt, b.lr * decay)
    x, y = data[0].batch(t)
    ce = nn.functional.cross_entropy(state.net(x, torch.from_numpy(state.lam).float()), y)
    state.opt.zero_grad(set_to_none=True)
    ce.backward()
    state.opt.step()
    row = {"step": t, "ce": float(ce.detach()), "gamma_l1": gamma}
    if plan.lambda_step(t):
        lam = torch.tensor(state.lam, dtype=torch.float32, requires_grad=True)
        xv, yv = data[1].batch(state.lambda_steps)
        ce_val = nn.functional.cross_entropy(state.net(xv, lam), yv)
        (grad,) = torch.autograd.grad(ce_val, lam, allow_unused=True)  # None: no edge left
        g = np.zeros(lam.shape) if grad is None else grad.numpy().astype(np.float64)
        l1, mu = gamma * state.mult, config.lambda_momentum
        lr = config.lambda_lr * decay
        state.lam, state.velocity = apg_step(state.lam, g, state.velocity, lr, l1, mu)
        state.lambda_steps += 1
        arch = surviving(state.lam)
        row.update(ce_val=float(ce_val.detach()), alive=int((state.lam > 0).sum()))
        row.update({f"disparity_{c.metric}": c.disparity(arch) for c in problem.constraints})
        if state.lambda_steps % config.refresh_every == 0:
            _refresh(problem, config, state)
    state.step += 1
    if state.step % config.snapshot_every == 0 or state.step == b.steps:
        state.logs["snapshots"].append(
            {"step": state.step, "alpha": np.round(state.lam, 5).tolist()}
        )
    return row


@torch.no_grad()
def _tried(problem: SearchProblem, state: _State, note: str) -> dict:
    """The pruned architecture, its costs and the supernet's validation accuracy (BN in batch
    statistics) at the current lambda."""
    n, lam, correct = problem.budget.eval_images, torch.from_numpy(state.lam).float(), 0
    x, y = problem.data.val_x[:n], problem.data.val_y[:n]
    for i in range(0, len(x), 250):
        correct += int((state.net(x[i : i + 250], lam).argmax(1) == y[i : i + 250]).sum())
    arch = surviving(state.lam)
    return {
        "arch": problem.space.format_arch(arch),
        "costs": problem.arch_costs(arch),
        "val_accuracy": correct / max(len(x), 1),
        "note": note,
    }


def run(problem: SearchProblem, config: DSOConfig, hooks: Hooks) -> SearchResult:
    """DSO-NAS search; see the module docstring."""
    b, plan = problem.budget, _Plan.of(problem.budget, config)
    state = _State(problem, config)
    _refresh(problem, config, state)
    if hooks.checkpoint is not None and (loaded := hooks.checkpoint.load("search")) is not None:
        state.restore(*loaded)
        log.info("dso resumed at step %d", state.step)
    data = (
        BatchStream(problem.data.train_x, problem.data.train_y, b.batch_size, b.seed),
        BatchStream(problem.data.val_x, problem.data.val_y, b.batch_size, b.seed + 1),
    )

    def save() -> None:
        if hooks.checkpoint is not None:
            hooks.checkpoint.save("search", state.arrays(), state.meta())

    while state.step < plan.final:
        state.logs["history"].append(_step(problem, config, state, plan, config.gamma_l1, data))
        if b.eval_every and state.step % b.eval_every == 0:
            state.logs["tried"].append(_tried(problem, state, f"supernet at step {state.step}"))
        status = {"ce": state.logs["history"][-1]["ce"], "alive": int((state.lam > 0).sum())}
        hooks.step_done(state.step, b.steps, status, save, b.checkpoint_every)
    save()  # the probes restart from here (and so does a resumed run)
    return _bisect(problem, config, state, plan, data, hooks)


def _bisect(problem, config: DSOConfig, state: _State, plan: _Plan, data, hooks) -> SearchResult:
    """Probes from the state before the last ``final_fraction`` of the steps (docstring, 4.)."""
    base = (state.arrays(), state.meta())
    probes: dict[float, dict] = {}

    def probe(gamma: float) -> bool:
        state.restore(*base)
        rows = []
        while state.step < plan.steps:
            rows.append(_step(problem, config, state, plan, gamma, data))
            hooks.step_done(state.step, plan.steps, {"gamma_l1": gamma}, lambda: None, 0)
        arch = surviving(state.lam)
        costs = {c.metric: c.value(arch) for c in problem.constraints}
        probes[gamma] = {
            "gamma_l1": gamma,
            "of_budget": {c.metric: costs[c.metric] / c.limit for c in problem.constraints},
            "costs": costs,
            "fits": all(c.satisfied(arch) for c in problem.constraints),
            "edges": sum(map(len, arch)),
            "arch": problem.space.format_arch(arch),
            "tried": _tried(problem, state, f"pruned at gamma_l1 {gamma:.4g}"),
            "run": (state.lam.copy(), rows, state.logs["snapshots"]),
        }
        return probes[gamma]["fits"]

    replayed = range(plan.final, plan.steps)
    steps = [t for t in replayed if plan.lambda_step(t)]
    lr_sum = sum(config.lambda_lr * cosine_lr(1.0, t, plan.steps) for t in steps)
    zero_all = float(base[0]["lam"].max() / max(lr_sum * base[0]["mult"].min(), 1e-12))
    hi = bisect_gamma(probe, config.gamma_l1, zero_all, config.max_probes, config.gamma_tolerance)
    if hi is None:
        log.warning("dso: none of %d gamma_l1 probes met the budget", len(probes))
    worst = {g: max(p["of_budget"].values()) for g, p in probes.items()}
    chosen = hi if hi is not None else min(worst, key=worst.get)  # else the least over budget
    lam, rows, snapshots = probes[chosen]["run"]
    own = surviving(lam)
    tried = tuple(
        Tried(**t) for t in [*base[1]["tried"], *(p.pop("tried") for p in probes.values())]
    )
    steps_info = {"pretrain": plan.warmup, "sparse": plan.steps - plan.warmup}
    steps_info.update(probe=len(replayed), probes=len(probes))
    steps_info["total"] = plan.steps + (len(probes) - 1) * len(replayed)
    info = {
        "gamma_l1": chosen,
        "gamma_l1_start": config.gamma_l1,
        "budget_met": hi is not None,
        "bisection": [{k: v for k, v in p.items() if k != "run"} for p in probes.values()],
        "steps": steps_info,
        "multipliers": np.round(base[0]["mult"], 4).tolist(),
        "edges_kept": sum(map(len, own)),
        "own_costs": problem.arch_costs(own),
    }
    history = (*base[1]["history"], *rows)
    return SearchResult(own, history, tried, tuple(snapshots), info, values=np.abs(lam))


SUMMARY = "DSO-NAS: APG-sparse edge scales, latency-aware L1, gamma bisected to the budget"
METHODS.add("dso", MethodSpec(run, DSOConfig, ("edge",), SUMMARY))
