"""DCA-NAS: Device Constraints-Aware NAS (Dutta, Kanvar, Agarwal, "Search-time Efficient Device
Constraints-Aware Neural Architecture Search", arXiv 2307.04443; METHODS.md §2).

The budget is a constraint with a *trainable Lagrange multiplier* instead of a hand-tuned penalty
weight (Eq. 4, with the constraint normalised by its bound [R]):

    min_{w, alpha} max_{lambda}  L_val(w, alpha) + sum_c lambda_c (K_c(alpha) - K'_c) / K'_c

``K_c(alpha)`` is the expected cost under softmax(alpha) (Eq. 3: params, FLOPs, or LUT latency,
summed over every edge and op). Each step (Alg. 1, first-order DARTS by default): a weight step
on the training batch, an alpha step on the Lagrangian (validation batch), then a dual update:
a PI controller on the relative violation with a gain relative to ``|lambda|``
(:class:`hwnas.search.lagrangian.Lagrangian`, which says why plain dual ascent does not settle
in a short search). By default the bound is an equality (the search spends it; ``equality =
False``: the paper's ``K <= K'``). ``info["convergence"]`` says whether the expected cost ended
within a few percent of ``K'`` with ``lambda`` settled. The loop is DARTS'
(:func:`hwnas.search.darts.search`) with the Lagrangian as its objective.

The search bound ``K'`` is not the device budget ``K_d``: the expectation and the derived
architecture differ, so ``K'`` is read off the lookup graph (:mod:`hwnas.search.lookup_graph`;
built on demand from real searches with this method, one per seed of ``lookup_seeds`` per bound,
their derived costs averaged; cached), which maps ``K'`` to the cost of the architecture a search
with it derives. Without the graph ``K' = bound_ratio * K_d``. The derived architecture is the
method's own; the pipeline repairs it against ``K_d`` if it still violates the budget, and
reports both (:mod:`hwnas.search.finalize`).

Speed-ups (Sec. 3.3): ``weight_sharing`` and ``bottleneck`` (``darts`` space only,
:mod:`hwnas.spaces.darts_nets`). The third, **derived cells** (App. A, after EnTranNAS), is not
implemented: (1) on ``fbnet`` (the layer-wise space) it does not exist: every layer has its own
row of alpha and there are no repeated cells to derive; (2) on ``darts`` its saving in
*parameters* is already there: alpha is one (14, 8) tensor for all normal cells and one for all
reduction cells (DARTS' sharing), so "only 2 cells carry trainable alpha" holds; what is left is
the *compute* saving: the 6 other cells would run only their 8 derived ops (one-hot, re-derived
every step) instead of all 14 x 7, and alpha would get gradients only through the 2 engine
cells. That needs a supernet that runs sparse per-cell genotypes and a loop that re-derives
before every forward (:mod:`hwnas.spaces.darts_nets`, :mod:`hwnas.search.darts`), it changes
what alpha is trained on, and it saves time only, not feasibility.
Works on the ``darts`` cells and on the ``fbnet`` layers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from hwnas.costs.models import Constraint, CostModel
from hwnas.errors import UserError
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult
from hwnas.search.bilevel import RELAXATIONS, BilevelSettings
from hwnas.search.darts import search
from hwnas.search.distributed import current
from hwnas.search.lagrangian import convergence, from_settings, reachable_range
from hwnas.search.lookup_graph import averaged, graph_path, load_graph, search_bound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DCAConfig(BilevelSettings):
    """The bi-level loop's settings (:class:`~hwnas.search.bilevel.BilevelSettings`; ``order``
    is 1 in Alg. 1, ``weight_sharing`` and ``bottleneck`` are the paper's speed-ups) and the
    Lagrangian's. The paper's alpha optimiser values were stripped from its text; these are
    PC-DARTS-like [R] (METHODS.md §2.3). Others are [R] too.

    Attributes:
        arch_lr: Adam learning rate of alpha (6e-4 here; a short search needs more: the
            expected cost moves by at most about ``arch_lr * sum |dK/dalpha|`` a step, so the
            bound must be reachable in the alpha steps, ``info["reachable"]``; the fbnet recipe
            uses 0.03: 160 steps at 0.01 reach only 14-83 % of its expected-latency range).
        lambda_lr: integral gain of the dual update, relative to ``max(|lambda|, lambda_unit)``
            (1 [R]; :class:`~hwnas.search.lagrangian.Lagrangian`).
        lambda_damping: its proportional gain on the change of the violation (20 [R]:
            the gap closes with a time constant of ``lambda_damping / lambda_lr`` alpha steps).
        lambda_unit: multiplier scale below which the gain is no longer relative (1 [R]).
        lambda_init: initial multiplier.
        equality: the bound is ``K = K'`` (spend it) rather than the paper's ``K <= K'`` [R].
        lookup_graph: search with K' from the lookup graph (else ``bound_ratio * K_d``).
        lookup_grid: bounds the graph is built on, as fractions of the expected-cost range
            ``[sum_l min_k cost, sum_l max_k cost]`` (three points inside the range a short
            search can reach; the curve is linear between them and proportional outside).
        lookup_refine: extra bounds that refine the graph around the requested budget
            (interpolated, or bisecting a cliff: :func:`~hwnas.search.lookup_graph.next_bound`).
            On fbnet / pi4 the derived cost jumps ~25 ms within ~3 ms of K' (the argmax flips
            many flat layers at once; seeds differ by 4-10 ms there): with 1 refinement budgets
            at 30 / 45 % of the range derived 0.64 / 0.23 of the budget, with 3 0.92 / 0.74.
            Each costs ``len(lookup_seeds)`` searches; cached points bracket later budgets, so
            refinement stops earlier as the graph fills (3 [R]).
        lookup_steps: steps of each graph search (None: the search budget's steps).
        lookup_seeds: seeds of the graph searches; every bound is searched once per seed and
            the derived costs are averaged (the graph serves every run seed). Two seeds double
            the cost of a point: the first budget costs up to 12 graph searches (3 bounds + 3
            refinements, 2 seeds; 5 before), later ones up to 6. Sharing one supernet
            warm-up between them would save only ``warmup_steps / steps`` (20 %) and needs the
            loop (:func:`hwnas.search.darts.search`) to start from a given state: not done.
        bound_ratio: K' / K_d without the graph.
    """

    arch_lr: float = 6e-4
    lambda_lr: float = 1.0
    lambda_damping: float = 20.0
    lambda_unit: float = 1.0
    lambda_init: float = 0.0
    equality: bool = True
    lookup_graph: bool = True
    lookup_grid: tuple[float, ...] = (0.2, 0.45, 0.7)
    lookup_refine: int = 3
    lookup_steps: Optional[int] = None
    lookup_seeds: tuple[int, ...] = (0, 1)
    bound_ratio: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "lookup_grid", tuple(float(f) for f in self.lookup_grid))
        object.__setattr__(self, "lookup_seeds", tuple(int(s) for s in self.lookup_seeds))
        if self.lambda_lr <= 0 or self.lambda_damping < 0 or self.lambda_unit <= 0:
            raise UserError("dca: lambda_lr > 0, lambda_damping >= 0, lambda_unit > 0")
        if self.lambda_init < 0 or self.bound_ratio <= 0:
            raise UserError("dca: lambda_init >= 0, bound_ratio > 0")
        if not self.lookup_seeds:
            raise UserError("dca: lookup_seeds needs at least one seed")
        if not self.lookup_grid or not all(0 < f < 1 for f in self.lookup_grid):
            raise UserError("dca: lookup_grid fractions must lie in (0, 1)")
        if self.lookup_steps is not None and self.lookup_steps < 2:
            raise UserError("dca: lookup_steps must be at least 2")


def expected_range(cost: CostModel) -> tuple[float, float]:
    """Range of the expected cost over all softmax relaxations: per row min and max summed."""
    values = cost.table.values
    return (
        cost.table.constant + float(values.min(axis=1).sum()),
        cost.table.constant + float(values.max(axis=1).sum()),
    )


def lookup_identity(problem: SearchProblem, cost: CostModel, config: DCAConfig, steps: int) -> dict:
    """What a lookup graph depends on (its cache key)."""
    table = cost.table
    digest = hashlib.sha256(np.ascontiguousarray(table.values).tobytes())
    digest.update(repr(table.constant).encode())
    data = hashlib.sha256(problem.data.source.encode())
    if not problem.data.source:  # nothing names the data: the tensors themselves do
        for t in (
            problem.data.train_x,
            problem.data.train_y,
            problem.data.val_x,
            problem.data.val_y,
        ):
            data.update(np.ascontiguousarray(t.cpu().numpy()).tobytes())
    skip = ("seed", "eval_every", "eval_images", "checkpoint_every", "steps", "warmup_steps")
    budget = {k: v for k, v in dataclasses.asdict(problem.budget).items() if k not in skip}
    settings = dataclasses.asdict(config.bilevel())
    settings.pop("snapshot_every")
    return {
        "space": problem.space.describe(),
        "metric": cost.metric,
        "cost_source": cost.source,
        "table_sha256": digest.hexdigest(),
        "data_sha256": data.hexdigest(),
        "budget": {**budget, "steps": steps, "warmup_steps": _warmup(problem, steps)},
        "settings": {**settings, **{k: getattr(config, k) for k in DUAL_SETTINGS}},
        "seeds": list(config.lookup_seeds),
        "torch": torch.__version__,
    }


DUAL_SETTINGS = ("lambda_lr", "lambda_damping", "lambda_unit", "lambda_init", "equality")


def _warmup(problem: SearchProblem, steps: int) -> int:
    b = problem.budget
    return min(steps - 1, round(b.warmup_steps * steps / b.steps))


def _lookup(problem: SearchProblem, constraint: Constraint, config: DCAConfig, hooks: Hooks):
    """(K', graph) for ``constraint`` (see :mod:`hwnas.search.lookup_graph`)."""
    cost, b = constraint.cost, problem.budget
    steps = config.lookup_steps or b.steps
    identity = lookup_identity(problem, cost, config, steps)
    sub = dataclasses.replace(
        problem,
        constraints=(),
        budget=dataclasses.replace(b, steps=steps, warmup_steps=_warmup(problem, steps)),
    )

    def measure(bound: float, seed: int) -> float:
        """The derived cost of one search with K' = ``bound`` and run seed ``seed``."""
        seeded = dataclasses.replace(sub, budget=dataclasses.replace(sub.budget, seed=seed))
        lagrangian = from_settings({cost.metric: cost}, {cost.metric: bound}, config)
        nested = Hooks(stop_requested=hooks.stop_requested)
        result = search(seeded, config.bilevel(), nested, lagrangian, "dca-lookup")
        return cost.discrete(result.arch)

    low, high = expected_range(cost)
    grid = [low + f * (high - low) for f in config.lookup_grid]
    graph = load_graph(cost.metric, identity)
    return search_bound(
        constraint.limit,
        graph,
        grid,
        averaged(measure, config.lookup_seeds),
        config.lookup_refine,
        write=current().is_main,
    )


def _reachable(problem: SearchProblem, costs: Mapping[str, CostModel], bounds, config) -> dict:
    """Per metric, the expected-cost range the alpha steps can reach; warns if K' is outside."""
    b = problem.budget
    out = {}
    for metric, cost in costs.items():
        shape, betas = problem.space.alpha_shape, config.arch_betas
        low, high = reachable_range(cost, shape, b.steps - b.warmup_steps, config.arch_lr, betas)
        out[metric] = [low, high]
        if not low <= bounds[metric] <= high:
            log.warning(
                "dca: the %s bound %.6g is out of reach of %d alpha steps at arch_lr %g "
                "(reachable %.6g..%.6g): the Lagrangian cannot settle on it",
                metric,
                bounds[metric],
                b.steps - b.warmup_steps,
                config.arch_lr,
                low,
                high,
            )
    return out


def run(problem: SearchProblem, config: DCAConfig, hooks: Hooks) -> SearchResult:
    """DCA-NAS search (module docstring)."""
    if problem.space.relaxation not in RELAXATIONS:
        raise UserError(
            f"dca works on softmax-relaxed spaces (fbnet, darts), not {problem.space.name}"
        )
    bounds, graphs = {}, {}
    t0 = time.perf_counter()
    for c in problem.constraints:
        if config.lookup_graph:
            bounds[c.metric], graph = _lookup(problem, c, config, hooks)
            graphs[c.metric] = {
                "file": str(graph_path(c.metric, graph.identity)),
                "points": [list(p) for p in zip(graph.bounds, graph.derived)],
                "curve_at_bound": graph.derived_at(bounds[c.metric]),
                "seeds": list(config.lookup_seeds),
            }
        else:
            bounds[c.metric] = config.bound_ratio * c.limit
        log.info("dca: %s budget %.6g -> search bound %.6g", c.metric, c.limit, bounds[c.metric])
    lookup_seconds = time.perf_counter() - t0
    costs = {c.metric: c.cost for c in problem.constraints}
    reach = _reachable(problem, costs, bounds, config)
    lagrangian = from_settings(costs, bounds, config)
    result = search(problem, config.bilevel(), hooks, lagrangian, "dca")
    settled = convergence(result.history, config.lambda_unit)
    for metric, figures in settled.items():
        if not figures["converged"]:
            log.warning(
                "dca: the %s Lagrangian did not settle: |K - K'| / K' %.3f, lambda moved %.3f "
                "over the last 10 %% of steps (more steps or a larger arch_lr)",
                metric,
                figures["gap"],
                figures["lambda_change"],
            )
    info = {
        **result.info,
        "budgets": {c.metric: c.limit for c in problem.constraints},
        "search_bounds": bounds,
        "lambda": dict(lagrangian.lam),
        "convergence": settled,
        "reachable": reach,
        "lookup_graphs": graphs,
        "lookup_seconds": lookup_seconds,  # about 0 when the cached graph had every point
    }
    return dataclasses.replace(result, info=info)


METHODS.add(
    "dca",
    MethodSpec(
        run,
        DCAConfig,
        RELAXATIONS,
        "DCA-NAS: Lagrangian with a trainable multiplier, search bound from a lookup graph",
    ),
)
