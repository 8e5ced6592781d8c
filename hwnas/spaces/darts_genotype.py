"""DARTS genotypes (Liu, Simonyan, Yang, "DARTS", ICLR 2019): encodings and the derivation rule.

A genotype fixes, for the normal and for the reduction cell, the two incoming edges of each of the
4 intermediate nodes and the op on each of them (never ``none``). Torch-free (numpy only).

Encodings of one genotype:

* arch (hashable): a tuple of 16 ``(source, op)`` pairs, node by node, normal cell first; ``op``
  indexes :data:`PRIMITIVES` (1..7); within a node the smaller source comes first. Sources 0 and
  1 are the cell inputs, source ``2 + i`` is intermediate node ``i``.
* text: nodes joined by ``-``, the two edges of a node by ``+``, an edge as ``op@source``, the
  reduction cell after ``|``::

      sep_conv_3x3@0+sep_conv_3x3@1-skip_connect@0+sep_conv_3x3@1-...|max_pool_3x3@0+...

* JSON: ``{"normal": [[op, source], ...], "reduce": [...]}``, DARTS' own ``Genotype`` lists.
* vector (28,): the op of every edge of both cells (0 = ``none`` where the edge is not kept),
  normal cell first, edges in :func:`hwnas.spaces.darts_geometry.edges` order (node by node,
  sources ascending). This is the index space of the cost tables: the genotype's cost is the
  sum of its 16 kept edges.

Derivation (DARTS ``model_search.genotype``): for every node keep the 2 incoming edges whose
largest non-``none`` weight is largest, and on each the argmax op excluding ``none``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hwnas.spaces.darts_geometry import PRIMITIVES, STEPS

Genotype = tuple[tuple[int, int], ...]
CELL_TYPES = ("normal", "reduce")
EDGES_PER_CELL = sum(2 + i for i in range(STEPS))  # 14
NUM_EDGES = len(CELL_TYPES) * EDGES_PER_CELL  # 28
NUM_OPS = len(PRIMITIVES)
PAIRS = len(CELL_TYPES) * STEPS * 2  # 16
NONE = 0


def edge_index(node: int, source: int) -> int:
    """Row of edge ``source -> node`` within a cell (node 0..3, source 0..node+1)."""
    return node * (node + 3) // 2 + source


def node_rows(cell_type: int, node: int) -> np.ndarray:
    """Rows (of the 28) of the edges into ``node`` of cell type 0 (normal) or 1 (reduce)."""
    start = cell_type * EDGES_PER_CELL + edge_index(node, 0)
    return np.arange(start, start + node + 2)


def check_genotype(arch: Any) -> None:
    """Raise ``ValueError`` saying what is wrong with ``arch`` (see the module docstring)."""
    if not isinstance(arch, tuple) or len(arch) != PAIRS:
        raise ValueError(f"a darts genotype has {PAIRS} (source, op) pairs")
    for p in range(0, PAIRS, 2):
        node = (p // 2) % STEPS
        (s1, o1), (s2, o2) = arch[p], arch[p + 1]
        if not all(isinstance(v, (int, np.integer)) for v in (s1, o1, s2, o2)):
            raise ValueError("genotype entries must be integers")
        if not 0 <= s1 < s2 <= node + 1:
            raise ValueError(
                f"node {node} needs two different sources in 0..{node + 1}, "
                f"smaller first; got {s1}, {s2}"
            )
        if not (1 <= o1 < NUM_OPS and 1 <= o2 < NUM_OPS):
            raise ValueError(f"node {node}: ops must be 1..{NUM_OPS - 1} (never 'none')")


def _normalize(pairs: list[tuple[int, int]]) -> Genotype:
    """Sort each node's two edges by source; validate."""
    out: list[tuple[int, int]] = []
    for p in range(0, len(pairs), 2):
        out.extend(sorted(pairs[p : p + 2]))
    arch = tuple((int(s), int(o)) for s, o in out)
    check_genotype(arch)
    return arch


def format_genotype(arch: Genotype) -> str:
    check_genotype(arch)
    cells = []
    for c in range(len(CELL_TYPES)):
        nodes = []
        for n in range(STEPS):
            p = 2 * (c * STEPS + n)
            nodes.append("+".join(f"{PRIMITIVES[o]}@{s}" for s, o in arch[p : p + 2]))
        cells.append("-".join(nodes))
    return "|".join(cells)


