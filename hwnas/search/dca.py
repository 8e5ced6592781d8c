"""DCA-NAS: Device Constraints-Aware NAS (Dutta, Kanvar, Agarwal, "Search-time Efficient Device
Constraints-Aware Neural Architecture Search", arXiv 2307.04443; METHODS.md §2).

The budget is a constraint with a *trainable Lagrange multiplier* instead of a hand-tuned penalty
weight (Eq. 4, with the constraint normalised by its bound [R]):

    min_{w, alpha} max_{lambda >= 0}  L_val(w, alpha) + sum_c lambda_c (K_c(alpha) - K'_c) / K'_c

``K_c(alpha)`` is the expected cost under softmax(alpha) (Eq. 3: params, FLOPs, or LUT latency,
summed over every edge and op). Each step (Alg. 1, first-order DARTS by default): a weight step
on the training batch, an alpha step on the Lagrangian (validation batch), then projected dual
ascent ``lambda_c <- max(0, lambda_c + lambda_lr (K_c(alpha) - K'_c) / K'_c)``: lambda grows
while the bound is violated and decays to 0 when it is slack. The loop is DARTS'
(:func:`hwnas.search.darts.search`) with :class:`Lagrangian` as its penalty.

The search bound ``K'`` is not the device budget ``K_d``: the expectation and the derived
architecture differ, so ``K'`` is read off the lookup graph (:mod:`hwnas.search.lookup_graph`;
built on demand from real searches with this method, cached), which maps ``K'`` to the cost of
the architecture a search with it derives. Without the graph ``K' = bound_ratio * K_d``. The
derived architecture is the method's own; the pipeline repairs it against ``K_d`` if it still
violates the budget, and reports both (:mod:`hwnas.search.finalize`).

Speed-ups (Sec. 3.3): ``weight_sharing`` and ``bottleneck`` (``darts`` space only,
:mod:`hwnas.spaces.darts_nets`). Works on the ``darts`` cells and on the ``fbnet`` layers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
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
from hwnas.search.lookup_graph import graph_path, load_graph, search_bound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DCAConfig(BilevelSettings):
    """The bi-level loop's settings (:class:`~hwnas.search.bilevel.BilevelSettings`; ``order``
    is 1 in Alg. 1, ``weight_sharing`` and ``bottleneck`` are the paper's speed-ups) and the
    Lagrangian's. The paper's alpha optimiser values were stripped from its text; these are
    PC-DARTS-like [R] (METHODS.md §2.3). Others are [R] too.

    Attributes:
        arch_lr: Adam learning rate of alpha (6e-4 here).
        lambda_lr: dual ascent step on the relative violation ``(K - K') / K'``.
        lambda_init: initial multiplier.
        lookup_graph: search with K' from the lookup graph (else ``bound_ratio * K_d``).
        lookup_grid: bounds the graph is built on, as fractions of the expected-cost range
            ``[sum_l min_k cost, sum_l max_k cost]``.
        lookup_refine: extra searches that refine the graph around the requested budget.
        lookup_steps: steps of each graph search (None: the search budget's steps).
        lookup_seed: seed of the graph searches (the graph serves every run seed).
        bound_ratio: K' / K_d without the graph.
    """

    arch_lr: float = 6e-4
    lambda_lr: float = 0.1
    lambda_init: float = 0.0
    lookup_graph: bool = True
    lookup_grid: tuple[float, ...] = (0.1, 0.3, 0.6)
    lookup_refine: int = 2
    lookup_steps: Optional[int] = None
    lookup_seed: int = 0
    bound_ratio: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "lookup_grid", tuple(float(f) for f in self.lookup_grid))
        if self.lambda_lr <= 0 or self.lambda_init < 0 or self.bound_ratio <= 0:
            raise UserError("dca: lambda_lr > 0, lambda_init >= 0, bound_ratio > 0")
        if not self.lookup_grid or not all(0 < f < 1 for f in self.lookup_grid):
            raise UserError("dca: lookup_grid fractions must lie in (0, 1)")
        if self.lookup_steps is not None and self.lookup_steps < 2:
            raise UserError("dca: lookup_steps must be at least 2")


class Lagrangian:
    """``sum_c lambda_c (K_c - K'_c) / K'_c`` with projected dual ascent on the multipliers.

    Args:
        costs: cost model per metric.
        bounds: search-time bound K' per metric (same unit).
        lr: dual step size.
        init: initial multiplier (>= 0).
    """

    def __init__(
        self, costs: Mapping[str, CostModel], bounds: Mapping[str, float], lr: float, init: float
    ) -> None:
        self.costs, self.bounds, self.lr = dict(costs), dict(bounds), lr
        self.lam = {m: float(init) for m in self.costs}

    def violation(self, probs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Relative violation ``(K(alpha) - K') / K'`` per metric (differentiable)."""
        return {
            m: (c.expected(probs) - self.bounds[m]) / self.bounds[m] for m, c in self.costs.items()
        }

    def loss(self, probs: torch.Tensor) -> Optional[torch.Tensor]:
        if not self.costs:
            return None
        terms = self.violation(probs)
        return sum(self.lam[m] * terms[m] for m in terms)  # type: ignore[return-value]

    def observe(self, probs: torch.Tensor, row: dict) -> None:
        """Dual ascent after the alpha step; logs lambda and the violation."""
        with torch.no_grad():
            for m, v in self.violation(probs).items():
                self.lam[m] = max(0.0, self.lam[m] + self.lr * float(v))
                row[f"lambda_{m}"] = self.lam[m]
                row[f"violation_{m}"] = float(v)

    def state(self) -> dict:
        return {"lambda": dict(self.lam)}

    def load(self, state: dict) -> None:
        self.lam.update(state.get("lambda", {}))


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
        "settings": {**settings, "lambda_lr": config.lambda_lr, "lambda_init": config.lambda_init},
        "seed": config.lookup_seed,
        "torch": torch.__version__,
    }


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
        budget=dataclasses.replace(
            b, steps=steps, warmup_steps=_warmup(problem, steps), seed=config.lookup_seed
        ),
    )

    def measure(bound: float) -> float:
        lagrangian = Lagrangian({cost.metric: cost}, {cost.metric: bound}, config.lambda_lr, 0.0)
        nested = Hooks(stop_requested=hooks.stop_requested)
        result = search(sub, config.bilevel(), nested, lagrangian, "dca-lookup")
        return cost.discrete(result.arch)

    low, high = expected_range(cost)
    grid = [low + f * (high - low) for f in config.lookup_grid]
    graph = load_graph(cost.metric, identity)
    return search_bound(
        constraint.limit, graph, grid, measure, config.lookup_refine, write=current().is_main
    )


def run(problem: SearchProblem, config: DCAConfig, hooks: Hooks) -> SearchResult:
    """DCA-NAS search (module docstring)."""
    if problem.space.relaxation not in RELAXATIONS:
        raise UserError(
            f"dca works on softmax-relaxed spaces (fbnet, darts), not {problem.space.name}"
        )
    bounds, graphs = {}, {}
    for c in problem.constraints:
        if config.lookup_graph:
            bounds[c.metric], graph = _lookup(problem, c, config, hooks)
            graphs[c.metric] = {
                "file": str(graph_path(c.metric, graph.identity)),
                "points": [list(p) for p in zip(graph.bounds, graph.derived)],
                "curve_at_bound": graph.derived_at(bounds[c.metric]),
            }
        else:
            bounds[c.metric] = config.bound_ratio * c.limit
        log.info("dca: %s budget %.6g -> search bound %.6g", c.metric, c.limit, bounds[c.metric])
    costs = {c.metric: c.cost for c in problem.constraints}
    lagrangian = Lagrangian(costs, bounds, config.lambda_lr, config.lambda_init)
    result = search(problem, config.bilevel(), hooks, lagrangian, "dca")
    info = {
        **result.info,
        "budgets": {c.metric: c.limit for c in problem.constraints},
        "search_bounds": bounds,
        "lambda": dict(lagrangian.lam),
        "lookup_graphs": graphs,
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
