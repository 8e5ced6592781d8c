"""The ``dso`` space: completely connected blocks pruned edge by edge (DSO-NAS, METHODS.md §7).

Geometry, encoding and block specs are in :mod:`hwnas.spaces.dso_geometry` (Zhang, Huang,
Wang, "You Only Search Once", arXiv 1811.01567).

* Relaxation ``"edge"``: one scale factor lambda per edge, shape (54,) = 3 blocks x 18 edges,
  block by block in :data:`~hwnas.spaces.dso_geometry.EDGES` order. The supernet multiplies edge
  e's output by ``weights[e]``. A node is *present* when one of its incoming edges has a non-zero
  scale and a present source; absent nodes are skipped with their outgoing edges (DSO removes ops
  left without inputs), so the supernet with scales ``lambda >= 0`` is exactly the physically
  pruned network (:func:`prune`, lambda folded into each edge's last BN; tested). Edges with a zero
  scale from a present source are still computed, so that their gradient may regrow them.
  DSO-NAS fixes the BN gamma of every op at 1 during the search (``fix_bn_gamma=True``), so a
  shrinking lambda cannot be undone by the next BN's scale.
* Standalone network: the same modules for the surviving edges only (an empty block is an
  identity), built from the specs the LUT times.
* Cost tables: :class:`~hwnas.costs.tables.ChannelTable` with one item per edge (blocks x 18
  groups of at most one item, no setup costs): ``cost(arch) = constant + sum over surviving
  edges of cost(edge)``, where an edge's cost is the sum over its block specs (a ``sep3x3`` edge
  is its depthwise and pointwise convs) and the constant is stem, reductions, pooling and
  classifier. FLOPs (MACs) and params are analytic; latency sums the entries of a ``dso`` LUT
  built on the device (``hwnas build-lut --space dso``). Elementwise adds (edge sums, the
  residual) are not priced. ``DeltaLUT`` of an edge, the latency its removal saves, is then its own
  cost plus the cost of the edges its removal leaves dead (:func:`edge_savings`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import nn

from hwnas.blocks.specs import BlockSpec
from hwnas.blocks.torch_blocks import build_module, init_weights_
from hwnas.costs.tables import ChannelTable
from hwnas.errors import UserError
from hwnas.spaces import dso_geometry as geo
from hwnas.spaces.base import METRICS, SPACES, Space, SpaceConfig

WIDTHS = (1.0, 0.5, 0.25)


def _edge_module(slot: geo.BlockSlot, edge: int) -> nn.Sequential:
    return nn.Sequential(*(build_module(s) for s in geo.edge_specs(slot, geo.EDGES[edge].op)))


class DSOBlock(nn.Module):
    """A completely connected block with the edges ``edges`` (local indices): (B, c, h, w) ->
    (B, c, h, w), ``x + h_out`` (``x`` when the output node is absent)."""

    def __init__(self, slot: geo.BlockSlot, edges: Sequence[int]) -> None:
        super().__init__()
        self.edges = tuple(int(e) for e in edges)
        self.ops = nn.ModuleList(_edge_module(slot, e) for e in self.edges)

    def forward(self, x: torch.Tensor, scales: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``scales``: (18,) factors of all edges of a block (supernet), or None (all 1)."""
        nonzero = None if scales is None else (scales != 0).tolist()
        nodes: list[Optional[torch.Tensor]] = [x] + [None] * geo.NODES
        for i in range(1, geo.NODES + 1):
            parts, present = [], False
            for op, e in zip(self.ops, self.edges):
                edge = geo.EDGES[e]
                source = nodes[edge.source]
                if edge.target != i or source is None:
                    continue
                y = op(source)
                parts.append(y if scales is None else scales[e] * y)
                present = present or nonzero is None or nonzero[e]
            if parts and present:
                nodes[i] = torch.stack(parts).sum(0) if len(parts) > 1 else parts[0]
        out = nodes[geo.NODES]
        return x if out is None else x + out

    def graph_wiring(self) -> tuple[list, int, bool]:
        """``(edges as (source, target, module), nodes, residual)`` for :mod:`hwnas.graph.lower`
        (the standalone block: every edge's scale is 1)."""
        wiring = [
            (geo.EDGES[e].source, geo.EDGES[e].target, op) for e, op in zip(self.edges, self.ops)
        ]
        return wiring, geo.NODES, True