def parse_genotype(text: str) -> Genotype:
    """Inverse of :func:`format_genotype`; raises ``ValueError`` naming the problem."""
    cells = text.strip().split("|")
    if len(cells) != len(CELL_TYPES):
        raise ValueError("a darts genotype is two cells (normal|reduce)")
    pairs: list[tuple[int, int]] = []
    for cell in cells:
        nodes = cell.split("-")
        if len(nodes) != STEPS:
            raise ValueError(f"each darts cell has {STEPS} nodes joined by '-'")
        for node in nodes:
            edges = node.split("+")
            if len(edges) != 2:
                raise ValueError(f"node {node!r} must have two edges joined by '+'")
            for edge in edges:
                op, _, source = edge.partition("@")
                if op not in PRIMITIVES or not source.isdigit():
                    raise ValueError(f"edge {edge!r} is not op@source with a DARTS op")
                pairs.append((int(source), PRIMITIVES.index(op)))
    return _normalize(pairs)


def genotype_to_json(arch: Genotype) -> dict[str, list[list[Any]]]:
    check_genotype(arch)
    half = PAIRS // 2
    return {
        name: [[PRIMITIVES[o], s] for s, o in arch[c * half : (c + 1) * half]]
        for c, name in enumerate(CELL_TYPES)
    }


def genotype_from_json(value: Any) -> Genotype:
    """Inverse of :func:`genotype_to_json`; raises ``ValueError`` on a malformed value."""
    if not isinstance(value, dict) or set(value) != set(CELL_TYPES):
        raise ValueError('a darts genotype is {"normal": [...], "reduce": [...]}')
    pairs: list[tuple[int, int]] = []
    for name in CELL_TYPES:
        for item in value[name]:
            if not (isinstance(item, list) and len(item) == 2 and item[0] in PRIMITIVES):
                raise ValueError(f"genotype entries are [op, source] pairs, got {item!r}")
            if not isinstance(item[1], int):
                raise ValueError(f"source must be an integer, got {item[1]!r}")
            pairs.append((item[1], PRIMITIVES.index(item[0])))
    return _normalize(pairs)


def genotype_vector(arch: Genotype) -> np.ndarray:
    """(28,) int64: the op of every edge, 0 (``none``) on edges the genotype does not keep."""
    check_genotype(arch)
    vector = np.zeros(NUM_EDGES, dtype=np.int64)
    for p, (source, op) in enumerate(arch):
        cell, node = divmod(p // 2, STEPS)
        vector[cell * EDGES_PER_CELL + edge_index(node, source)] = op
    return vector


def genotype_from_vector(vector: np.ndarray) -> Genotype:
    """Inverse of :func:`genotype_vector`; every node must keep exactly two edges."""
    v = np.asarray(vector).ravel()
    if v.shape != (NUM_EDGES,):
        raise ValueError(f"a darts edge vector has {NUM_EDGES} entries, got {v.shape}")
    pairs: list[tuple[int, int]] = []
    for c in range(len(CELL_TYPES)):
        for n in range(STEPS):
            rows = node_rows(c, n)
            kept = [(int(r - rows[0]), int(v[r])) for r in rows if v[r] != NONE]
            if len(kept) != 2:
                raise ValueError(f"{CELL_TYPES[c]} node {n} keeps {len(kept)} edges, not 2")
            pairs.extend(kept)
    return _normalize(pairs)


def derive_genotype(weights: np.ndarray) -> Genotype:
    """DARTS derivation from edge weights (28, 8), e.g. softmax(alpha) per edge.

    Per node: the 2 incoming edges with the largest non-``none`` weight (ties: smaller source),
    on each the argmax op excluding ``none`` (ties: the earlier op). ``none`` is never chosen,
    even where it has the largest weight.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (NUM_EDGES, NUM_OPS):
        raise ValueError(f"weights must have shape ({NUM_EDGES}, {NUM_OPS}), got {w.shape}")
    pairs: list[tuple[int, int]] = []
    for c in range(len(CELL_TYPES)):
        for n in range(STEPS):
            rows = node_rows(c, n)
            strength = w[rows, 1:].max(axis=1)
            top = np.argsort(-strength, kind="stable")[:2]
            pairs.extend((int(j), 1 + int(np.argmax(w[rows[j], 1:]))) for j in top)
    return _normalize(pairs)


def sample_genotype(rng: np.random.Generator) -> Genotype:
    """A uniform random genotype (two distinct sources and a non-``none`` op per node)."""
    pairs: list[tuple[int, int]] = []
    for _ in CELL_TYPES:
        for n in range(STEPS):
            sources = rng.choice(n + 2, size=2, replace=False)
            pairs.extend((int(s), int(rng.integers(1, NUM_OPS))) for s in sources)
    return _normalize(pairs)


def node_options(node: int) -> np.ndarray:
    """Every way to wire ``node``: rows ``(source1, op1, source2, op2)``, source1 < source2,
    ops non-``none``; shape (C(node + 2, 2) * 49, 4)."""
    ops = range(1, NUM_OPS)
    return np.array(
        [
            (s1, o1, s2, o2)
            for s1 in range(node + 2)
            for s2 in range(s1 + 1, node + 2)
            for o1 in ops
            for o2 in ops
        ],
        dtype=np.int64,
    )
