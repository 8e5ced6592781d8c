"""PyTorch network -> :class:`hwnas.graph.nodes.Graph`, folding BatchNorm into the convolutions.

Handles the modules of :mod:`hwnas.blocks.torch_blocks` that FBNet networks are made of: conv +
BN + activation sequences (stem, head, non-identity skips), inverted bottlenecks (grouped 1x1
convs with channel shuffle, depthwise convs, identity residuals), identity skips, global average
pooling and the linear classifier; sequences of those; and blocks that are DAGs of them and say
so (the ``dso`` space's blocks): a module with ``graph_wiring()`` returning ``(edges, nodes,
residual)``, ``edges`` a list of ``(source node, target node, module)`` over nodes ``0..nodes``
(0: the block input), each node the sum of its edges, the output node ``nodes`` (plus the input
when ``residual``). A network that is no ``nn.Sequential`` may list its parts in
``graph_blocks()``. Anything else raises :class:`~hwnas.errors.UserError` naming the module, so
an unsupported space fails loudly instead of exporting a wrong graph.

BN folding (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018): with ``s = gamma / sqrt(running_var + eps)``,
``w' = w * s`` (per output channel) and ``b' = beta - running_mean * s (+ b * s)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hwnas.blocks.specs import BlockSpec
from hwnas.blocks.torch_blocks import ChannelShuffle, GlobalAvgPool, InvertedBottleneck
from hwnas.errors import UserError
from hwnas.graph.nodes import Add, Conv, GlobalPool, Graph, Linear, Node, Shuffle

_ACTS = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Identity: "none"}


class _Builder:
    """Accumulates nodes and hands out fresh tensor names."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.count = 0

    def name(self, kind: str) -> str:
        self.count += 1
        return f"{kind}{self.count}"

    def add(self, node: Node) -> str:
        self.nodes.append(node)
        return node.out


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Folded (weight (O, I/g, k, k), bias (O,)) float32 arrays of ``conv`` followed by ``bn``."""
    with torch.no_grad():
        w = conv.weight.detach().double()
        b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0])
        if bn is not None:
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * scale[:, None, None, None]
            b = bn.bias.double() + (b.double() - bn.running_mean.double()) * scale
    return w.float().numpy().copy(), b.float().numpy().copy()


def _check_conv(conv: nn.Conv2d, where: str) -> None:
    k = conv.kernel_size[0]
    ok = (
        k % 2 == 1
        and conv.kernel_size == (k, k)
        and conv.stride[0] == conv.stride[1]
        and conv.padding == ((k - 1) // 2, (k - 1) // 2)
        and conv.dilation == (1, 1)
    )
    if not ok:
        raise UserError(
            f"{where}: only square, odd, undilated convs with 'same' padding are supported"
        )


def _conv_seq(b: _Builder, seq: nn.Sequential, x: str, where: str) -> str:
    """conv [+ BN] [+ act] as one :class:`Conv` node."""
    mods = list(seq)
    if not mods or not isinstance(mods[0], nn.Conv2d):
        raise UserError(f"{where}: expected a conv + BN + activation sequence")
    conv = mods[0]
    _check_conv(conv, where)
    bn = mods[1] if len(mods) > 1 and isinstance(mods[1], nn.BatchNorm2d) else None
    rest = mods[2:] if bn is not None else mods[1:]
    act = "none"
    if rest:
        if len(rest) > 1 or type(rest[0]) not in _ACTS:
            raise UserError(f"{where}: unsupported activation {type(rest[-1]).__name__}")
        act = _ACTS[type(rest[0])]
    w, bias = fold_conv_bn(conv, bn)
    name = b.name("conv")
    return b.add(Conv(name, x, f"{name}_out", w, bias, int(conv.stride[0]), conv.groups, act))


def _inverted_bottleneck(b: _Builder, m: InvertedBottleneck, x: str, where: str) -> str:
    y = _conv_seq(b, m.expand, x, f"{where}.expand")
    if isinstance(m.shuffle, ChannelShuffle):
        name = b.name("shuffle")
        y = b.add(Shuffle(name, y, f"{name}_out", m.shuffle.groups))
    y = _conv_seq(b, m.depthwise, y, f"{where}.depthwise")
    y = _conv_seq(b, m.project, y, f"{where}.project")
    if m.res:
        name = b.name("add")
        y = b.add(Add(name, x, y, f"{name}_out"))
    return y


def _sum(b: _Builder, parts: list[str]) -> str:
    total = parts[0]
    for part in parts[1:]:
        name = b.name("add")
        total = b.add(Add(name, total, part, f"{name}_out"))
    return total


def _dag(b: _Builder, m: nn.Module, x: str, where: str) -> str:
    """A block wired as ``m.graph_wiring()`` says (module docstring)."""
    edges, nodes, residual = m.graph_wiring()
    values = {0: x}
    for i in range(1, nodes + 1):
        parts = [
            _block(b, op, values[s], f"{where}.edge {s}>{t}")
            for s, t, op in edges
            if t == i and s in values
        ]
        if parts:
            values[i] = _sum(b, parts)
    if nodes not in values:
        return x
    return _sum(b, [x, values[nodes]]) if residual else values[nodes]


def _block(b: _Builder, m: nn.Module, x: str, where: str) -> str:
    if isinstance(m, nn.Identity):
        return x
    if isinstance(m, InvertedBottleneck):
        return _inverted_bottleneck(b, m, x, where)
    if isinstance(m, nn.Sequential) and len(m) and isinstance(m[0], nn.Conv2d):
        return _conv_seq(b, m, x, where)
    if isinstance(m, nn.Sequential) and len(m):
        for i, part in enumerate(m):
            x = _block(b, part, x, f"{where}.{i}")
        return x
    if hasattr(m, "graph_wiring"):
        return _dag(b, m, x, where)
    if isinstance(m, GlobalAvgPool):
        name = b.name("pool")
        return b.add(GlobalPool(name, x, f"{name}_out"))
    if isinstance(m, nn.Linear):
        name = b.name("fc")
        w = m.weight.detach().float().numpy().copy()
        bias = (
            m.bias.detach().float().numpy().copy()
            if m.bias is not None
            else np.zeros(w.shape[0], np.float32)
        )
        return b.add(Linear(name, x, f"{name}_out", w, bias))
    raise UserError(
        f"{where}: cannot quantize or export a {type(m).__name__}; supported: conv+BN+act, "
        "inverted bottleneck, identity skip, global pooling, linear"
    )


def graph_from_module(
    module: nn.Module, input_shape: Sequence[int], blocks: Sequence[nn.Module] | None = None
) -> Graph:
    """Fold an eval-mode network into a :class:`Graph`.

    Args:
        module: an ``nn.Sequential`` of FBNet-space blocks (``build_sequential``), one block, or
            a network listing its blocks in ``graph_blocks()`` (module docstring).
        input_shape: (1, C, H, W).
        blocks: the blocks in order, if ``module`` is not itself a sequence of them.

    Returns:
        The graph; its output is named ``"output"`` and its input ``"input"``.
    """
    if blocks is None and hasattr(module, "graph_blocks"):
        blocks = module.graph_blocks()
    parts = (
        list(blocks)
        if blocks is not None
        else (
            list(module)
            if isinstance(module, nn.Sequential) and not _is_conv_seq(module)
            else [module]
        )
    )
    b = _Builder()
    x = "input"
    for i, block in enumerate(parts):
        x = _block(b, block, x, f"block {i} ({type(block).__name__})")
    if not b.nodes:
        raise UserError("the network has no layers to export")
    last = b.nodes[-1]
    b.nodes[-1] = _renamed_output(last, "output")
    if x != last.out:
        raise UserError("the network must end in a layer, not an identity")
    return Graph(tuple(b.nodes), tuple(int(d) for d in input_shape))


def _is_conv_seq(module: nn.Sequential) -> bool:
    return len(module) > 0 and isinstance(module[0], nn.Conv2d)


def _renamed_output(node: Node, out: str) -> Node:
    from dataclasses import replace

    return replace(node, out=out)


def spec_graph(spec: BlockSpec, seed: int = 0) -> Graph:
    """The folded graph of block ``spec``'s module (``build_module(spec, seed)``)."""
    from hwnas.blocks.torch_blocks import build_module

    return graph_from_module(build_module(spec, seed), spec.in_shape)


def network_graph(specs: Sequence[BlockSpec]) -> Graph:
    """The folded graph of a whole network given as block specs (``build_sequential(specs)``)."""
    from hwnas.blocks.torch_blocks import build_sequential

    return graph_from_module(build_sequential(specs), specs[0].in_shape)