class DSONet(nn.Module):
    """Stem, blocks with reductions between them, pooling, classifier.

    ``forward(x, weights=None)``: ``weights`` (54,) are the supernet's edge scales (the blocks
    must then hold all 18 edges each).
    """

    def __init__(self, config: SpaceConfig, width: float, arch: Sequence[Sequence[int]]) -> None:
        super().__init__()
        res = config.resolution
        self.stem = build_module(geo.stem_spec(res, width))
        slots = geo.block_slots(res, width)
        self.blocks = nn.ModuleList(DSOBlock(s, edges) for s, edges in zip(slots, arch))
        self.reductions = nn.ModuleList(build_module(s) for s in geo.reduction_specs(res, width))
        self.head = nn.Sequential(
            *(build_module(s) for s in geo.head_specs(res, config.num_classes, width))
        )
        self.config, self.width = config, width

    def graph_blocks(self) -> list[nn.Module]:
        """The parts in order, for :mod:`hwnas.graph.lower` (export, quantization)."""
        parts = [self.stem]
        for b, block in enumerate(self.blocks):
            parts += [self.reductions[b - 1], block] if b else [block]
        return [*parts, *self.head]

    def forward(self, x: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.stem(x)
        n = geo.EDGES_PER_BLOCK
        for b, block in enumerate(self.blocks):
            if b:
                x = self.reductions[b - 1](x)
            x = block(x, None if weights is None else weights[b * n : (b + 1) * n])
        return self.head(x)


def fix_bn_gamma_(net: DSONet) -> DSONet:
    """Set every edge op's BN gamma to 1 and freeze it (DSO-NAS, METHODS.md §7.1)."""
    with torch.no_grad():
        for block in net.blocks:
            for m in block.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.weight.fill_(1.0)
                    m.weight.requires_grad_(False)
    return net


def surviving(weights: np.ndarray) -> geo.Arch:
    """The architecture of edge scales (54,): non-zero edges, live ones only."""
    w = np.asarray(weights).reshape(geo.NUM_BLOCKS, geo.EDGES_PER_BLOCK)
    return geo.canonical([np.flatnonzero(row != 0).tolist() for row in w])


@torch.no_grad()
def prune(supernet: DSONet, weights: torch.Tensor) -> DSONet:
    """The physically pruned network of ``supernet`` at scales ``weights`` (54,) >= 0.

    Only the surviving edges (:func:`surviving`) are built; each one's scale is folded into its
    last BN (gamma and beta times lambda: ``lambda * relu(y) == relu(lambda * y)`` for lambda >= 0),
    so ``prune(net, w)(x) == net(x, w)`` in train and eval mode.
    """
    if bool((weights < 0).any()):
        raise ValueError("pruning folds the scales into BN + ReLU: they must be >= 0")
    arch = surviving(weights.detach().numpy())
    out = DSONet(supernet.config, supernet.width, arch)
    for name in ("stem", "reductions", "head"):
        getattr(out, name).load_state_dict(getattr(supernet, name).state_dict())
    n = geo.EDGES_PER_BLOCK
    for b, (big, small) in enumerate(zip(supernet.blocks, out.blocks)):
        for op, e in zip(small.ops, small.edges):
            op.load_state_dict(big.ops[big.edges.index(e)].state_dict())
            last_bn = [m for m in op.modules() if isinstance(m, nn.BatchNorm2d)][-1]
            last_bn.weight.mul_(weights[b * n + e])
            last_bn.bias.mul_(weights[b * n + e])
    return out.train(supernet.training)


@SPACES.register("dso")
class DSOSpace(Space):
    """Completely connected blocks pruned edge by edge (see the module docstrings)."""

    name = "dso"
    relaxation = "edge"
    lut_space = ""  # not a slot space of hwnas.lut: latency is priced from LUT entries directly
    latency_luts = ("dso",)

    def __init__(self, config: SpaceConfig) -> None:
        super().__init__(config)
        if config.search_width not in WIDTHS:
            raise UserError(f"dso search width must be one of {WIDTHS}, got {config.search_width}")
        self.slots = geo.block_slots(config.resolution)

    # -- encodings -------------------------------------------------------------------------------
    def parse_arch(self, text: str) -> geo.Arch:
        try:
            return geo.parse_arch(text)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def format_arch(self, arch: geo.Arch) -> str:
        return geo.format_arch(arch)

    def arch_to_json(self, arch: geo.Arch) -> list[list[list[int]]]:
        geo.check_arch(arch)
        return [
            [[geo.EDGES[e].source, geo.EDGES[e].target, geo.EDGES[e].op] for e in b] for b in arch
        ]

    def arch_from_json(self, value: Any) -> geo.Arch:
        by_triple = {(e.source, e.target, e.op): e.index for e in geo.EDGES}
        try:
            arch = tuple(
                tuple(sorted(by_triple[tuple(int(v) for v in edge)] for edge in block))
                for block in value
            )
            geo.check_arch(arch)
        except (TypeError, ValueError, KeyError) as exc:
            raise UserError(
                f"malformed dso arch (per block a list of [source, target, op]): {exc}"
            ) from None
        return arch

    # -- relaxation and costs ----------------------------------------------------------------------
    @property
    def alpha_shape(self) -> tuple[int]:
        return (geo.NUM_EDGES,)

    def arch_vector(self, arch: geo.Arch) -> np.ndarray:
        """(blocks, 18) 0/1: which edges survive (the item counts of the cost tables)."""
        geo.check_arch(arch)
        vector = np.zeros((geo.NUM_BLOCKS, geo.EDGES_PER_BLOCK), dtype=np.int64)
        for b, block in enumerate(arch):
            vector[b, list(block)] = 1
        return vector

    def arch_from_vector(self, vector: np.ndarray) -> geo.Arch:
        """Inverse of :meth:`arch_vector`; edges left dead (no path in and out) are pruned."""
        return surviving(np.asarray(vector).ravel())

    def position_name(self, index: int) -> str:
        block, edge = divmod(int(index), geo.EDGES_PER_BLOCK)
        return f"block {block} edge {geo.EDGES[edge].name}"

    def cost_table(self, metric: str, latency_predictor: Any = None) -> ChannelTable:
        c = self.config
        if metric == "latency_ms":
            price = _lut_pricer(latency_predictor, c.resolution, c.num_classes)
        elif metric == "flops":
            price = lambda s: s.flops()  # noqa: E731
        elif metric == "params":
            price = lambda s: s.params()  # noqa: E731
        else:
            raise UserError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        unit = [
            [sum(price(s) for s in geo.edge_specs(slot, edge.op)) for edge in geo.EDGES]
            for slot in self.slots
        ]
        constant = sum(price(s) for s in geo.fixed_specs(c.resolution, c.num_classes))
        shape = (geo.NUM_BLOCKS, geo.EDGES_PER_BLOCK)
        none = np.zeros(geo.NUM_BLOCKS)
        return ChannelTable(unit, np.ones(shape, np.int64), none, none.astype(bool), constant)

    def sample_arch(self, rng: np.random.Generator) -> geo.Arch:
        return surviving(rng.random(geo.NUM_EDGES) < 0.35)

    # -- networks ------------------------------------------------------------------------------
    def build_supernet(self, seed: int = 0, fix_bn_gamma: bool = True) -> DSONet:
        every = [tuple(range(geo.EDGES_PER_BLOCK))] * geo.NUM_BLOCKS
        net = init_weights_(DSONet(self.config, self.config.search_width, every), seed).train()
        return fix_bn_gamma_(net) if fix_bn_gamma else net

    def build_net(self, arch: geo.Arch, width: float = 1.0, seed: int = 0) -> DSONet:
        geo.check_arch(arch)
        try:
            return init_weights_(DSONet(self.config, width, arch), seed).train()
        except ValueError as exc:
            raise UserError(str(exc)) from None


def edge_savings(cost: Callable[[geo.Arch], float], keep: np.ndarray) -> np.ndarray:
    """(54,) cost each edge's removal saves from the architecture of ``keep`` (54,) bool (for an
    edge not kept: what adding it would cost), edges left dead by the change counted too."""
    keep = np.asarray(keep, dtype=bool)
    base = cost(surviving(keep))
    out = np.zeros(keep.size)
    for e in range(keep.size):
        flipped = keep.copy()
        flipped[e] = not keep[e]
        out[e] = abs(base - cost(surviving(flipped)))
    return out


def _lut_pricer(source: Any, resolution: int, num_classes: int) -> Callable[[BlockSpec], float]:
    """Block latency (ms) from a ``dso`` LUT (a LUT, or anything holding one in ``.lut``)."""
    from hwnas.lut.calibration import Pricer

    lut = getattr(source, "lut", source)
    if lut is None or not hasattr(lut, "entries"):
        raise UserError(
            "dso latency needs a dso LUT measured on a device "
            "(hwnas build-lut --device local --space dso)"
        )
    if lut.space not in (None, "dso") or (lut.resolution or 32) != resolution:
        raise UserError(
            f"LUT {lut.device_name!r} is for space {lut.space!r} at {lut.resolution} px, "
            f"not dso at {resolution} px"
        )
    if (lut.num_classes or num_classes) != num_classes:
        raise UserError(f"the dso LUT has a {lut.num_classes}-class classifier, not {num_classes}")
    pricer = Pricer.of(lut)

    def price(spec: BlockSpec) -> float:
        term = pricer.term(spec)
        return 0.0 if term is None else term[1]

    return price
