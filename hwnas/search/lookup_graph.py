"""DCA-NAS' lookup graph (LUG; Dutta, Kanvar, Agarwal, arXiv 2307.04443, Sec. 3.2.1, App. B).

The search constrains the *expected* cost ``K(alpha)`` (a softmax-weighted sum over every edge
and op), but the budget ``K_d`` is on the *derived* architecture, and the two differ (on
``darts`` the expectation runs over 14 edges per cell, the genotype keeps 8). The LUG maps a
search-time bound ``K'`` to the cost of the architecture that a search run to the end with that
bound derives; inverting it gives the ``K'`` to search with for a device budget ``K_d``.

* Points ``(K', derived cost)`` come from real searches (:func:`search_bound`'s ``measure``),
  one per seed averaged (:func:`averaged`): which op wins a layer's argmax at a given ``K'`` is
  decided by small margins that change with the seed's data split and initialisation, so one
  seed's graph is as noisy as its argmax flips; the mean over seeds estimates the derived cost
  a run (of any seed) will get, and a ``K'`` read off it is below ``K_d`` where searches
  over-shoot on average, not where one seed happened to.
* The curve is the running maximum of the derived costs in ``K'`` order: monotone
  non-decreasing and never below a measured point. Between points it is linear; outside it is
  proportional (``K' * K_d / curve(end)``). :meth:`LookupGraph.inverse` inverts it.
* The derived cost is a staircase in ``K'`` (argmax choices flip one at a time), so an
  interpolated inverse can land on the step above ``K_d``. :func:`search_bound` therefore
  measures at the inverse (refinement) and returns the largest *measured* ``K'`` whose curve value
  is ``<= K_d``: a bound whose search derived an architecture within the budget.
* Built on demand, cached: the graph of one setting (space, metric, cost table, data, search
  budget and method settings; :func:`identity_key`) lives in
  ``hwnas.paths.cache_dir() / "lookup_graphs" / <metric>-<key>.json`` (versioned JSON), gains a
  point with every measurement, and serves every later budget. Only rank 0 of a data-parallel
  run writes it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from hwnas import paths
from hwnas.errors import UserError

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
KIND = "hwnas-lookup-graph"


@dataclass(frozen=True)
class LookupGraph:
    """Measured ``(search bound, derived cost)`` pairs of one metric, ascending in the bound.

    Attributes:
        metric: ``latency_ms``, ``flops`` or ``params`` (both axes in its unit).
        bounds: search-time bounds K' that were searched with, ascending.
        derived: cost of the derived architecture of each search.
        identity: what the graph is for (JSON; see :func:`identity_key`).
    """

    metric: str
    bounds: tuple[float, ...] = ()
    derived: tuple[float, ...] = ()
    identity: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.bounds) != len(self.derived):
            raise ValueError("lookup graph: one derived cost per bound")
        order = np.argsort(np.asarray(self.bounds, dtype=np.float64), kind="stable")
        object.__setattr__(self, "bounds", tuple(float(self.bounds[i]) for i in order))
        object.__setattr__(self, "derived", tuple(float(self.derived[i]) for i in order))

    def __len__(self) -> int:
        return len(self.bounds)

    def curve(self) -> np.ndarray:
        """Monotone derived cost at each bound: the running maximum of :attr:`derived`."""
        return np.maximum.accumulate(np.asarray(self.derived, dtype=np.float64))

    def derived_at(self, bound: float) -> float:
        """The curve at ``bound``: linear between points, proportional outside."""
        self._need_points()
        x, f = np.asarray(self.bounds), self.curve()
        if bound <= x[0]:
            return float(f[0] * bound / x[0])
        if bound >= x[-1]:
            return float(f[-1] * bound / x[-1])
        return float(np.interp(bound, x, f))

    def inverse(self, limit: float) -> float:
        """The largest bound K' whose curve value is ``<= limit`` (the K' to search with)."""
        self._need_points()
        x, f = np.asarray(self.bounds), self.curve()
        if limit < f[0]:
            return float(x[0] * limit / f[0])
        i = int(np.flatnonzero(f <= limit)[-1])
        if i == len(x) - 1:
            return float(x[-1] * limit / f[-1])
        return float(x[i] + (limit - f[i]) / (f[i + 1] - f[i]) * (x[i + 1] - x[i]))

    def safe_bound(self, limit: float) -> Optional[float]:
        """The largest *measured* bound whose curve value is ``<= limit`` (None if none is):
        every search run with it derived an architecture within ``limit``."""
        ok = np.flatnonzero(self.curve() <= limit)
        return float(self.bounds[ok[-1]]) if ok.size else None

    def search_bound(self, limit: float) -> float:
        """The bound to search with for budget ``limit``: :meth:`safe_bound` when there is one
        (interpolating a staircase can land on the wrong step), else :meth:`inverse`."""
        safe = self.safe_bound(limit)
        return self.inverse(limit) if safe is None else safe

    def with_point(self, bound: float, derived: float) -> LookupGraph:
        return LookupGraph(
            self.metric, (*self.bounds, bound), (*self.derived, derived), self.identity
        )

    def has_near(self, bound: float, rtol: float) -> bool:
        return any(abs(b - bound) <= rtol * abs(bound) for b in self.bounds)

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "metric": self.metric,
            "points": [{"bound": b, "derived": d} for b, d in zip(self.bounds, self.derived)],
            "identity": dict(self.identity),
            "note": "bound: the search-time limit K' on the expected cost; derived: the cost of "
            "the architecture derived after searching with it (DCA-NAS lookup graph)",
        }

    @classmethod
    def from_json(cls, document: Any, where: str = "lookup graph") -> LookupGraph:
        if not isinstance(document, dict) or document.get("kind") != KIND:
            raise UserError(f"{where} is not a hwnas lookup graph")
        if document.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{where} has schema version {document.get('schema_version')}")
        try:
            points = document["points"]
            return cls(
                str(document["metric"]),
                tuple(float(p["bound"]) for p in points),
                tuple(float(p["derived"]) for p in points),
                dict(document["identity"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{where} is malformed: {exc}") from None

    def _need_points(self) -> None:
        if not self.bounds:
            raise ValueError(f"the {self.metric} lookup graph has no points")


def identity_key(identity: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of ``identity``."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def graph_path(metric: str, identity: Mapping[str, Any]) -> Path:
    return paths.cache_dir() / "lookup_graphs" / f"{metric}-{identity_key(identity)[:24]}.json"


def load_graph(metric: str, identity: Mapping[str, Any]) -> LookupGraph:
    """The cached graph of this setting, or an empty one."""
    path = graph_path(metric, identity)
    if not path.is_file():
        return LookupGraph(metric, identity=identity)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read lookup graph {path}: {exc}; delete it") from None
    graph = LookupGraph.from_json(document, str(path))
    if identity_key(graph.identity) != identity_key(identity):
        raise UserError(f"lookup graph {path} belongs to another setting; delete it")
    return graph


def save_graph(graph: LookupGraph, write: bool = True) -> Optional[Path]:
    """Write ``graph`` to its cache file (atomically); ``write=False`` does nothing."""
    if not write:
        return None
    from hwnas.lut.jsonio import atomic_write_text

    path = graph_path(graph.metric, graph.identity)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(graph.to_json(), indent=1))
    return path


def averaged(
    measure: Callable[[float, int], float], seeds: Sequence[int]
) -> Callable[[float], float]:
    """``K' -> mean over seeds of measure(K', seed)``: one graph point from several searches."""
    if not seeds:
        raise ValueError("averaged: at least one seed")

    def mean(bound: float) -> float:
        values = [measure(bound, seed) for seed in seeds]
        log.info(
            "lookup graph: K' %.6g -> derived %s", bound, ", ".join(f"{v:.6g}" for v in values)
        )
        return float(np.mean(values))

    return mean


def search_bound(
    limit: float,
    graph: LookupGraph,
    grid: Sequence[float],
    measure: Callable[[float], float],
    refine: int = 2,
    rtol: float = 0.02,
    write: bool = True,
) -> tuple[float, LookupGraph]:
    """K' for the budget ``limit``: complete the graph on ``grid``, refine it around the answer
    (at most ``refine`` more searches, :func:`next_bound`), and return
    :meth:`LookupGraph.search_bound`: the largest measured K' whose derived cost is within
    ``limit`` (the inverse when none is). Every new point is cached at once.

    Args:
        limit: the budget K_d on the derived architecture.
        graph: the graph so far (:func:`load_graph`).
        grid: bounds the graph must hold.
        measure: ``K' -> derived cost`` (runs one search).
        refine, rtol: refinement searches and their closeness test.
        write: save to the cache (False on non-zero data-parallel ranks).
    """
    for bound in grid:
        if not graph.has_near(bound, 1e-9):
            value = measure(bound)
            graph = graph.with_point(bound, value)
            save_graph(graph, write)
            log.info("lookup graph %s: K' %.6g -> derived %.6g", graph.metric, bound, value)
    for _ in range(refine):
        bound = next_bound(graph, limit, rtol)
        if bound is None:
            break
        graph = graph.with_point(bound, measure(bound))
        save_graph(graph, write)
    return graph.search_bound(limit), graph


def next_bound(graph: LookupGraph, limit: float, rtol: float) -> Optional[float]:
    """Where to measure next for ``limit``, None when nothing is left to learn there.

    The interpolated inverse, unless a measured bound lies within ``rtol`` of it. Then, if that
    point's curve is within ``limit`` the answer is known (None); if it is over, the derived cost
    jumps between the safe point and it (the argmax flips many layers at once where the softmax
    is flat): bisect between the largest safe bound and the smallest bound over ``limit``, or
    None when they are within ``rtol`` of each other.
    """
    bound = graph.inverse(limit)
    if not graph.has_near(bound, rtol):
        return bound
    safe = graph.safe_bound(limit)
    curve, bounds = graph.curve(), np.asarray(graph.bounds)
    over = bounds[curve > limit]
    if safe is None or not over.size or over.min() - safe <= rtol * over.min():
        return None
    middle = 0.5 * (safe + float(over.min()))
    return None if graph.has_near(middle, rtol) else middle
