"""Repair and fill for DARTS genotypes, by the same procedure as every other space.

A genotype is a choice per node: which two incoming edges, and which op on each. Seen that way
it is a layer-wise ("choice") architecture with 8 layers (4 nodes x 2 cell types) and up to
490 options per layer (C(5, 2) x 7 x 7 for the last node), and its cost is still additive:
``cost(option) = table[edge 1, op 1] + table[edge 2, op 2]``. :func:`make_feasible_cells` builds
those node-option tables from the constraints' (28, 8) edge tables and hands them to
:func:`hwnas.search.derive.make_feasible` (repair: cheapest loss of preference per unit of
relief; then fill), so DARTS and DCA-NAS genotypes are repaired (and filled, when the run asks)
like every other architecture (:mod:`hwnas.search.finalize`): the delivered genotype meets
every budget, or a :class:`~hwnas.errors.UserError` says none was found.

Preferences of an option are the summed edge weights of its two (edge, op) pairs, so the
genotype DARTS derives is the preferred option of every node (fill never moves away from it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import numpy as np

from hwnas.costs.models import Constraint, CostModel
from hwnas.costs.tables import ChoiceTable
from hwnas.search.derive import Trace, make_feasible
from hwnas.spaces import darts_genotype as gt
from hwnas.spaces.darts_geometry import STEPS

NODES = len(gt.CELL_TYPES) * STEPS  # 8 node slots (2 cells x 4 nodes)


def _slots() -> list[tuple[int, int]]:
    return [(c, n) for c in range(len(gt.CELL_TYPES)) for n in range(STEPS)]


class NodeOptions:
    """The node-option view of genotypes: 8 slots, ``width`` options each (shorter lists are
    padded with copies of their last option, which change nothing).

    Duck-types the parts of :class:`~hwnas.spaces.base.Space` that
    :func:`~hwnas.search.derive.make_feasible` uses (``relaxation``, ``arch_vector``,
    ``arch_from_vector``).
    """

    relaxation = "choice"

    def __init__(self) -> None:
        self.options = [gt.node_options(n) for _, n in _slots()]
        self.width = max(len(o) for o in self.options)
        self.rows = []  # per slot: (width, 2) global edge rows and (width, 2) ops
        for (c, n), opts in zip(_slots(), self.options):
            padded = np.concatenate([opts, np.repeat(opts[-1:], self.width - len(opts), 0)])
            base = c * gt.EDGES_PER_CELL + gt.edge_index(n, 0)
            self.rows.append((base + padded[:, [0, 2]], padded[:, [1, 3]]))

    def table(self, edge: ChoiceTable) -> ChoiceTable:
        """Node-option table (8, width) of an edge table (28, 8); same constant."""
        return ChoiceTable(self.scores(edge.values), edge.constant)

    def scores(self, edge_values: np.ndarray) -> np.ndarray:
        """(8, width): summed ``edge_values[row, op]`` of each option's two edges."""
        return np.stack([edge_values[r, o].sum(axis=1) for r, o in self.rows])

    def arch_vector(self, arch: gt.Genotype) -> np.ndarray:
        choice = np.zeros(NODES, dtype=np.int64)
        for slot, opts in enumerate(self.options):
            (s1, o1), (s2, o2) = arch[2 * slot], arch[2 * slot + 1]
            hit = np.flatnonzero((opts == (s1, o1, s2, o2)).all(axis=1))
            choice[slot] = int(hit[0])
        return choice

    def position_name(self, index: int) -> str:
        """``normal cell node 2``: positions 0-3 are the normal cell's nodes, 4-7 the reduce's."""
        cell = ("normal", "reduce")[int(index) // STEPS]
        return f"{cell} cell node {int(index) % STEPS}"

    def arch_from_vector(self, choice: np.ndarray) -> gt.Genotype:
        pairs = []
        for slot, opts in enumerate(self.options):
            s1, o1, s2, o2 = opts[min(int(choice[slot]), len(opts) - 1)]
            pairs.extend([(int(s1), int(o1)), (int(s2), int(o2))])
        return tuple(pairs)


_VIEW: list[NodeOptions] = []


def node_view() -> NodeOptions:
    """The (immutable, cached) node-option view."""
    if not _VIEW:
        _VIEW.append(NodeOptions())
    return _VIEW[0]


def make_feasible_cells(
    start: gt.Genotype,
    weights: np.ndarray,
    constraints: Sequence[Constraint],
    fill: bool = True,
    trace: Optional[Trace] = None,
) -> gt.Genotype:
    """Repair then fill genotype ``start`` against ``constraints`` (edge tables of a darts space).

    Args:
        start: the derived genotype.
        weights: (28, 8) edge-op preferences (softmax(alpha)).
        constraints: budgets on the darts space.
        fill: after repair, keep moving to costlier wirings while every budget holds (see
            :func:`~hwnas.search.derive.make_feasible`).
        trace: receives the changes, per node slot (positions 0-3: normal cell, 4-7: reduce).

    Raises:
        UserError: no genotype meeting every budget was found.
    """
    view = node_view()
    node_constraints = [
        Constraint(CostModel(c.metric, view.table(c.cost.table), view, c.cost.source), c.limit)  # type: ignore[arg-type]
        for c in constraints
    ]
    values = view.scores(np.asarray(weights, dtype=np.float64))
    arch = make_feasible(
        view,  # type: ignore[arg-type]
        view.arch_vector(start),
        values,
        node_constraints,
        fill=fill,
        trace=trace,
    )
    gt.check_genotype(arch)
    return arch
