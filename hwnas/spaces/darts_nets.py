"""PyTorch networks of the DARTS space: the search supernet and the standalone network.

Search supernet (Liu et al., ICLR 2019, ``model_search.py``, re-written): stem conv 3x3 -> 3C,
``layers`` cells (reductions at ``layers // 3`` and ``2 * layers // 3``), global pooling, linear
head. Every edge is a mixed op ``sum_o w[e, o] * o(x)`` over the 8 primitives with weights given
by the caller (28, 8): rows 0..13 for every normal cell, 14..27 for every reduction cell. As in
DARTS, every BN inside a cell is ``affine=False``; here it also keeps no running statistics
(search-time BN always normalises with batch statistics), and each pooling op has a BN appended.
``none`` outputs zeros, so ``w_none * 0`` is not computed; its weight still enters the softmax.

Two speed-ups of DCA-NAS (Dutta et al., arXiv 2307.04443, Sec. 3.3), both optional:

* weight sharing (Eq. 5, EnTranNAS "feature sharing"): the op ``o`` applied to source node ``i``
  is one module, computed once per forward and reused by every node ``j > i``:
  ``x_j = sum_i sum_o w[(i, j), o] * o_i(x_i)``.
* channel bottleneck: a 1x1 conv + BN squeezes every source state from C to C / b channels, the
  candidate ops run on C / b channels, and one 1x1 conv + BN per node expands the node's sum back
  to C (the paper does not give b; 4 follows PC-DARTS' K = 4 [R]).

ISTA-NAS (Yang et al., NeurIPS 2020) uses the same supernet sparsely: ``forward_sparse`` runs
only the picked (source, op) pairs of every node, and its one-stage mode ends every candidate op
in a frozen affine BN (``make_bn_affine_``, ``unfreeze_bn_``) into which the weights are folded
at the end (``fold_into_bn_``, Eq. 12).

Standalone network: the same macro-architecture with the genotype's two ops per node, built from
the block specs of :mod:`hwnas.spaces.darts_geometry` (the modules the LUT timed, BN affine), so
its FLOPs and parameters are the analytic sums and its latency the LUT sum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from hwnas.blocks.specs import BlockSpec
from hwnas.blocks.torch_blocks import GlobalAvgPool, build_module, init_weights_
from hwnas.spaces import darts_geometry as dg
from hwnas.spaces.darts_genotype import CELL_TYPES, EDGES_PER_CELL, Genotype, edge_index

STEPS = dg.STEPS
Picks = Sequence[Sequence[tuple[int, int]]]  # per node, its (source, op) pairs


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=False, track_running_stats=False)


def _conv(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1, dil: int = 1):
    return nn.Conv2d(cin, cout, k, stride, dil * (k - 1) // 2, dil, groups, bias=False)


class FactorizedReduce(nn.Module):
    """ReLU, two stride-2 1x1 convs on grids one pixel apart (cout / 2 each), concat, BN."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(cin, cout // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(cin, cout // 2, 1, stride=2, bias=False)
        self.bn = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        h, w = 2 * (x.shape[2] // 2), 2 * (x.shape[3] // 2)
        return self.bn(torch.cat([self.conv_1(x[:, :, :h, :w]), self.conv_2(x[:, :, 1:, 1:])], 1))


def search_op(name: str, c: int, stride: int) -> nn.Module:
    """Search-time module of DARTS primitive ``name`` on ``c`` channels (BN affine=False)."""
    if name == "max_pool_3x3":
        return nn.Sequential(nn.MaxPool2d(3, stride, 1), _bn(c))
    if name == "avg_pool_3x3":
        return nn.Sequential(nn.AvgPool2d(3, stride, 1, count_include_pad=False), _bn(c))
    if name == "skip_connect":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    k = int(name[-1])
    if name.startswith("sep_conv"):
        return nn.Sequential(
            nn.ReLU(), _conv(c, c, k, stride, c), _conv(c, c), _bn(c),
            nn.ReLU(), _conv(c, c, k, 1, c), _conv(c, c), _bn(c),
        )  # fmt: skip
    if name.startswith("dil_conv"):
        return nn.Sequential(nn.ReLU(), _conv(c, c, k, stride, c, dil=2), _conv(c, c), _bn(c))
    raise ValueError(f"no search module for DARTS op {name!r}")


class OpSet(nn.Module):
    """The 7 non-``none`` candidates of one edge (or of one source node, with weight sharing)."""

    def __init__(self, c: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(search_op(name, c, stride) for name in dg.PRIMITIVES[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, c, H, W) -> (7, B, c, H', W'), candidates in PRIMITIVES[1:] order."""
        return torch.stack([op(x) for op in self.ops])


def _relu_conv_bn(cin: int, cout: int) -> nn.Module:
    return nn.Sequential(nn.ReLU(), _conv(cin, cout), _bn(cout))


class SearchCell(nn.Module):
    """One search cell: (s0, s1, weights (14, 8)) -> (B, 4 C, H', W')."""

    def __init__(self, geo: dg.CellGeometry, weight_sharing: bool, bottleneck: int) -> None:
        super().__init__()
        c, cb = geo.c, geo.c // bottleneck
        self.reduction, self.weight_sharing = geo.reduction, weight_sharing
        c0, c1 = geo.s0[1], geo.s1[1]
        self.pre0 = FactorizedReduce(c0, c) if geo.reduction_prev else _relu_conv_bn(c0, c)
        self.pre1 = _relu_conv_bn(c1, c)
        sources = range(STEPS + 1)  # node 3 reads states 0..4
        self.squeeze = self.expand = None
        if bottleneck > 1:
            self.squeeze = nn.ModuleList(nn.Sequential(_conv(c, cb), _bn(cb)) for _ in sources)
            self.expand = nn.ModuleList(nn.Sequential(_conv(cb, c), _bn(c)) for _ in range(STEPS))
        stride = [2 if geo.reduction and j < 2 else 1 for j in sources]
        if weight_sharing:
            self.ops = nn.ModuleList(OpSet(cb, stride[j]) for j in sources)
        else:
            self.ops = nn.ModuleList(OpSet(cb, e.stride) for e in dg.edges(geo))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        inputs: list[torch.Tensor] = []  # the (squeezed) state each op reads
        shared: dict[int, torch.Tensor] = {}
        for node in range(STEPS):
            while len(inputs) < len(states):
                j = len(inputs)
                inputs.append(self.squeeze[j](states[j]) if self.squeeze else states[j])
            total = 0
            for j in range(node + 2):
                e = edge_index(node, j)
                if self.weight_sharing:
                    if j not in shared:
                        shared[j] = self.ops[j](inputs[j])
                    outs = shared[j]
                else:
                    outs = self.ops[e](inputs[j])
                total = total + torch.einsum("k,kbchw->bchw", weights[e, 1:], outs)
            states.append(self.expand[node](total) if self.expand else total)
        return torch.cat(states[2:], dim=1)

    def forward_sparse(
        self, s0: torch.Tensor, s1: torch.Tensor, picks: Picks, weights: torch.Tensor
    ) -> torch.Tensor:
        """Only the picked ops run: node n sums ``weights[n, i] * op(state[source])`` over its
        picks ``picks[n] = ((source, op), ...)`` (op indexes PRIMITIVES, never ``none``)."""
        if self.weight_sharing or self.squeeze is not None:
            raise ValueError("sparse forward runs without weight sharing and bottleneck")
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(STEPS):
            total = 0
            for (source, op), w in zip(picks[node], weights[node]):
                edge = self.ops[edge_index(node, source)]
                total = total + w * edge.ops[op - 1](states[source])
            states.append(total)
        return torch.cat(states[2:], dim=1)


@torch.no_grad()
def init_search_weights_(module: nn.Module, seed: int) -> nn.Module:
    """Deterministic init from ``seed``: He-normal convs, PyTorch-style linear layers; affine BN
    (the stem's) starts at the identity, the search BNs have no parameters."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.normal_(0.0, math.sqrt(2.0 / m.weight[0].numel()), generator=gen)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            m.weight.uniform_(-bound, bound, generator=gen)
            m.bias.uniform_(-bound, bound, generator=gen)
    return module


class DartsSupernet(nn.Module):
    """The search network; ``forward(x (B, 3, H, W), weights (28, 8)) -> (B, num_classes)``."""

    def __init__(
        self,
        c: int,
        layers: int,
        num_classes: int,
        weight_sharing: bool = False,
        bottleneck: int = 1,
    ) -> None:
        super().__init__()
        if bottleneck < 1 or c % bottleneck:
            raise ValueError(f"bottleneck {bottleneck} must divide the search channels C={c}")
        geometry = dg.cells(c, layers, 32)  # channels only; runs at any resolution
        stem = dg.STEM_MULTIPLIER * c
        self.stem = nn.Sequential(_conv(3, stem, 3), nn.BatchNorm2d(stem))
        self.cells = nn.ModuleList(SearchCell(g, weight_sharing, bottleneck) for g in geometry)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(geometry[-1].c_out, num_classes)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        normal, reduce = weights[:EDGES_PER_CELL], weights[EDGES_PER_CELL:]
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, reduce if cell.reduction else normal)
        return self.classifier(self.pool(s1))

    def forward_sparse(self, x: torch.Tensor, picks: Picks, weights: torch.Tensor) -> torch.Tensor:
        """Only the picked ops run (ISTA-NAS' sub-graph, Yang et al. NeurIPS 2020, Eq. 11).

        Args:
            x: (B, 3, H, W) images.
            picks: per node of the normal cell (0..3) then the reduction cell (4..7), its
                ``(source, op)`` pairs.
            weights: (8, picks per node) weight of every pick.
        """
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            first = STEPS if cell.reduction else 0
            part = slice(first, first + STEPS)
            s0, s1 = s1, cell.forward_sparse(s0, s1, picks[part], weights[part])
        return self.classifier(self.pool(s1))

    # -- ISTA-NAS one-stage (Yang et al., NeurIPS 2020, Alg. 2 and Eq. 12) ----------------------
    def make_bn_affine_(self) -> DartsSupernet:
        """Every candidate op ends in an affine BN frozen at gamma = 1, beta = 0 (the identity
        gets one); the one-stage search trains them once a node is fixed (:meth:`unfreeze_bn_`)."""
        for cell in self.cells:
            for opset in cell.ops:
                c = next(m for m in opset.modules() if isinstance(m, nn.BatchNorm2d)).num_features
                for k, op in enumerate(opset.ops):
                    if isinstance(op, nn.Identity):
                        opset.ops[k] = nn.Sequential(op, _bn(c))
                _frozen_affine_(opset)
        return self

    def unfreeze_bn_(self, reduction: bool, node: int) -> None:
        """BN affine of every candidate op on the edges into ``node`` become trainable."""
        for cell in self.cells:
            if cell.reduction == reduction:
                for source in range(node + 2):
                    for m in cell.ops[edge_index(node, source)].modules():
                        if isinstance(m, nn.BatchNorm2d) and m.affine:
                            m.requires_grad_(True)

    @torch.no_grad()
    def fold_into_bn_(self, picks: Picks, weights: torch.Tensor) -> None:
        """Eq. 12: ``gamma <- w gamma``, ``beta <- w beta`` in the last BN of every picked op
        (every op ends in one after :meth:`make_bn_affine_`), so that :meth:`forward_sparse`
        with unit weights gives what it gave with ``weights``."""
        for cell in self.cells:
            first = STEPS if cell.reduction else 0
            for node in range(STEPS):
                for (source, op), w in zip(picks[first + node], weights[first + node]):
                    module = cell.ops[edge_index(node, source)].ops[op - 1]
                    bn = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)][-1]
                    bn.weight.mul_(w)
                    bn.bias.mul_(w)


def _frozen_affine_(module: nn.Module) -> None:
    """Every BN under ``module`` becomes affine, gamma = 1 and beta = 0, not trainable."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            bn = nn.BatchNorm2d(child.num_features, track_running_stats=False)
            setattr(module, name, bn.requires_grad_(False))
        else:
            _frozen_affine_(child)


class DartsCell(nn.Module):
    """A standalone cell: two ops per node from the genotype, output the 4 nodes concatenated."""

    def __init__(self, geo: dg.CellGeometry, pairs: Genotype) -> None:
        super().__init__()
        first, second = dg.preprocess_specs(geo)
        self.pre0 = build_module(first) if geo.reduction_prev else _relu_then(first)
        self.pre1 = _relu_then(second)
        edges = dg.edges(geo)
        self.sources = [s for s, _ in pairs]
        specs = [
            dg.edge_op_spec(geo, edges[edge_index(p // 2, s)], dg.PRIMITIVES[o])
            for p, (s, o) in enumerate(pairs)
        ]
        self.ops = nn.ModuleList(nn.Identity() if s is None else build_module(s) for s in specs)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for node in range(STEPS):
            a, b = 2 * node, 2 * node + 1
            states.append(
                self.ops[a](states[self.sources[a]]) + self.ops[b](states[self.sources[b]])
            )
        return torch.cat(states[2:], dim=1)


def _relu_then(spec: BlockSpec) -> nn.Module:
    return nn.Sequential(nn.ReLU(), build_module(spec))


class DartsNet(nn.Module):
    """Standalone network of a genotype at ``resolution`` px: (B, 3, H, W) -> (B, num_classes)."""

    def __init__(
        self, genotype: Genotype, c: int, layers: int, resolution: int, num_classes: int, seed: int
    ) -> None:
        super().__init__()
        geometry = dg.cells(c, layers, resolution)
        fixed = dg.fixed_specs(c, layers, resolution, num_classes)
        self.stem = build_module(fixed[0])
        half = len(genotype) // len(CELL_TYPES)
        self.cells = nn.ModuleList(
            DartsCell(g, genotype[half:] if g.reduction else genotype[:half]) for g in geometry
        )
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(geometry[-1].c_out, num_classes)
        init_weights_(self, seed).train()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(self.pool(s1))
