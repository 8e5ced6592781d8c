"""Low-bit weight storage: a layer's weights as b-bit integer codes plus what turns them back.

HAQ's model-size mode (Wang et al., CVPR 2019) stores each layer's weights at its own bitwidth
b in 2..8 and keeps activations float: the deployed file shrinks, the kernels still run in
float after the weights are decoded once at load. Two codings, as in the paper:

* ``linear``: symmetric per-output-channel grid (the grid of :mod:`hwnas.graph.qparams`),
  ``w = (code - 2**(b-1)) * scale[c]`` with ``code`` in ``[1, 2**b - 1]``;
* ``kmeans``: one codebook of ``2**b`` centroids per layer (1-D k-means over the layer's
  weights, linear initialisation), ``w = codebook[code]``.

:func:`pack_codes` stores codes as ``b`` bit-planes (plane k holds bit k of every code, 8 codes
per byte, little bit order), so a layer takes exactly ``b * ceil(n / 8)`` bytes for any b; an
exporter unpacks the planes inside the model (shift, mask, weighted sum). :func:`weight_bytes`
is the size a policy is priced at. :func:`dequantized_graph` is the float network a packed
export (:mod:`hwnas.export.packed_onnx`, :mod:`hwnas.export.packed_tflite`) must reproduce;
:func:`hwnas.quant.policy.save_codes` keeps codes on disk as bit-planes. Torch-free (numpy only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from hwnas.graph.nodes import Conv, Graph, Linear
from hwnas.graph.qparams import FLOAT_BITS, weight_qmax, weight_scales

KINDS = ("linear", "kmeans")
MIN_BITS, MAX_BITS = 2, 8
KMEANS_ITERS = 30


@dataclass(frozen=True, eq=False)
class WeightCode:
    """One layer's weights at ``bits`` bits.

    Attributes:
        bits: 2..8.
        kind: ``linear`` or ``kmeans``.
        codes: uint8 array of the weight's shape, values in ``[0, 2**bits)``.
        table: ``linear``: per-output-channel scales, float32 (O,); ``kmeans``: the codebook,
            float32 (2**bits,).
    """

    bits: int
    kind: str
    codes: np.ndarray
    table: np.ndarray

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"weight coding must be one of {KINDS}, got {self.kind!r}")
        if not MIN_BITS <= self.bits <= MAX_BITS:
            raise ValueError(f"weight bits must be {MIN_BITS}..{MAX_BITS}, got {self.bits}")
        if self.codes.dtype != np.uint8 or int(self.codes.max(initial=0)) >= 2**self.bits:
            raise ValueError(f"codes must be uint8 below 2**{self.bits}")

    @property
    def offset(self) -> int:
        """The code of weight 0 on the linear grid (``2**(bits-1)``)."""
        return 2 ** (self.bits - 1)

    def dequantize(self) -> np.ndarray:
        """The float32 weights the codes stand for."""
        if self.kind == "kmeans":
            return self.table[self.codes.astype(np.int64)].astype(np.float32)
        shape = (-1,) + (1,) * (self.codes.ndim - 1)
        signed = self.codes.astype(np.float32) - np.float32(self.offset)
        return (signed * self.table.reshape(shape)).astype(np.float32)


def linear_code(weight: np.ndarray, bits: int, clip_ratio: float = 1.0) -> WeightCode:
    """Symmetric per-channel linear coding (the grid of :func:`hwnas.graph.qparams.quantize_weight`)."""
    w = np.asarray(weight, dtype=np.float32)
    scales = weight_scales(w, bits, clip_ratio)
    qmax = weight_qmax(bits)
    shape = (-1,) + (1,) * (w.ndim - 1)
    q = np.clip(np.round(w / scales.reshape(shape)), -qmax, qmax)
    return WeightCode(bits, "linear", (q + 2 ** (bits - 1)).astype(np.uint8), scales)


def kmeans_codebook(values: np.ndarray, bits: int, iters: int = KMEANS_ITERS) -> np.ndarray:
    """1-D k-means (Lloyd) with ``2**bits`` centroids, initialised evenly over [min, max].

    Deterministic. Empty clusters keep their previous centroid. Returns sorted float32 centroids.
    """
    x = np.sort(np.asarray(values, dtype=np.float64).ravel())
    k = 2**bits
    if x.size == 0:
        return np.zeros(k, np.float32)
    prefix = np.concatenate(([0.0], np.cumsum(x)))  # cluster sums in O(k) per iteration
    centroids = np.linspace(x[0], x[-1], k)
    for _ in range(iters):
        bounds = np.concatenate(
            ([0], np.searchsorted(x, (centroids[1:] + centroids[:-1]) / 2), [x.size])
        )
        counts = np.diff(bounds)
        sums = prefix[bounds[1:]] - prefix[bounds[:-1]]
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centroids)
        if np.allclose(updated, centroids, rtol=0, atol=1e-12):
            break
        centroids = updated
    return np.sort(centroids).astype(np.float32)


def assign_codes(weight: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """uint8 index of the nearest centroid (``codebook`` sorted ascending) for every weight."""
    edges = (codebook[1:] + codebook[:-1]) / 2
    return np.searchsorted(edges, np.asarray(weight, dtype=np.float32)).astype(np.uint8)


def kmeans_code(weight: np.ndarray, bits: int) -> WeightCode:
    """Per-layer k-means coding with ``2**bits`` centroids."""
    w = np.asarray(weight, dtype=np.float32)
    codebook = kmeans_codebook(w, bits)
    return WeightCode(bits, "kmeans", assign_codes(w, codebook), codebook)


def encode(weight: np.ndarray, bits: int, kind: str, clip_ratio: float = 1.0) -> WeightCode:
    """``linear_code`` or ``kmeans_code`` by name."""
    if kind == "linear":
        return linear_code(weight, bits, clip_ratio)
    if kind == "kmeans":
        return kmeans_code(weight, bits)
    raise ValueError(f"weight coding must be one of {KINDS}, got {kind!r}")


def pack_codes(codes: np.ndarray, bits: int) -> np.ndarray:
    """Bit-planes of ``codes``: uint8 array (bits, ceil(n / 8)); plane k holds bit k."""
    flat = np.asarray(codes, dtype=np.uint8).ravel()
    planes = [np.packbits((flat >> k) & 1, bitorder="little") for k in range(bits)]
    return np.stack(planes) if planes else np.zeros((0, 0), np.uint8)


def unpack_codes(planes: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: the first ``count`` codes, uint8, flat."""
    out = np.zeros(count, dtype=np.uint8)
    for k in range(bits):
        out |= np.unpackbits(planes[k], count=count, bitorder="little") << k
    return out


