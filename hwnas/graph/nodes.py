"""A tiny inference graph: BN-folded layers as numpy arrays, the form every exporter writes.

A network from :func:`hwnas.blocks.torch_blocks.build_sequential` (FBNet stem, inverted
bottlenecks, skips, head conv, global pooling, classifier) becomes a :class:`Graph`: a list of
nodes in execution order, each reading and writing named tensors. Convolutions carry their
BatchNorm folded in (``w' = w * gamma / sqrt(var + eps)``, ``b' = beta - gamma * mean /
sqrt(var + eps)``) and their activation fused, the way both onnxruntime and TFLite execute them.
The same graph drives the fake-quantized PyTorch model (:mod:`hwnas.quant.qnet`), the ONNX writer
(:mod:`hwnas.export.onnx_writer`) and the TFLite writer (:mod:`hwnas.export.tflite_writer`), so
the three agree by construction.

Layout is NCHW (PyTorch's); the TFLite writer transposes to NHWC. Weights: conv ``(O, I/g, k, k)``,
linear ``(O, I)``. Padding of a conv is ``(k - 1) // 2`` on every side (as
:func:`hwnas.blocks.specs.conv_out`). Torch-free: only numpy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union

import numpy as np

ACTS = ("none", "relu", "relu6")


@dataclass(frozen=True, eq=False)
class Conv:
    """2-D convolution + folded BN + fused activation: ``act(conv(x, weight) + bias)``."""

    name: str
    inp: str
    out: str
    weight: np.ndarray  # (O, I / groups, k, k) float32
    bias: np.ndarray  # (O,) float32
    stride: int
    groups: int
    act: str = "none"

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[2])

    @property
    def cout(self) -> int:
        return int(self.weight.shape[0])

    @property
    def cin(self) -> int:
        return int(self.weight.shape[1]) * self.groups

    @property
    def is_depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.cin == self.cout


@dataclass(frozen=True, eq=False)
class Linear:
    """Fully connected layer ``x @ weight.T + bias`` on a (N, I) input."""

    name: str
    inp: str
    out: str
    weight: np.ndarray  # (O, I) float32
    bias: np.ndarray  # (O,) float32
    act: str = "none"


@dataclass(frozen=True)
class Add:
    """Elementwise sum of two tensors of equal shape (a residual connection)."""

    name: str
    a: str
    b: str
    out: str


@dataclass(frozen=True)
class Shuffle:
    """ShuffleNet channel shuffle with ``groups`` groups (a permutation of channels)."""

    name: str
    inp: str
    out: str
    groups: int


@dataclass(frozen=True)
class GlobalPool:
    """Global average pooling, flattened: (N, C, H, W) -> (N, C)."""

    name: str
    inp: str
    out: str


Node = Union[Conv, Linear, Add, Shuffle, GlobalPool]
Layer = Union[Conv, Linear]


def node_inputs(node: Node) -> tuple[str, ...]:
    """Names of the tensors ``node`` reads."""
    return (node.a, node.b) if isinstance(node, Add) else (node.inp,)


@dataclass(frozen=True)
class Graph:
    """A network as nodes in execution order, from ``input_name`` (1, C, H, W) to ``output_name``.

    Attributes:
        nodes: the nodes; every tensor is written once, before it is read.
        input_shape: (1, C, H, W) of the input tensor.
        input_name: name of the input tensor.
        output_name: name of the output tensor (logits (1, num_classes) for a classifier).
    """

    nodes: tuple[Node, ...]
    input_shape: tuple[int, int, int, int]
    input_name: str = "input"
    output_name: str = "output"
    shapes: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shapes", infer_shapes(self))

    @property
    def layers(self) -> list[Layer]:
        """The quantizable layers (convs and linears) in execution order."""
        return [n for n in self.nodes if isinstance(n, (Conv, Linear))]

    def producer(self, tensor: str) -> Node | None:
        """The node writing ``tensor`` (None for the graph input)."""
        for node in self.nodes:
            if node.out == tensor:
                return node
        return None

    def consumers(self, tensor: str) -> list[Node]:
        """The nodes reading ``tensor``, in execution order."""
        return [n for n in self.nodes if tensor in node_inputs(n)]

    def tensors(self) -> Iterator[str]:
        """Every tensor name: the input, then each node's output."""
        yield self.input_name
        for node in self.nodes:
            yield node.out


