"""From the method's own architecture to the delivered one: repair, optional fill, and the record.

Every method returns its *own* derived architecture (:attr:`SearchResult.arch
<hwnas.search.api.SearchResult>`), which may violate a budget (a soft method's argmax, a penalty
that was too weak), and its preferences over the architecture parameters
(:attr:`~hwnas.search.api.SearchResult.values`). :func:`finalize` then

1. records the own architecture: its exact cost per constraint and whether it is feasible;
2. repairs it until every budget holds (a user never gets an infeasible model), recording each
   change and the cost it added (:mod:`hwnas.search.derive`, :mod:`hwnas.search.cell_repair`);
3. fills the unused budget when the run asks for it (``fill``) and the method gave
   preferences to rank the additions by (methods without preferences, such as the uniform
   baseline, are never filled), again recording each change.

The record (``derivation`` in ``search.json`` and ``report.json``) is what tells a method's work
from the shared post-processing: a constraint hit that only fill reaches is not the method's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from hwnas.search.api import SearchProblem
from hwnas.search.derive import Trace, make_feasible
from hwnas.spaces.base import Arch


@dataclass(frozen=True)
class Finalized:
    """The delivered architecture and the JSON record of how it came from the method's own."""

    arch: Arch
    record: dict


def finalize(
    problem: SearchProblem, arch: Arch, values: Optional[np.ndarray], fill: bool
) -> Finalized:
    """Repair (and, with ``fill`` and preferences, fill) the method's own ``arch``.

    Args:
        problem: the search problem (space and constraints).
        arch: the method's own derived architecture.
        values: the method's preferences, shaped like the architecture parameters (None: the
            method has none; repair then takes the cheapest relief and fill does not apply).
        fill: spend the budget left after repair (``hwnas search --fill``).

    Raises:
        UserError: no architecture meeting every budget together was found.
    """
    space, constraints = problem.space, problem.constraints
    applies = values is not None
    prefs = np.zeros(space.alpha_shape) if values is None else np.asarray(values, np.float64)
    trace = Trace()
    codec: Any = space
    if space.relaxation == "cell":
        from hwnas.search.cell_repair import make_feasible_cells, node_view

        codec = node_view()
        final = make_feasible_cells(arch, prefs, constraints, fill and applies, trace)
    else:
        start = space.arch_vector(arch)
        if space.relaxation in ("channel", "edge"):  # one item per channel / edge
            start = space.cost_table("flops").keep_from_counts(start)
        final = make_feasible(space, start, prefs, constraints, fill and applies, trace)
    repaired = trace.repaired if trace.repaired is not None else arch
    own = _stage(problem, arch)
    record = {
        "own": own,
        "repair": {
            "needed": not own["feasible"],
            "steps": _steps(problem, codec, arch, trace.repair),
            **_stage(problem, repaired),
        },
        "fill": {
            "enabled": fill,
            "applies": applies,
            "steps": _steps(problem, codec, repaired, trace.fill),
            **_stage(problem, final),
        },
        "changed": final != arch,
    }
    return Finalized(final, record)


def _stage(problem: SearchProblem, arch: Arch) -> dict:
    costs = {c.metric: float(c.value(arch)) for c in problem.constraints}
    satisfied = {c.metric: bool(c.satisfied(arch)) for c in problem.constraints}
    return {
        "arch": problem.space.format_arch(arch),
        "costs": costs,
        "of_budget": {c.metric: costs[c.metric] / c.limit for c in problem.constraints},
        "satisfied": satisfied,
        "feasible": all(satisfied.values()),
    }


def _steps(problem: SearchProblem, codec: Any, arch: Arch, steps: list) -> list[dict]:
    """Each change as ``{position, index, from, to, added: {metric: cost added}}``."""
    vector = np.array(codec.arch_vector(arch))
    flat = vector.reshape(-1)
    before = {c.metric: float(c.value(arch)) for c in problem.constraints}
    out = []
    for index, old, new in steps:
        flat[index] = new
        now_arch = codec.arch_from_vector(vector)
        now = {c.metric: float(c.value(now_arch)) for c in problem.constraints}
        out.append(
            {
                "position": codec.position_name(index),
                "index": int(index),
                "from": int(old),
                "to": int(new),
                "added": {m: now[m] - before[m] for m in now},
            }
        )
        before = now
    return out
