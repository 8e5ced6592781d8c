"""Geometry of the DARTS search network (Liu, Simonyan, Yang, ICLR 2019): shapes only, torch-free.

The CIFAR search network of ``quark0/darts`` (``model_search.py``), re-described: a 3x3 stem conv
3 -> 3C (stem multiplier 3), then ``layers`` cells; cells at ``layers // 3`` and
``2 * layers // 3`` are reduction cells that double C and halve the resolution. Each cell
preprocesses its two inputs to C channels (a 1x1 ReLU-conv-BN, or a FactorizedReduce when the
previous cell reduced), then has 4 intermediate nodes; node i sums one mixed op per earlier node
(2 + i edges, 14 edges per cell). In a reduction cell the edges leaving the two cell inputs have
stride 2. The cell output concatenates the 4 nodes (4C channels). Global average pooling and a
linear classifier follow.

Default: C = 16, 8 cells, 32 x 32 input, 10 classes (the DARTS CIFAR-10 search setting). This
module says which block spec every (edge, op) runs, so LUTs can be built for the space. The
``ReLUConvBN`` preprocessing is priced as :class:`ConvSpec` (conv + BN, no activation): the
leading ReLU is an elementwise op ORT fuses or runs in microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from hwnas.blocks.specs import (
    BlockSpec,
    ConvSpec,
    DilConvSpec,
    FactorizedReduceSpec,
    FCSpec,
    GAPSpec,
    PoolSpec,
    SepConvSpec,
)

PRIMITIVES = (
    "none",
    "max_pool_3x3",
    "avg_pool_3x3",
    "skip_connect",
    "sep_conv_3x3",
    "sep_conv_5x5",
    "dil_conv_3x3",
    "dil_conv_5x5",
)
STEPS = 4
MULTIPLIER = 4
STEM_MULTIPLIER = 3


@dataclass(frozen=True)
class CellGeometry:
    """Shapes around one cell.

    Attributes:
        index: position in the network (0-based).
        reduction: whether this cell halves the resolution (and doubled C).
        reduction_prev: whether the previous cell reduced (input 0 then needs a FactorizedReduce).
        c: the cell's channel count C (every edge op runs on C channels).
        h_in: resolution of the cell's inputs after preprocessing (square).
        s0: (h, channels) of input 0 before preprocessing (the cell two back, or the stem).
        s1: (h, channels) of input 1 before preprocessing (the previous cell, or the stem).
    """

    index: int
    reduction: bool
    reduction_prev: bool
    c: int
    h_in: int
    s0: tuple[int, int]
    s1: tuple[int, int]

    @property
    def h_out(self) -> int:
        return self.h_in // 2 if self.reduction else self.h_in

    @property
    def c_out(self) -> int:
        return MULTIPLIER * self.c


@dataclass(frozen=True)
class Edge:
    """One mixed-op edge: into intermediate node ``node`` from state ``source`` (0, 1: inputs)."""

    cell: int
    node: int
    source: int
    stride: int


def cells(c: int = 16, layers: int = 8, resolution: int = 32) -> list[CellGeometry]:
    """The cells of the search network, in order."""
    if c < 1 or layers < 3 or resolution < 4:
        raise ValueError(
            f"need C >= 1, layers >= 3, resolution >= 4; got {c}, {layers}, {resolution}"
        )
    stem = (resolution, STEM_MULTIPLIER * c)
    prev_prev, prev = stem, stem
    c_curr, reduction_prev = c, False
    out: list[CellGeometry] = []
    for i in range(layers):
        reduction = i in (layers // 3, 2 * layers // 3)
        if reduction:
            c_curr *= 2
        h_in = prev[0]  # input 1 sets the resolution; input 0 is reduced to it if needed
        cell = CellGeometry(i, reduction, reduction_prev, c_curr, h_in, prev_prev, prev)
        out.append(cell)
        prev_prev, prev = prev, (cell.h_out, cell.c_out)
        reduction_prev = reduction
    return out


def edges(cell: CellGeometry) -> list[Edge]:
    """The 14 edges of a cell (for ``STEPS`` = 4), node by node."""
    return [
        Edge(cell.index, node, j, 2 if cell.reduction and j < 2 else 1)
        for node in range(STEPS)
        for j in range(2 + node)
    ]


def edge_op_spec(cell: CellGeometry, edge: Edge, op: str) -> Optional[BlockSpec]:
    """The block spec op ``op`` runs on ``edge``; None for ops that run nothing.

    ``none`` (zeros) and a stride-1 ``skip_connect`` (identity) run no layer and cost 0 ms.
    """
    if op not in PRIMITIVES:
        raise ValueError(f"unknown DARTS op {op!r}; known: {', '.join(PRIMITIVES)}")
    s, c = edge.stride, cell.c
    h = cell.h_in if edge.source < 2 else cell.h_out
    if op == "none" or (op == "skip_connect" and s == 1):
        return None
    if op == "skip_connect":
        return FactorizedReduceSpec(h=h, w=h, cin=c, cout=c)
    if op in ("max_pool_3x3", "avg_pool_3x3"):
        return PoolSpec(h=h, w=h, cin=c, kind=op[:3], kernel=3, stride=s)
    kernel = int(op[-1])
    if op.startswith("sep_conv"):
        return SepConvSpec(h=h, w=h, cin=c, cout=c, kernel=kernel, stride=s)
    return DilConvSpec(h=h, w=h, cin=c, cout=c, kernel=kernel, stride=s, dilation=2)


def preprocess_specs(cell: CellGeometry) -> tuple[BlockSpec, BlockSpec]:
    """The two input preprocessing blocks of a cell (input 0, input 1)."""
    (h0, c0), (h1, c1) = cell.s0, cell.s1
    if cell.reduction_prev:
        first: BlockSpec = FactorizedReduceSpec(h=h0, w=h0, cin=c0, cout=cell.c)
    else:
        first = ConvSpec(h=h0, w=h0, cin=c0, cout=cell.c, kernel=1, act="none")
    second = ConvSpec(h=h1, w=h1, cin=c1, cout=cell.c, kernel=1, act="none")
    return first, second


def fixed_specs(
    c: int = 16, layers: int = 8, resolution: int = 32, num_classes: int = 10
) -> list[BlockSpec]:
    """Stem, every cell's preprocessing, global pooling and classifier (in network order)."""
    all_cells = cells(c, layers, resolution)
    out: list[BlockSpec] = [
        ConvSpec(h=resolution, w=resolution, cin=3, cout=STEM_MULTIPLIER * c, kernel=3, act="none")
    ]
    for cell in all_cells:
        out.extend(preprocess_specs(cell))
    last = all_cells[-1]
    out.append(GAPSpec(h=last.h_out, w=last.h_out, cin=last.c_out))
    out.append(FCSpec(h=1, w=1, cin=last.c_out, cout=num_classes))
    return out


def op_specs(c: int = 16, layers: int = 8, resolution: int = 32) -> list[BlockSpec]:
    """Every distinct spec an edge op can run in this network (first-seen order)."""
    seen: dict[str, BlockSpec] = {}
    for cell in cells(c, layers, resolution):
        for edge in edges(cell):
            for op in PRIMITIVES:
                spec = edge_op_spec(cell, edge, op)
                if spec is not None:
                    seen.setdefault(spec.key(), spec)
    return list(seen.values())
