"""Repair and fill: turn a candidate architecture into one that meets every budget, tightly.

Soft or consensus derivations can leave a budget violated (METHODS.md §0: on a toy, the argmax
architecture exceeded the budget that its expectation met). :func:`make_feasible` fixes that
against the exact cost tables of all constraints, then spends what is left:

* repair: while a budget is violated, make the change that loses the least value per unit of
  normalised relief (``sum over violated c of reduction_c / r_c``). Channel spaces drop the kept
  channel with the smallest ``v_i / max_c (h_ci / r_c)`` (METHODS.md §1.4); layer-wise spaces
  switch the op of one layer.
* fill [R] (``fill=True``): while some change adds value and keeps every budget, take the one with
  the most value per unit of normalised cost; then keep making changes that raise the cost while
  every budget holds, least value lost per unit of budget first (channel spaces: add every
  channel that fits, most valuable per unit of cost first). The final network is retrained from
  scratch, so unused budget is capacity left on the table; but fill adds ops or channels the
  method did not choose, so it is a choice of the run (``hwnas search --fill/--no-fill``), and
  every step it takes is recorded (:class:`Trace`) and reported next to the method's own
  architecture (:mod:`hwnas.search.finalize`).

``values`` are the method's preferences (Greedy-ADMM: ``alpha^2``; DARTS/DCA: softmax(alpha);
random search: random).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from hwnas.costs.models import Constraint
from hwnas.costs.tables import ChannelTable, ChoiceTable
from hwnas.errors import UserError
from hwnas.spaces.base import Arch, Space

_TOL = 1e-9


@dataclass
class Trace:
    """What repair and fill changed, in the order they changed it.

    Each step is ``(position, old, new)`` in the space's vector encoding: a layer and op indices
    on "choice" spaces (:meth:`~hwnas.spaces.base.Space.arch_vector`), a flat index into the
    (blocks, kernels) count array and channel counts on "channel" spaces (one step per block
    and kernel that changed, net of the stage).
    """

    repair: list[tuple[int, int, int]] = field(default_factory=list)
    fill: list[tuple[int, int, int]] = field(default_factory=list)
    repaired: Any = None  # the architecture after repair, before fill


def make_feasible(
    space: Space,
    start: np.ndarray,
    values: np.ndarray,
    constraints: Sequence[Constraint],
    fill: bool = True,
    trace: Optional[Trace] = None,
) -> Arch:
    """Repair then (``fill``) fill ``start``; return the architecture.

    Args:
        space: the space (its relaxation picks the procedure).
        start: op indices (L,) for "choice" spaces, a keep mask over items (N,) for "channel"
            and "edge" spaces (both priced by :class:`~hwnas.costs.tables.ChannelTable`).
        values: preferences of the same shape as the architecture parameters.
        constraints: the budgets (all must hold at the end).
        fill: after repair, spend the unused budget (module docstring); False: repair only.
        trace: if given, receives every change repair and fill made.

    Raises:
        UserError: if no architecture meeting all budgets together was found.
    """
    trace = trace if trace is not None else Trace()
    tables = [c.cost.table for c in constraints]
    limits = np.array([c.limit for c in constraints], dtype=np.float64)
    if not constraints:
        if space.relaxation == "choice":
            return space.arch_from_vector(start)
        return space.arch_from_vector(space.cost_table("flops").counts_from_keep(start))
    if space.relaxation == "choice":
        choice = _repair_choice(np.array(start, dtype=np.int64), values, tables, limits, trace)
        trace.repaired = space.arch_from_vector(choice.copy())
        if fill:
            choice = _fill_choice(choice, values, tables, limits, False, trace)
            choice = _fill_choice(choice, values, tables, limits, True, trace)
        arch = space.arch_from_vector(choice)
    else:
        counts = tables[0].counts_from_keep
        keep = np.array(start, dtype=bool)
        repaired = _repair_channel(keep.copy(), values, tables, limits)
        trace.repair.extend(_count_steps(counts(keep), counts(repaired)))
        keep = repaired
        trace.repaired = space.arch_from_vector(counts(keep))
        if fill:
            filled = _fill_channel(keep.copy(), values, tables, limits)
            trace.fill.extend(_count_steps(counts(keep), counts(filled)))
            keep = filled
        arch = space.arch_from_vector(counts(keep))
    broken = [c.metric for c in constraints if not c.satisfied(arch)]
    if broken:
        raise UserError(f"no architecture meets the budgets together ({', '.join(broken)})")
    return arch


# -- layer-wise ------------------------------------------------------------------------------------
def _choice_costs(choice: np.ndarray, tables: Sequence[ChoiceTable]) -> np.ndarray:
    return np.array([t.discrete(choice) for t in tables])


def _deltas(choice: np.ndarray, tables: Sequence[ChoiceTable]) -> np.ndarray:
    """(C, L, K) cost change of switching layer l to op k."""
    rows = np.arange(len(choice))
    return np.stack([t.values - t.values[rows, choice][:, None] for t in tables])


def _count_steps(before: np.ndarray, after: np.ndarray) -> list[tuple[int, int, int]]:
    """One step per (block, kernel) whose channel count changed: (flat index, old, new)."""
    a, b = before.ravel(), after.ravel()
    return [(int(i), int(a[i]), int(b[i])) for i in np.flatnonzero(a != b)]


def _repair_choice(choice, values, tables, limits, trace: Trace) -> np.ndarray:
    rows = np.arange(len(choice))
    for _ in range(choice.size * values.shape[1]):
        costs = _choice_costs(choice, tables)
        violated = costs > limits * (1 + _TOL)
        if not violated.any():
            break
        delta = _deltas(choice, tables)
        # net normalised relief on the violated budgets; never break a budget that holds
        relief = (-delta[violated] / limits[violated][:, None, None]).sum(0)
        needed = ((costs - limits)[violated] / limits[violated]).sum()
        credit = np.minimum(relief, needed)  # overshooting earns nothing
        breaks = np.any(
            (costs[~violated, None, None] + delta[~violated])
            > limits[~violated, None, None] * (1 + _TOL),
            axis=0,
        )
        loss = values[rows, choice][:, None] - values
        ok = (relief > _TOL) & ~breaks
        if not ok.any():
            break
        score = np.where(ok, loss / np.maximum(credit, _TOL), np.inf).ravel()
        best = np.lexsort((-relief.ravel(), score))[0]  # ties: the larger relief
        layer, op = np.unravel_index(best, values.shape)
        trace.repair.append((int(layer), int(choice[layer]), int(op)))
        choice[layer] = op
    return choice


def _fill_choice(choice, values, tables, limits, spend: bool, trace: Trace) -> np.ndarray:
    """Take fitting changes by value gained per normalised cost; with ``spend``, also the
    cost-raising changes that lose value (least loss per unit of budget first)."""
    rows = np.arange(len(choice))
    for _ in range(choice.size * values.shape[1]):
        costs = _choice_costs(choice, tables)
        if (costs > limits * (1 + _TOL)).any():
            break
        delta = _deltas(choice, tables)
        fits = np.all(costs[:, None, None] + delta <= limits[:, None, None] * (1 + _TOL), axis=0)
        gain = values - values[rows, choice][:, None]
        used = (np.maximum(delta, 0) / limits[:, None, None]).sum(0)
        wanted = (used > _TOL) if spend else (gain > _TOL)
        score = np.where(fits & wanted, gain / np.maximum(used, _TOL), -np.inf)
        layer, op = np.unravel_index(np.argmax(score), score.shape)
        if not np.isfinite(score[layer, op]):
            break
        trace.fill.append((int(layer), int(choice[layer]), int(op)))
        choice[layer] = op
    return choice


# -- channel-wise ----------------------------------------------------------------------------------
class _ChannelState:
    """Kept items with running costs per constraint (item costs + block setups)."""

    def __init__(self, keep: np.ndarray, tables: Sequence[ChannelTable]) -> None:
        self.keep = keep
        self.tables = tables
        self.block = tables[0].item_block
        self.count = np.bincount(self.block[keep], minlength=len(tables[0].block_cost))
        self.required = tables[0].required
        self.item_cost = np.stack([t.item_cost for t in tables])  # (C, N)
        self.setup = np.stack([t.block_cost for t in tables])  # (C, B)
        self.costs = np.array([t.discrete(t.counts_from_keep(keep)) for t in tables])

    def change(self, i: int, add: bool) -> np.ndarray:
        """Cost change (C,) of adding or dropping item i."""
        b = self.block[i]
        sign = 1.0 if add else -1.0
        opens = (self.count[b] == 0) if add else (self.count[b] == 1)
        setup = self.setup[:, b] if opens and not self.required[b] else 0.0
        return sign * (self.item_cost[:, i] + setup)

    def apply(self, i: int, add: bool) -> None:
        self.costs += self.change(i, add)
        self.keep[i] = add
        self.count[self.block[i]] += 1 if add else -1


def _priority(values: np.ndarray, state: _ChannelState, limits: np.ndarray) -> np.ndarray:
    """value_i / max_c (h_ci / r_c): value per unit of the most binding normalised cost."""
    weight = np.max(state.item_cost / limits[:, None], axis=0)
    return values / np.maximum(weight, _TOL)


def _repair_channel(keep, values, tables, limits) -> np.ndarray:
    block = tables[0].item_block
    for b in np.flatnonzero(tables[0].required):  # the guard: >= 1 channel where no residual
        members = np.flatnonzero(block == b)
        if not keep[members].any():
            keep[members[np.argmax(values[members])]] = True
    state = _ChannelState(keep, tables)
    for i in np.argsort(_priority(values, state, limits), kind="stable"):
        if np.all(state.costs <= limits * (1 + _TOL)):
            break
        if not state.keep[i] or (
            state.required[state.block[i]] and state.count[state.block[i]] == 1
        ):
            continue
        state.apply(int(i), add=False)
    return state.keep


def _fill_channel(keep, values, tables, limits) -> np.ndarray:
    state = _ChannelState(keep, tables)
    if np.any(state.costs > limits * (1 + _TOL)):
        return state.keep
    for i in np.argsort(-_priority(values, state, limits), kind="stable"):
        if state.keep[i]:
            continue
        if np.all(state.costs + state.change(int(i), add=True) <= limits * (1 + _TOL)):
            state.apply(int(i), add=True)
    return state.keep