def infer_shapes(graph: Graph) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor of ``graph`` at batch 1; raises ``ValueError`` on a mismatch."""
    shapes: dict[str, tuple[int, ...]] = {graph.input_name: tuple(graph.input_shape)}
    for node in graph.nodes:
        missing = [t for t in node_inputs(node) if t not in shapes]
        if missing:
            raise ValueError(f"node {node.name} reads {missing} before they are written")
        x = shapes[node_inputs(node)[0]]
        if isinstance(node, Conv):
            if len(x) != 4 or x[1] != node.cin:
                raise ValueError(f"conv {node.name} expects {node.cin} channels, input is {x}")
            k, s = node.kernel, node.stride
            pad = (k - 1) // 2
            h, w = ((d + 2 * pad - k) // s + 1 for d in x[2:])
            shapes[node.out] = (x[0], node.cout, h, w)
        elif isinstance(node, Linear):
            if len(x) != 2 or x[1] != node.weight.shape[1]:
                raise ValueError(f"linear {node.name} expects (N, {node.weight.shape[1]}), got {x}")
            shapes[node.out] = (x[0], int(node.weight.shape[0]))
        elif isinstance(node, Add):
            if shapes[node.b] != x:
                raise ValueError(f"add {node.name}: shapes {x} and {shapes[node.b]} differ")
            shapes[node.out] = x
        elif isinstance(node, Shuffle):
            if x[1] % node.groups:
                raise ValueError(f"shuffle {node.name}: {x[1]} channels, {node.groups} groups")
            shapes[node.out] = x
        else:
            shapes[node.out] = (x[0], x[1])
    if graph.output_name not in shapes:
        raise ValueError(f"graph output {graph.output_name!r} is never written")
    return shapes


def reference_forward(graph: Graph, x: np.ndarray) -> np.ndarray:
    """Run ``graph`` in float64 numpy on an NCHW batch (a slow, obviously-correct reference)."""
    values: dict[str, np.ndarray] = {graph.input_name: np.asarray(x, dtype=np.float64)}
    for node in graph.nodes:
        if isinstance(node, Conv):
            y = (
                _conv_nchw(values[node.inp], node.weight, node.stride, node.groups)
                + node.bias[None, :, None, None]
            )
            values[node.out] = apply_act(y, node.act)
        elif isinstance(node, Linear):
            values[node.out] = apply_act(values[node.inp] @ node.weight.T + node.bias, node.act)
        elif isinstance(node, Add):
            values[node.out] = values[node.a] + values[node.b]
        elif isinstance(node, Shuffle):
            v = values[node.inp]
            n, c, h, w = v.shape
            g = node.groups
            values[node.out] = v.reshape(n, g, c // g, h, w).swapaxes(1, 2).reshape(n, c, h, w)
        else:
            values[node.out] = values[node.inp].mean(axis=(2, 3))
    return values[graph.output_name]


def apply_act(y: np.ndarray, act: str) -> np.ndarray:
    """Apply ``act`` (``none``, ``relu`` or ``relu6``) to a numpy array."""
    if act == "relu":
        return np.maximum(y, 0.0)
    if act == "relu6":
        return np.clip(y, 0.0, 6.0)
    return y


def _conv_nchw(x: np.ndarray, weight: np.ndarray, stride: int, groups: int) -> np.ndarray:
    n, _c, h, w = x.shape
    o, ig, k, _ = weight.shape
    pad = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    out = np.zeros((n, o, ho, wo))
    og = o // groups
    for g in range(groups):
        xs = xp[:, g * ig : (g + 1) * ig]
        ws = weight[g * og : (g + 1) * og]
        for i in range(k):
            for j in range(k):
                patch = xs[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
                out[:, g * og : (g + 1) * og] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out
