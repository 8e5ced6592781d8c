"""ISTA-NAS (Yang, Li, You, Wang, Qian, Lin, "ISTA-NAS: Efficient and Consistent Neural
Architecture Search by Sparse Coding", NeurIPS 2020; METHODS.md §4) on the ``darts`` cells,
with the problem's budgets enforced on every recovered architecture.

Compressed search. Node j of a cell type (8 nodes: 4 normal, then 4 reduction) has
``n_j = (j + 2) * 7`` candidates (source, op), ``none`` excluded, and a connection vector z_j
that must be 2-sparse. The search trains ``b_j`` in R^m (m = 7, init ``1e-3 N(0, 1)``) under a
fixed random measurement matrix ``A_j ~ U[0, 1)^(m x n_j)``; ``z_j = argmin 1/2 ||A_j z - b_j||^2
+ lam ||z||_1`` is recovered by our FISTA (:func:`~hwnas.search.sparse_coding.fista_lasso`,
warm-started from the previous z). Only the 2 ops of the support S_j run, weighted by
``w_S = b_j^T A_S - z_S^T E_SS``, ``E = A^T A - I`` (Eq. 11: linear in b, trained by backprop).

Epoch. The budget counts steps: an epoch here is one pass over the search's training images
(``len(train) // batch_size`` steps, the trainer's batch order); ``recover_every`` overrides it.
z is recovered before the first step, after every epoch and after the last step.

Modes (``mode``):

* ``two-stage`` (Alg. 1): per step an Adam step on b on a validation batch (first order), then
  an SGD step on the weights on a training batch (only the support's ops get gradients).
* ``one-stage`` (Alg. 2): b and the weights step on the same training batch. Every candidate op
  ends in an affine BN frozen at gamma = 1, beta = 0 (the identity gets one). At a recovery, a
  node whose z moved by at most ``freeze_tol`` (L2) since the last one freezes: its b and
  support stay, its ops' BN affine become trainable; with every node frozen the search stops and
  the weights keep training. At the end the weights are folded into those BNs (``gamma <- w
  gamma``, ``beta <- w beta``, Eq. 12): a plain network with the same outputs
  (``info["fold_max_abs_diff"]``). The pipeline retrains the genotype from scratch, so the
  folded network itself is not delivered.

Support. A ``darts`` genotype wires each node to two *different* inputs, so S_j is the pair of
entries on different sources with the largest ``|z_a| + |z_b|`` (the reference's top-2 |z|,
whenever those two lie on different sources).

Budgets. The one-stage reference discards a recovered architecture of 3.7 MB of parameters or
more. Here every constraint of the problem (LUT latency, FLOPs, params) is checked at every
recovery: supports whose genotype breaks a budget are rejected and the next-best that fits is
taken, i.e. the genotype of largest |z| mass ``sum_j |z_a| + |z_b|`` over the 8 nodes that meets
every budget (exact, by branch and bound: :func:`~hwnas.search.sparse_coding.best_choice`;
frozen nodes keep their support). The weights then train on feasible sub-networks only, and the
returned genotype meets every budget whenever one does. ``info["budget_rejections"]`` counts the
recoveries whose own support was rejected. ``values`` are |z| laid out as (28, 8); snapshots
hold z.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hwnas.errors import UserError
from hwnas.search import checkpoint as ckpt
from hwnas.search import sparse_coding as sc
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult, Tried
from hwnas.search.bilevel import tried_entry
from hwnas.search.cell_repair import NODES, node_view
from hwnas.search.distributed import current
from hwnas.search.trainer import BatchStream, cosine_lr, make_sgd, set_lr
from hwnas.spaces import darts_genotype as gt
from hwnas.spaces.darts_geometry import STEPS

log = logging.getLogger(__name__)
MODES = ("two-stage", "one-stage")


@dataclass(frozen=True)
class ISTAConfig:
    """Hyperparameters: the reference two-stage script (``main_search.sh``, METHODS.md §4.2)
    unless marked [R].

    Attributes:
        mode: ``"two-stage"`` or ``"one-stage"`` (module docstring).
        measurements: m, the rows of every A_j (``proj_dims`` = 7).
        lasso_lambda: lam of the LASSO (1e-5).
        arch_lr: Adam learning rate of b (6e-4 with the script's batch 256; the code's default
            is 3e-4 at batch 64).
        arch_betas, arch_weight_decay: Adam on b ((0.5, 0.999), 1e-3).
        grad_clip: max global norm of the weight gradient (5).
        recover_every: steps between recoveries (None: one epoch, see the module docstring).
        freeze_tol: one-stage: a node freezes when ``||z_new - z_old||_2 <= freeze_tol`` (1e-3;
            absolute, in the units of z, which start at the scale of b: 1e-3).
        budget_aware: reject supports that break a budget [R] (False: the paper's support only;
            the shared repair then meets the budgets after the search).
        fista_max_iter: FISTA's iteration cap per recovery [R] (the exact finish of
            :func:`~hwnas.search.sparse_coding.fista_lasso` usually ends it within a few
            hundred steps; ``info["fista_iterations_max"]`` says whether it was reached).
        support_visits: cap on the options the budget search visits per recovery [R].
    """

    mode: str = "two-stage"
    measurements: int = 7
    lasso_lambda: float = 1e-5
    arch_lr: float = 6e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    grad_clip: float = 5.0
    recover_every: Optional[int] = None
    freeze_tol: float = 1e-3
    budget_aware: bool = True
    fista_max_iter: int = 20_000
    support_visits: int = 200_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch_betas", tuple(float(b) for b in self.arch_betas))
        if self.mode not in MODES:
            raise UserError(f"ista mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.measurements < 1 or self.lasso_lambda < 0 or self.arch_lr <= 0:
            raise UserError("ista: measurements >= 1, lasso_lambda >= 0, arch_lr > 0")
        if self.recover_every is not None and self.recover_every < 1:
            raise UserError("ista: recover_every must be at least 1 step (or unset: one epoch)")
        if self.freeze_tol < 0 or self.fista_max_iter < 1 or self.support_visits < 1:
            raise UserError("ista: freeze_tol >= 0, fista_max_iter >= 1, support_visits >= 1")


class _State:
    """Everything that changes during the search (and goes into checkpoints)."""

    def __init__(self, problem: SearchProblem, config: ISTAConfig) -> None:
        b, device = problem.budget, current().device
        torch.manual_seed(b.seed)
        net = problem.space.build_supernet(b.seed)
        self.net = (net.make_bn_affine_() if config.mode == "one-stage" else net).to(device)
        rng = np.random.default_rng(b.seed)
        self.A = sc.measurement_matrices(rng, config.measurements)
        b0 = 1e-3 * rng.standard_normal((NODES, config.measurements))
        self.b = nn.Parameter(torch.tensor(b0, dtype=torch.get_default_dtype(), device=device))
        self.opt_w = make_sgd(self.net.parameters(), b.lr, b.momentum, b.weight_decay)
        self.opt_b = torch.optim.Adam([self.b], lr=config.arch_lr, betas=config.arch_betas,
                                      weight_decay=config.arch_weight_decay)  # fmt: skip
        self.z, self.frozen = np.zeros((NODES, sc.WIDTH)), np.zeros(NODES, dtype=bool)
        self.choice = np.zeros(NODES, dtype=np.int64)
        self.meta = {"step": 0, "recoveries": 0, "b_steps": 0, "searching": True, "history": [],
                     "tried": [], "snapshots": [], "rejections": 0, "over": {}, "inexhaustive": 0,
                     "no_fit": 0, "fista_iterations": 0, "all_frozen_at": None}  # fmt: skip
        self._terms()

    def _terms(self) -> None:
        """Picks, A_S and z_S^T E_SS of the current supports."""
        view, a_s, bias = node_view(), [], []
        self.picks = []
        for slot, option in enumerate(self.choice):
            options = view.options[slot]
            s1, o1, s2, o2 = (int(v) for v in options[min(option, len(options) - 1)])
            self.picks.append(((s1, o1), (s2, o2)))
            support = np.array([s1 * sc.OPS + o1 - 1, s2 * sc.OPS + o2 - 1])
            terms = sc.support_terms(self.A[slot], self.z[slot], support)
            a_s.append(terms[0])
            bias.append(terms[1])
        self.a_s = torch.tensor(np.stack(a_s), dtype=self.b.dtype, device=self.b.device)
        self.bias = torch.tensor(np.stack(bias), dtype=self.b.dtype, device=self.b.device)

    def weights(self) -> torch.Tensor:
        """(8, 2) effective weights ``w_S = b^T A_S - z_S^T E_SS`` of the supports (Eq. 11)."""
        return torch.einsum("gm,gms->gs", self.b, self.a_s) - self.bias

    def logits(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return self.net.forward_sparse(x, self.picks, weights)

    def arch(self) -> gt.Genotype:
        return node_view().arch_from_vector(self.choice)

    def step_b(self, grad: torch.Tensor) -> None:
        """Adam on b; frozen nodes' rows do not move."""
        hold = torch.as_tensor(self.frozen, device=self.b.device)
        kept = self.b.detach()[hold].clone()
        self.opt_b.zero_grad(set_to_none=True)
        self.b.grad = grad.masked_fill(hold[:, None], 0.0)
        self.opt_b.step()
        with torch.no_grad():
            self.b[hold] = kept
        self.meta["b_steps"] += 1

    def recover(self, problem: SearchProblem, config: ISTAConfig) -> dict:
        """Recover z (nodes not frozen), freeze (one-stage), choose supports; returns the facts."""
        meta, active = self.meta, ~self.frozen
        b = self.b.detach().cpu().double().numpy()[active]
        z, iters = sc.fista_lasso(self.A[active], b, config.lasso_lambda, self.z[active],
                                  config.fista_max_iter)  # fmt: skip
        newly = np.zeros(NODES, dtype=bool)
        if config.mode == "one-stage" and meta["recoveries"] and meta["b_steps"]:
            newly[active] = np.linalg.norm(z - self.z[active], axis=1) <= config.freeze_tol
        self.z[active] = z
        hold = np.where(self.frozen, self.choice, -1)
        choice, facts = sc.select(problem, self.z, hold, config.budget_aware, config.support_visits)
        changed = int((choice != self.choice).sum())
        self.choice = choice
        self._terms()
        for slot in np.flatnonzero(newly):
            self._freeze(int(slot))
        meta["recoveries"] += 1
        meta["b_steps"] = 0
        meta["fista_iterations"] = max(meta["fista_iterations"], iters)
        meta["rejections"] += facts["rejected"]
        meta["inexhaustive"] += not facts.get("exhaustive", True)
        meta["no_fit"] += not facts.get("fits", True)
        for metric in facts["over"]:
            meta["over"][metric] = meta["over"].get(metric, 0) + 1
        if self.frozen.all() and meta["searching"]:
            meta["searching"], meta["all_frozen_at"] = False, meta["step"]
        return {"recovery": meta["recoveries"], "support_changes": changed,
                "rejected": facts["rejected"], "fista_iterations": iters,
                "frozen_nodes": int(self.frozen.sum())}  # fmt: skip

    def _freeze(self, slot: int) -> None:
        self.frozen[slot] = True
        self.net.unfreeze_bn_(slot >= STEPS, slot % STEPS)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {**ckpt.module_arrays("net", self.net), **ckpt.optimizer_arrays("opt", self.opt_w)}
        out.update(b=self.b.detach().cpu().numpy().copy(), z=self.z, choice=self.choice)
        out["frozen"] = self.frozen
        for key, value in self.opt_b.state.get(self.b, {}).items():
            out[f"adam.{key}"] = value.detach().cpu().numpy().copy()
        return out

    def restore(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        ckpt.load_module_arrays("net", self.net, arrays)
        ckpt.load_optimizer_arrays("opt", self.opt_w, arrays)
        with torch.no_grad():
            self.b.copy_(torch.from_numpy(arrays["b"]))
        adam = {k[5:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("adam.")}
        if adam:  # Adam keeps its step count on the CPU
            self.opt_b.state[self.b] = {
                k: v if k == "step" else v.to(self.b.device) for k, v in adam.items()
            }
        self.z, self.choice, self.meta = arrays["z"].copy(), arrays["choice"].copy(), meta
        for slot in np.flatnonzero(arrays["frozen"]):
            self._freeze(int(slot))
        self._terms()


def _one_step(problem: SearchProblem, config: ISTAConfig, state: _State, streams) -> dict:
    b, ctx, step = problem.budget, current(), state.meta["step"]
    lr = cosine_lr(b.lr, step, b.steps)
    set_lr(state.opt_w, lr)
    row: dict = {"step": step, "lr": lr}
    moves = state.meta["searching"] and step >= b.warmup_steps
    if moves and config.mode == "two-stage":
        x, y = ctx.shard(*streams[1].batch(step))
        loss = F.cross_entropy(state.logits(x, state.weights()), y)
        state.step_b(torch.autograd.grad(loss, [state.b])[0])
        row["ce_val"] = float(loss.detach())
    single = moves and config.mode == "one-stage"
    x, y = ctx.shard(*streams[0].batch(step))
    loss = F.cross_entropy(
        state.logits(x, state.weights() if single else state.weights().detach()), y
    )
    state.opt_w.zero_grad(set_to_none=True)
    state.b.grad = None
    loss.backward()
    nn.utils.clip_grad_norm_(state.net.parameters(), config.grad_clip)
    state.opt_w.step()
    if single:
        state.step_b(state.b.grad)
    row["ce_train"] = float(loss.detach())
    return row


def _observe(problem: SearchProblem, state: _State) -> dict:
    """After a recovery: the arch's disparities, a tried entry, a z snapshot."""
    meta, n, arch = state.meta, problem.budget.eval_images, state.arch()
    accuracy = _accuracy(state, problem.data.val_x[:n], problem.data.val_y[:n])
    meta["tried"].append(tried_entry(problem, arch, accuracy, f"support at step {meta['step']}"))
    meta["snapshots"].append({"step": meta["step"], "alpha": np.round(state.z, 6).ravel().tolist()})
    return {f"disparity_{c.metric}": c.disparity(arch) for c in problem.constraints}


@torch.no_grad()
def _accuracy(state: _State, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the sub-network on ``x`` (its BNs keep no running statistics)."""
    device, w = current().device, state.weights()
    hits = sum(
        int((state.logits(x[i : i + 250].to(device), w).argmax(1).cpu() == y[i : i + 250]).sum())
        for i in range(0, len(x), 250)
    )
    return hits / max(len(x), 1)


def _result(problem: SearchProblem, config: ISTAConfig, state: _State, extra: dict) -> SearchResult:
    meta = state.meta
    info = {
        "method": "ista", "mode": config.mode, "measurements": config.measurements,
        "recoveries": meta["recoveries"], "budget_rejections": meta["rejections"],
        "rejections_by_metric": meta["over"], "support_search_capped": meta["inexhaustive"],
        "no_feasible_support": meta["no_fit"], "fista_iterations_max": meta["fista_iterations"],
        "frozen_nodes": int(state.frozen.sum()), "all_frozen_at_step": meta["all_frozen_at"],
        "z": np.round(state.z, 8).tolist(), **extra,
    }  # fmt: skip
    tried = tuple(Tried(**t) for t in meta["tried"])
    history, snapshots = tuple(meta["history"]), tuple(meta["snapshots"])
    return SearchResult(state.arch(), history, tried, snapshots, info, sc.edge_values(state.z))


def derive_untrained(problem: SearchProblem, config: ISTAConfig) -> SearchResult:
    """The null-alpha control: the support recovered from the initial b (no training)."""
    _check(problem)
    state = _State(problem, config)
    return _result(problem, config, state, {"initial_recovery": state.recover(problem, config)})


def _check(problem: SearchProblem) -> None:
    if problem.space.relaxation != "cell":
        raise UserError(f"ista searches the darts cells, not space {problem.space.name!r}")


def run(problem: SearchProblem, config: ISTAConfig, hooks: Hooks) -> SearchResult:
    """ISTA-NAS search (module docstring)."""
    _check(problem)
    b, data = problem.budget, problem.data
    state = _State(problem, config)
    if hooks.checkpoint is not None and (loaded := hooks.checkpoint.load("search")) is not None:
        state.restore(*loaded)
        log.info("ista resumed at step %d", state.meta["step"])
    else:
        state.meta["initial_recovery"] = state.recover(problem, config)
        state.meta["disparity"] = _observe(problem, state)
    meta = state.meta
    streams = (
        BatchStream(data.train_x, data.train_y, b.batch_size, b.seed),
        BatchStream(data.val_x, data.val_y, b.batch_size, b.seed + 1),
    )
    every = config.recover_every or streams[0].per_epoch

    def save() -> None:
        if hooks.checkpoint is not None:
            hooks.checkpoint.save("search", state.arrays(), meta)

    while meta["step"] < b.steps:
        row = _one_step(problem, config, state, streams)
        meta["step"] += 1
        if meta["searching"] and (meta["step"] % every == 0 or meta["step"] == b.steps):
            row.update(state.recover(problem, config))
            meta["disparity"] = _observe(problem, state)
        meta["history"].append({**row, **meta["disparity"]})
        hooks.step_done(meta["step"], b.steps, {"ce_train": row["ce_train"]}, save,
                        b.checkpoint_every)  # fmt: skip
    extra = {"recover_every_steps": every, "initial_recovery": meta["initial_recovery"]}
    if config.mode == "one-stage":
        extra["fold_max_abs_diff"] = _fold(problem, state)
    return _result(problem, config, state, extra)


@torch.no_grad()
def _fold(problem: SearchProblem, state: _State) -> float:
    """Fold the weights into the BNs; the largest output change it caused on validation images."""
    x = problem.data.val_x[:64].to(current().device)
    state.net.eval()
    w = state.weights()
    before = state.logits(x, w)
    state.net.fold_into_bn_(state.picks, w)
    return float((state.logits(x, torch.ones_like(w)) - before).abs().max())


METHODS.add(
    "ista",
    MethodSpec(
        run,
        ISTAConfig,
        ("cell",),
        "ISTA-NAS: sparse coding of the cell (FISTA), only the support runs; budgets by rejection",
    ),
)