def weight_bytes(n_weights: int, out_channels: int, bits: int, kind: str = "linear") -> int:
    """Stored bytes of one layer's weights at ``bits`` (32: float32), tables included.

    The size a policy is priced at; an exporter's file adds the biases, the graph and its own
    framing on top.
    """
    if bits == FLOAT_BITS:
        return 4 * n_weights
    packed = bits * -(-n_weights // 8)
    table = 4 * (2**bits if kind == "kmeans" else out_channels)
    return packed + table


def dequantized_graph(graph: Graph, codes: Mapping[str, WeightCode]) -> Graph:
    """``graph`` with each coded layer's weight replaced by ``codes[name].dequantize()``.

    The float network a packed export must reproduce; layers not in ``codes`` keep their
    weights, every bias stays as it is. Raises ``ValueError`` for a code naming no conv/linear
    layer or whose shape differs from the layer's weight.
    """
    layers = {layer.name: layer for layer in graph.layers}
    unknown = sorted(set(codes) - set(layers))
    if unknown:
        raise ValueError(f"codes name no conv/linear layer of the graph: {unknown}")
    for name, code in codes.items():
        if code.codes.shape != layers[name].weight.shape:
            raise ValueError(
                f"code of {name} has shape {code.codes.shape}, weight {layers[name].weight.shape}"
            )
    nodes = tuple(
        replace(n, weight=codes[n.name].dequantize())
        if isinstance(n, (Conv, Linear)) and n.name in codes
        else n
        for n in graph.nodes
    )
    return Graph(nodes, graph.input_shape, graph.input_name, graph.output_name)
