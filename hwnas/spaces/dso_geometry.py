"""Geometry, encoding and per-edge block specs of the ``dso`` space (torch-free).

DSO-NAS (Zhang, Huang, Wang, "You Only Search Once: Single Shot Neural Architecture Search via
Direct Sparse Optimization", arXiv 1811.01567; METHODS.md §7) searches by *pruning* a completely
connected block. Here, at CPU scale:

* Macro-architecture at ``resolution`` (32 for LUTs): a 3x3 stem conv 3 -> 16 (stride 1), three
  blocks of C = 16, 32, 64 channels, a fixed stride-2 3x3 conv before blocks 1 and 2 (the paper's
  fixed reduction units), global average pooling and a linear classifier.
* A block has an input node 0 (the block input) and ``NODES = 3`` nodes; node 3 is the block's
  output. Every earlier node j feeds every later node i through one edge per op of ``OPS``
  (6 node pairs x 3 ops = 18 edges); an edge computes ``op(h_j)`` scaled by its factor lambda, and
  node i sums its incoming edges. The block returns ``x + h_3`` (identity residual), so a block
  with no edge left is an identity.
* Ops, each conv + BN + ReLU (the paper's ops end in BN + ReLU): ``conv3x3``; ``sep3x3`` a
  MobileNet separable conv (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU); ``conv1x1``.
  Every op is made of :class:`~hwnas.blocks.specs.ConvSpec` blocks, so the LUT times exactly the
  modules the network runs, at any precision the FBNet ops can be written at.

Compared with the paper (M = 4 layers x N = 4 ops per block: sep 3x3, sep 5x5, max and avg pool;
op inputs weighted by lambda; a 1x1 conv per op into the block output): fewer nodes and ops so a
supernet trains on a CPU in minutes; pools are left out because a pooled edge has no weights a
lambda could be folded into, and ops carry their own BN + ReLU per edge so that a pruned edge is
exactly a removed module (the paper's per-op 1x1 output convs are our ``conv1x1`` edges into the
output node).

Architecture: the surviving edges, per block a sorted tuple of local edge indices
(``index = pair * 3 + op`` over the pairs ``(0,1), (0,2), (1,2), (0,3), (1,3), (2,3)``). Only
*live* edges are kept: on a path from the block input to its output (DSO's pruning removes ops
left without inputs or outputs). Text: per block its edges ``j>i:op`` joined by ``+`` (op codes
``c3``, ``s3``, ``c1``), ``-`` for an empty block, blocks joined by ``;``, e.g.
``0>3:c3+0>1:s3+1>3:c1;-;0>3:c1``. JSON: per block a list of ``[j, i, op index]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hwnas.blocks.specs import BlockSpec, ConvSpec, FCSpec, GAPSpec, conv_out

OPS = ("conv3x3", "sep3x3", "conv1x1")
OP_CODES = ("c3", "s3", "c1")
NODES = 3  # nodes after the block input; the last one is the block output
STEM_CHANNELS = 16
STAGE_CHANNELS = (16, 32, 64)
NUM_BLOCKS = len(STAGE_CHANNELS)
PAIRS = tuple((j, i) for i in range(1, NODES + 1) for j in range(i))
EDGES_PER_BLOCK = len(PAIRS) * len(OPS)
NUM_EDGES = NUM_BLOCKS * EDGES_PER_BLOCK

Arch = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class Edge:
    """Edge ``index`` of a block: ``op`` applied to node ``source``, summed into node ``target``."""

    index: int
    source: int
    target: int
    op: int

    @property
    def name(self) -> str:
        return f"{self.source}>{self.target}:{OP_CODES[self.op]}"


EDGES = tuple(
    Edge(p * len(OPS) + o, j, i, o) for p, (j, i) in enumerate(PAIRS) for o in range(len(OPS))
)


@dataclass(frozen=True)
class BlockSlot:
    """Block ``index``: ``c`` channels at ``h`` x ``h`` pixels (input = output shape)."""

    index: int
    h: int
    c: int


def scaled(channels: int, width: float) -> int:
    """``channels * width``; ``ValueError`` unless that is a positive integer."""
    value = channels * width
    if not float(value).is_integer() or value < 1:
        raise ValueError(f"width {width} gives {value} channels for {channels}")
    return int(value)


def block_slots(resolution: int = 32, width: float = 1.0) -> list[BlockSlot]:
    """The blocks for a ``resolution`` x ``resolution`` input, channels times ``width``."""
    out, h = [], resolution
    for b, c in enumerate(STAGE_CHANNELS):
        if b:
            h = conv_out(h, 3, 2)
        out.append(BlockSlot(b, h, scaled(c, width)))
    return out


def edge_specs(slot: BlockSlot, op: int) -> tuple[BlockSpec, ...]:
    """The block specs op ``op`` runs at ``slot`` (one edge's modules, in order)."""
    h, c = slot.h, slot.c
    if OPS[op] == "conv3x3":
        return (ConvSpec(h=h, w=h, cin=c, cout=c, kernel=3),)
    if OPS[op] == "sep3x3":
        return (
            ConvSpec(h=h, w=h, cin=c, cout=c, kernel=3, groups=c),
            ConvSpec(h=h, w=h, cin=c, cout=c, kernel=1),
        )
    if OPS[op] == "conv1x1":
        return (ConvSpec(h=h, w=h, cin=c, cout=c, kernel=1),)
    raise ValueError(f"unknown dso op index {op}")


def stem_spec(resolution: int, width: float = 1.0) -> ConvSpec:
    return ConvSpec(h=resolution, w=resolution, cin=3, cout=scaled(STEM_CHANNELS, width), kernel=3)


def reduction_specs(resolution: int, width: float = 1.0) -> list[ConvSpec]:
    """The fixed stride-2 3x3 convs before blocks 1, 2, ...; the stem's 16 -> block 0's 16
    needs none."""
    slots = block_slots(resolution, width)
    return [
        ConvSpec(h=a.h, w=a.h, cin=a.c, cout=b.c, kernel=3, stride=2)
        for a, b in zip(slots[:-1], slots[1:])
    ]


def head_specs(resolution: int, num_classes: int, width: float = 1.0) -> list[BlockSpec]:
    last = block_slots(resolution, width)[-1]
    return [GAPSpec(h=last.h, w=last.h, cin=last.c), FCSpec(h=1, w=1, cin=last.c, cout=num_classes)]


def fixed_specs(resolution: int = 32, num_classes: int = 10, width: float = 1.0) -> list[BlockSpec]:
    """Stem, reductions, pooling, classifier: the parts every architecture runs."""
    return [
        stem_spec(resolution, width),
        *reduction_specs(resolution, width),
        *head_specs(resolution, num_classes, width),
    ]


# -- live edges --------------------------------------------------------------------------------
def live_edges(kept: Iterable[int]) -> tuple[int, ...]:
    """The edges of ``kept`` (local indices) on a path from node 0 to node ``NODES``, sorted."""
    kept = sorted(set(kept))
    reached = {0}
    for i in range(1, NODES + 1):
        if any(EDGES[e].target == i and EDGES[e].source in reached for e in kept):
            reached.add(i)
    useful = {NODES}
    for j in range(NODES - 1, -1, -1):
        if any(EDGES[e].source == j and EDGES[e].target in useful for e in kept):
            useful.add(j)
    return tuple(e for e in kept if EDGES[e].source in reached and EDGES[e].target in useful)


def canonical(blocks: Sequence[Iterable[int]]) -> Arch:
    """Per block only its live edges (what DSO's pruning keeps)."""
    return tuple(live_edges(block) for block in blocks)


def check_arch(arch: Any) -> None:
    """Raise ``ValueError`` saying what is wrong with a ``dso`` architecture."""
    if not isinstance(arch, tuple) or len(arch) != NUM_BLOCKS:
        raise ValueError(f"dso arch needs {NUM_BLOCKS} blocks of edges")
    for b, block in enumerate(arch):
        if not isinstance(block, tuple) or not all(
            isinstance(e, int) and not isinstance(e, bool) for e in block
        ):
            raise ValueError(f"block {b}: edges must be a tuple of integers")
        bad = [e for e in block if not 0 <= e < EDGES_PER_BLOCK]
        if bad:
            raise ValueError(f"block {b}: edge index out of range 0..{EDGES_PER_BLOCK - 1}: {bad}")
        if list(block) != sorted(set(block)):
            raise ValueError(f"block {b}: edges must be sorted and distinct")
        dead = [EDGES[e].name for e in block if e not in live_edges(block)]
        if dead:
            raise ValueError(
                f"block {b}: edge(s) {', '.join(dead)} are on no path from the block input "
                f"(node 0) to its output (node {NODES}); drop them"
            )


def format_arch(arch: Arch) -> str:
    check_arch(arch)
    return ";".join("+".join(EDGES[e].name for e in block) or "-" for block in arch)


_BY_NAME = {edge.name: edge.index for edge in EDGES}


def parse_arch(text: str) -> Arch:
    """``"0>3:c3+1>3:s3;-;..."`` -> arch; ``ValueError`` says what is wrong."""
    parts = text.strip().split(";")
    if len(parts) != NUM_BLOCKS:
        raise ValueError(
            f"dso arch {text!r}: expected {NUM_BLOCKS} blocks joined by ';' (edges 'j>i:op' "
            f"joined by '+', '-' for an empty block; ops {', '.join(OP_CODES)})"
        )
    arch = []
    for b, part in enumerate(parts):
        names = [] if part.strip() == "-" else part.strip().split("+")
        unknown = [n for n in names if n not in _BY_NAME]
        if unknown:
            raise ValueError(
                f"block {b}: unknown edge(s) {', '.join(map(repr, unknown))}; edges are 'j>i:op' "
                f"with 0 <= j < i <= {NODES} and op in {', '.join(OP_CODES)}"
            )
        indices = [_BY_NAME[n] for n in names]
        if len(set(indices)) != len(indices):
            raise ValueError(f"block {b}: an edge is given twice")
        arch.append(tuple(sorted(indices)))
    check_arch(tuple(arch))
    return tuple(arch)
