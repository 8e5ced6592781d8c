"""DSNAS: Discrete SNAS, "Direct Neural Architecture Search without Parameter Retraining" (Hu,
Xie, Zheng, Liu, Shi, Liu, Lin, CVPR 2020; METHODS.md §5), with a LUT-priced budget.

Single-level and single-path: every step (after the budget's ``warmup_steps`` weight-only steps)

1. draw one op per layer, ``Z_l ~ Categorical(softmax(alpha_l))`` (a fixed layer keeps its op);
2. run only those ops, each output multiplied by a dummy gate of value 1 (``d_l``), on the
   training batch; objective ``J = CE + c * sum_c max(0, C_c(Z) / B_c - 1)`` with ``C_c(Z)`` the
   sampled path's exact cost from the cost model (the LUT for latency) and ``B_c`` its budget;
3. one backward gives the weights' gradients and the per-layer credit ``dJ / d d_l``;
4. SGD on the weights; Adam on alpha with ``grad alpha_l = (onehot(Z_l) - p_l) * credit_l``
   (the score function of ``log p(Z_l)`` times the credit: SNAS' gradient at zero temperature,
   slides Eqs. 5-6).

The cost term is priced on the *sampled* path and enters through the same dummies: layer l's
cost scales with ``d_l``, so its credit is ``c T_l(Z_l) / B`` while the sampled cost exceeds the
budget and 0 otherwise, and ``E_Z[(onehot - p) c T(Z) / B] = c / B * p (T - E_p[T])`` is the
gradient of the expected cost: alone it drives every layer to its cheapest op [R]. (The
reference code instead differentiates ``p_{Z} FLOPs_{Z}`` through the softmax, whose expectation
``p_k (p_k T_k - sum_j p_j^2 T_j)`` is not that gradient and stalls short of the cheapest op,
e.g. at p = (2/3, 1/3) for costs (1, 2).)

The credit is the first-order effect of scaling an op's output, so an op whose output is zero
gets none and is never pushed down: it beats any op whose credit averages >= 0 (on a residual
toy a zero op won 2 of 3 blocks against a useful conv). fbnet has no zero op (its skip is an
identity or a projection).

The Lagrangian form (``cost_form = "lagrangian"``) replaces the hinge by DCA-NAS' multiplier
term ``lambda_c (C_c(Z) - B_c) / B_c`` on the sampled path (the same dummies give its credit
``lambda T_l(Z_l) / B``, unbiased for the gradient of ``lambda E_p[C] / B``) and updates lambda
after every alpha step from the *expected* cost under softmax(alpha) with the relative PI dual
update of :class:`~hwnas.search.lagrangian.Lagrangian`. With ``equality`` (default) lambda may
turn negative: the search spends its budget instead of stopping wherever the hinge goes quiet
(the hinge only pushes down, so a budget above what the CE prefers is never approached).
The expected cost is not the delivered architecture's: on fbnet / pi4 at 40 % of the latency
range (the shipped recipe, 160 alpha steps, seeds 0-2) the multiplier held E within 0.1 % of
B while the argmax cost 1.13-1.27 B (then repaired), the softmax still too flat for any layer to
be fixed early. An online form of DCA-NAS' tighter bound K' < B (K' scaled by B / cost of the
argmax at every early-fix check, at most 25 % a check) gave 0.70-1.07 B on the same seeds:
the argmax of a near-flat softmax is too fragile to steer, and it is not shipped.

Progressive early fixing (code: softmax probabilities, threshold 0.3): at the start of every
"epoch" (``fix_every`` steps), a layer whose top-1 minus top-2 probability is >= 0.3 is fixed
to its top op: it is no longer sampled and its alpha row is frozen. The derived architecture is
the fixed op or the argmax per layer.

No retraining: the paper's network keeps training from the search weights. The search-trained
sub-network of the method's own architecture is ``supernet.extract(arch)`` (search width);
:func:`search_with_supernet` returns the supernet so a caller can continue any child of it
(:func:`inherited_child`), and ``info["inherited"]`` reports the own child's validation
accuracy with the search weights as they are (BN statistics recalibrated).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult
from hwnas.search.bilevel import BilevelState, edge_probs
from hwnas.search.lagrangian import convergence, from_settings
from hwnas.search.objectives import CostPenalty, Objective
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
from hwnas.search.trainer import BatchStream, cosine_lr, evaluate, set_lr
from hwnas.spaces.base import Arch


@dataclass(frozen=True)
class DSNASConfig:
    """DSNAS' settings ([V]: the reference code's config; the weights' SGD, steps, batch and
    warm-up come from the shared :class:`~hwnas.search.api.SearchBudget`; its
    ``warmup_steps`` are the code's optional ``pretrain_epoch``).

    Attributes:
        arch_lr: Adam learning rate of alpha (1e-3 [V]; a search of a few hundred steps needs
            more, the recipe uses 0.03).
        arch_betas: Adam betas ((0.5, 0.999) [V]).
        arch_weight_decay: L2 on alpha (0 [V]).
        cost_weight: ``c`` of the hinge ``c * max(0, C(Z) / B - 1)`` on the sampled path's cost
            relative to the budget (1 [R]: a layer's cost credit ``c T_l / B`` is then ~0.01-0.2
            on the pi4 LUT, the size of the CE credits of a short fbnet search; the code's
            ``flops_loss_coef`` 1e-5 multiplies MFLOPs and another estimator). 0: no budget.
        cost_form: ``"hinge"`` (the code's form, above) or ``"lagrangian"`` (module docstring).
        lambda_lr, lambda_damping, lambda_unit, lambda_init, equality: the Lagrangian's dual
            update (:class:`~hwnas.search.lagrangian.Lagrangian`; DCA-NAS' defaults [R]); unused
            by the hinge.
        fix_threshold: top-1 minus top-2 probability that fixes a layer (0.3 [V]); >= 1: never.
        fix_every: steps between early-fix checks (None: one pass over the training images,
            the code's "start of every epoch").
        grad_clip: max global norm of the weight gradient (None [V]: the code clips nothing).
        snapshot_every: steps between alpha snapshots.
    """

    arch_lr: float = 1e-3
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 0.0
    cost_weight: float = 1.0
    cost_form: str = "hinge"
    lambda_lr: float = 1.0
    lambda_damping: float = 20.0
    lambda_unit: float = 1.0
    lambda_init: float = 0.0
    equality: bool = True
    fix_threshold: float = 0.3
    fix_every: Optional[int] = None
    grad_clip: Optional[float] = None
    snapshot_every: int = 25

    def __post_init__(self) -> None:
        check_sampling_config(self, "dsnas")
        if self.cost_weight < 0 or self.fix_threshold <= 0:
            raise UserError("dsnas: cost_weight >= 0, fix_threshold > 0")
        if self.cost_form not in ("hinge", "lagrangian"):
            raise UserError(f"dsnas: cost_form is 'hinge' or 'lagrangian', not {self.cost_form!r}")
        if self.lambda_lr <= 0 or self.lambda_damping < 0 or self.lambda_unit <= 0:
            raise UserError("dsnas: lambda_lr > 0, lambda_damping >= 0, lambda_unit > 0")
        if self.fix_every is not None and self.fix_every < 1:
            raise UserError("dsnas: fix_every must be at least 1 step (or unset)")


def single_path_backward(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    path: torch.Tensor,
    objective: Objective,
    like: torch.Tensor,
) -> tuple[torch.Tensor, float, float]:
    """Forward only the ops of ``path`` (L,) with dummy gates of 1, backward the objective.

    Leaves the weights' gradients in ``.grad`` (accumulated) and returns
    ``(credit (L,) = dJ / d dummy_l, CE, J)``; ``like`` gives the gates' dtype and device.
    """
    gates = one_hot(path, like).requires_grad_()
    ce = nn.functional.cross_entropy(net.forward_path(x, path.tolist(), gates), y)
    value = objective.objective(ce, gates)
    value.backward()
    credit = gates.grad[torch.arange(len(path)), path.to(gates.device)]
    return credit.detach(), float(ce.detach()), float(value.detach())


def score_gradient(probs: torch.Tensor, path: torch.Tensor, credit: torch.Tensor) -> torch.Tensor:
    """``grad alpha_l = (onehot(Z_l) - p_l) * credit_l``: (L, K)."""
    return (one_hot(path, probs) - probs) * credit.to(probs)[:, None]


def early_fix(probs: torch.Tensor, threshold: float, fixed: dict[int, int]) -> dict[int, int]:
    """``fixed`` plus every layer whose top-1 minus top-2 probability is >= ``threshold``."""
    top = probs.detach().topk(2, dim=-1)
    gap = (top.values[:, 0] - top.values[:, 1]).tolist()
    out = dict(fixed)
    for layer, g in enumerate(gap):
        if layer not in out and g >= threshold:
            out[layer] = int(top.indices[layer, 0])
    return out


@torch.no_grad()
def recalibrate_bn(net: nn.Module, x: torch.Tensor, batch_size: int = 250) -> nn.Module:
    """Re-estimate every BN's running statistics on ``x`` (cumulative average), in place."""
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    for i in range(0, len(x), batch_size):
        net(x[i : i + batch_size])
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    return net


def inherited_child(supernet: nn.Module, arch: Arch, calibration: torch.Tensor) -> nn.Module:
    """The standalone network of ``arch`` with the supernet's weights (its search width), BN
    statistics recalibrated on the ``calibration`` images: DSNAS' network without retraining."""
    return recalibrate_bn(supernet.extract(arch), calibration)


def _step(problem: SearchProblem, config: DSNASConfig, state: BilevelState, stream, objective, t):
    b, net, alpha = problem.budget, state.net, state.alpha
    objective.load(state.extra.get("dual", {}))  # a resumed search's multipliers
    lr = cosine_lr(b.lr, t, b.steps)
    set_lr(state.opt_w, lr)
    searching = t >= b.warmup_steps
    fixed = {int(k): v for k, v in state.extra.get("fixed", {}).items()}
    probs = edge_probs(alpha.detach())
    every = config.fix_every or stream.per_epoch
    if searching and t > b.warmup_steps and (t - b.warmup_steps) % every == 0:
        fixed = early_fix(probs, config.fix_threshold, fixed)
        state.extra["fixed"] = {str(k): v for k, v in sorted(fixed.items())}
    path = sample_paths(probs, 1, step_generator(b.seed, t))[:, 0]
    for layer, op in fixed.items():
        path[layer] = op
    x, y = (v.to(alpha.device) for v in stream.batch(t))
    state.opt_w.zero_grad(set_to_none=True)
    credit, ce, value = single_path_backward(net, x, y, path, objective, alpha)
    if config.grad_clip is not None:
        nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
    state.opt_w.step()
    if searching:
        rows = torch.tensor(sorted(fixed), dtype=torch.long)
        frozen = alpha.detach()[rows].clone()
        grad = score_gradient(probs, path, credit)
        grad[rows] = 0.0
        state.opt_a.zero_grad(set_to_none=True)
        alpha.grad = grad
        state.opt_a.step()
        with torch.no_grad():
            alpha[rows] = frozen  # fixed rows stay put (Adam's momentum would move them)
    row = {"step": t, "lr": lr, "ce_train": ce, "objective": value, "fixed": len(fixed)}
    row["credit_abs_mean"] = float(credit.abs().mean())
    if searching:
        objective.observe(edge_probs(alpha.detach()), row)  # the Lagrangian's dual update
        state.extra["dual"] = objective.state()
    cost_row(problem, row, edge_probs(alpha.detach()), one_hot(path, alpha.detach()))
    return row


def make_objective(problem: SearchProblem, config: DSNASConfig) -> Objective:
    """The hinge or the Lagrangian (bound: each constraint's budget) of ``config.cost_form``."""
    if config.cost_form == "hinge":
        return CostPenalty(problem.constraints, config.cost_weight, "hinge")
    costs = {c.metric: c.cost for c in problem.constraints}
    return from_settings(costs, {c.metric: c.limit for c in problem.constraints}, config)


def search_with_supernet(
    problem: SearchProblem, config: DSNASConfig, hooks: Hooks
) -> tuple[SearchResult, nn.Module]:
    """DSNAS search (module docstring); returns the result and the search-trained supernet."""
    check_layerwise(problem, "dsnas")
    b = problem.budget
    state = BilevelState(problem, config.arch_lr, config.arch_betas, config.arch_weight_decay)
    stream = BatchStream(problem.data.train_x, problem.data.train_y, b.batch_size, b.seed)
    objective = make_objective(problem, config)
    run_steps(
        problem,
        state,
        hooks,
        lambda t: _step(problem, config, state, stream, objective, t),
        config.snapshot_every,
        "dsnas",
    )
    fixed = state.extra.get("fixed", {})
    info: dict = {"fixed_layers": dict(fixed), "cost_form": config.cost_form}
    if config.cost_form == "lagrangian":
        info["lambda"] = state.extra.get("dual", {}).get("lambda", {})
        info["convergence"] = convergence(state.history, config.lambda_unit)
    result = finish(problem, state, "dsnas", info)
    vector = problem.space.arch_vector(result.arch).copy()
    for layer, op in fixed.items():
        vector[int(layer)] = op  # the argmax already (the row is frozen); explicit all the same
    own = problem.space.arch_from_vector(vector)
    n, device = b.eval_images, state.alpha.device
    child = inherited_child(state.net, own, problem.data.train_x[:n].to(device))
    accuracy = evaluate(child, problem.data.val_x[:n].to(device), problem.data.val_y[:n].to(device))
    result = dataclasses.replace(result, arch=own)
    result.info["inherited"] = {
        "val_accuracy": accuracy,
        "width": problem.space.config.search_width,
        "images": int(min(n, len(problem.data.val_y))),
        "note": "the own architecture's search-trained weights, BN recalibrated, no training",
    }
    return result, state.net


def run(problem: SearchProblem, config: DSNASConfig, hooks: Hooks) -> SearchResult:
    """DSNAS search (module docstring)."""
    return search_with_supernet(problem, config, hooks)[0]


METHODS.add(
    "dsnas",
    MethodSpec(
        run,
        DSNASConfig,
        ("choice",),
        "DSNAS: single-path sampling, dummy-gate credit, hinge or Lagrangian on the sampled cost, "
        "early fixing",
    ),
)
