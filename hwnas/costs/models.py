"""Cost models and constraints: what a search method sees instead of a device.

A :class:`CostModel` has the two faces of STYLE.md principle 4:

* ``discrete(arch)``: the exact cost of a discrete architecture (float, the metric's unit);
* ``expected(relaxed)``: a differentiable cost under the space's relaxation: per-layer op
  probabilities (L, K) for "choice" spaces, per-item keep probabilities (N,) for "channel"
  spaces. One-hot / 0-1 inputs give exactly ``discrete`` (tested for every registered model).

It also exposes its additive ``table`` (``hwnas.costs.tables``), which is what knapsack-style
methods (Greedy-ADMM) and repair steps use. Cost models are registered by metric name in
:data:`COST_MODELS`: ``latency_ms`` (a LUT predictor of the target device), ``flops``
(multiply-accumulates, analytic) and ``params`` (analytic).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from hwnas.costs.tables import CostTable
from hwnas.errors import UserError
from hwnas.registry import Registry

if TYPE_CHECKING:
    import torch

    from hwnas.spaces.base import Arch, Space

UNITS = {"latency_ms": "ms", "flops": "MACs", "params": "parameters"}
# CLI flag scale: --flops-m and --params-m are in millions.
CLI_SCALE = {"latency_ms": 1.0, "flops": 1e6, "params": 1e6}


@dataclass(frozen=True, eq=False)
class CostModel:
    """One metric of one space instance.

    Attributes:
        metric: ``latency_ms``, ``flops`` or ``params``.
        table: the additive cost table.
        space: the space (converts architectures to table vectors).
        source: where the numbers come from (``"analytic"``, ``"lut:pi4"``...).
    """

    metric: str
    table: CostTable
    space: Space
    source: str

    @property
    def unit(self) -> str:
        return UNITS[self.metric]

    def discrete(self, arch: Arch) -> float:
        """Exact cost of ``arch`` in :attr:`unit`."""
        return self.table.discrete(self.space.arch_vector(arch))

    def expected(self, relaxed: torch.Tensor) -> torch.Tensor:
        """Differentiable cost under the relaxation (see the module docstring) -> scalar."""
        return self.table.expected(relaxed)

    def bounds(self) -> tuple[float, float]:
        """(cheapest, most expensive) cost the search can produce, in :attr:`unit`."""
        return self.table.minimum(), self.table.maximum()


@dataclass(frozen=True, eq=False)
class Constraint:
    """``cost.discrete(arch) <= limit``."""

    cost: CostModel
    limit: float

    @property
    def metric(self) -> str:
        return self.cost.metric

    def value(self, arch: Arch) -> float:
        return self.cost.discrete(arch)

    def satisfied(self, arch: Arch) -> bool:
        return self.value(arch) <= self.limit * (1 + 1e-9)

    def disparity(self, arch: Arch) -> float:
        """Relative disparity (cost - limit) / limit (FGA-NAS Fig. 4)."""
        return (self.value(arch) - self.limit) / self.limit


CostFactory = Callable[["Space", Any], CostModel]
COST_MODELS: Registry[CostFactory] = Registry("cost model")


@COST_MODELS.register("latency_ms")
def latency_cost(space: Space, predictor: Any) -> CostModel:
    """Latency (ms) of the full-width network on the predictor's device."""
    return CostModel("latency_ms", space.cost_table("latency_ms", predictor), space, predictor.name)


@COST_MODELS.register("flops")
def flops_cost(space: Space, predictor: Any = None) -> CostModel:
    """Multiply-accumulates of one forward pass at batch 1 (``hwnas.blocks.specs`` convention)."""
    return CostModel("flops", space.cost_table("flops"), space, "analytic")


@COST_MODELS.register("params")
def params_cost(space: Space, predictor: Any = None) -> CostModel:
    """Trainable parameters, BN affine included."""
    return CostModel("params", space.cost_table("params"), space, "analytic")


def make_cost_models(space: Space, predictor: Any = None) -> dict[str, CostModel]:
    """Every metric the space can be priced in (latency only with a predictor)."""
    models = {m: COST_MODELS.get(m)(space, predictor) for m in ("flops", "params")}
    if predictor is not None:
        models["latency_ms"] = latency_cost(space, predictor)
    return models


def make_constraints(
    models: dict[str, CostModel], limits: dict[str, Optional[float]]
) -> tuple[Constraint, ...]:
    """One :class:`Constraint` per given limit; a limit outside the feasible range is a UserError.

    Args:
        models: cost models by metric (:func:`make_cost_models`).
        limits: metric -> limit in the metric's unit (``None``: unconstrained).
    """
    out = []
    for metric, limit in limits.items():
        if limit is None:
            continue
        if metric not in models:
            raise UserError(f"a {metric} budget needs a device with a LUT (pass --device)")
        model = models[metric]
        low, high = model.bounds()
        if not low <= limit <= high:
            raise UserError(
                f"{_flag(metric)} {_show(metric, limit)} is outside the feasible range "
                f"{_show(metric, low)} .. {_show(metric, high)} of space {model.space.name!r}"
                f" ({model.source})"
            )
        out.append(Constraint(model, float(limit)))
    return tuple(out)


def _flag(metric: str) -> str:
    return {"latency_ms": "--latency-ms", "flops": "--flops-m", "params": "--params-m"}[metric]


def _show(metric: str, value: float) -> str:
    scale = CLI_SCALE[metric]
    return f"{value / scale:.4g}"
