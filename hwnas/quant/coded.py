"""Weight-only low-bit models for HAQ's size mode: precomputed codes, the fast evaluator, and
the model the chosen policy is fine-tuned in.

HAQ's size experiments (Wang et al., CVPR 2019, k-means mode) store each layer's weights at
2..8 bits and keep activations float; during the search a policy is scored on the validation
set *without* fine-tuning. The weights never change during the search, so every layer's coded
weights at every bit width are computed once (:class:`CodedWeights`; the k-means codebooks are
the slow part) and an episode only swaps tensors into one float model and runs the validation
set (:class:`CodedEvaluator`).

Final fine-tune of the chosen policy (:class:`CodedNet`):

* ``linear``: straight-through fake quantization of the weights
  (:func:`hwnas.quant.quantizers.fake_quant_weight`) with the clip ratio the search used
  (:func:`weight_clip_ratio`);
* ``kmeans``: the codebook is trained, the assignments stay fixed: a weight is
  ``centroids[assign]``, so each centroid's gradient is the sum of its weights' gradients
  (HAQ / Deep Compression, Han et al. ICLR 2016).

:meth:`CodedNet.weight_codes` turns the fine-tuned model into
:class:`~hwnas.graph.wcodes.WeightCode` objects whose ``dequantize()`` is exactly the weight
the model computes with.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import torch

from hwnas.graph.nodes import Conv, Graph, Linear
from hwnas.graph.qparams import FLOAT_BITS
from hwnas.graph.wcodes import MAX_BITS, MIN_BITS, WeightCode, encode
from hwnas.quant.qat import accuracy
from hwnas.quant.qnet import QuantNet, _key
from hwnas.quant.quantizers import fake_quant_weight

CLIP_GRID = tuple(np.linspace(0.3, 1.0, 15))


def weight_clip_ratio(weight: np.ndarray, bits: int, coding: str) -> float:
    """The linear grid's clip ratio: the one of ``CLIP_GRID`` whose per-channel b-bit weights
    are closest to the float weights (squared error); 1 for k-means.

    Not HAQ's KL-J threshold: that is computed over the whole layer's |w| and then applied as a
    ratio of every channel's own max, which on BN-folded layers (channel maxima differing by
    10x) zeroed whole channels. With it, uniform 4-bit linear weights left the digits FBNet
    of the tests at chance (10.4 % vs 72.2 % float, 144 val images); with this search, see
    ``docs/precision.md``.
    """
    w = np.asarray(weight, dtype=np.float32)
    if coding != "linear" or not np.abs(w).max(initial=0.0) > 0:
        return 1.0
    errors = [
        float(np.square(encode(w, bits, "linear", r).dequantize() - w).sum()) for r in CLIP_GRID
    ]
    return float(CLIP_GRID[int(np.argmin(errors))])


class CodedWeights:
    """Every layer's :class:`WeightCode` at every bit width in ``bits``, computed once.

    Attributes:
        codes: layer name -> bits -> WeightCode.
        clip_ratios: layer name -> bits -> clip ratio (linear coding).
        seconds: time the precomputation took.
    """

    def __init__(
        self, graph: Graph, coding: str, bits: Sequence[int] = range(MIN_BITS, MAX_BITS + 1)
    ) -> None:
        start = time.perf_counter()
        self.graph = graph
        self.coding = coding
        self.codes: dict[str, dict[int, WeightCode]] = {}
        self.clip_ratios: dict[str, dict[int, float]] = {}
        for layer in graph.layers:
            self.codes[layer.name], self.clip_ratios[layer.name] = {}, {}
            for b in bits:
                clip = weight_clip_ratio(layer.weight, b, coding)
                self.clip_ratios[layer.name][b] = clip
                self.codes[layer.name][b] = encode(layer.weight, b, coding, clip)
        self.seconds = time.perf_counter() - start

    def weight(self, name: str, bits: int) -> np.ndarray:
        """Layer ``name``'s weights at ``bits`` (32: the float weights), float32."""
        if bits == FLOAT_BITS:
            return next(layer.weight for layer in self.graph.layers if layer.name == name)
        return self.codes[name][bits].dequantize()


class CodedEvaluator:
    """``policy (weight bits per layer) -> validation accuracy %``, memoised.

    One float model; an evaluation copies the precomputed weights of each layer's bit width
    into it and runs the validation images. ``evaluated`` counts the distinct policies asked
    for since :meth:`reset_count` (memo hits included once), so each method's count is its own
    even when methods share the memo.
    """

    def __init__(
        self,
        table: CodedWeights,
        images: torch.Tensor,
        labels: torch.Tensor,
        torch_device: str = "cpu",
    ) -> None:
        self.table = table
        self.names = [layer.name for layer in table.graph.layers]
        self.net = QuantNet(table.graph, {}).to(torch_device).eval()
        self.images, self.labels = images, labels
        self._tensors = {
            (name, b): torch.from_numpy(table.weight(name, b)).to(torch_device)
            for name in self.names
            for b in (*table.codes[name], FLOAT_BITS)
        }
        self.memo: dict[tuple[int, ...], float] = {}
        self.seen: set[tuple[int, ...]] = set()
        self.seconds = 0.0  # time spent in uncached evaluations

    @property
    def evaluated(self) -> int:
        return len(self.seen)

    def reset_count(self) -> None:
        self.seen = set()

    def __call__(self, policy: Sequence[int]) -> float:
        key = tuple(int(b) for b in policy)
        self.seen.add(key)
        if key not in self.memo:
            start = time.perf_counter()
            with torch.no_grad():
                for name, b in zip(self.names, key):
                    self.net.weights[_key(name)].copy_(self._tensors[(name, b)])
            self.memo[key] = accuracy(self.net, self.images, self.labels)
            self.seconds += time.perf_counter() - start
        return self.memo[key]


class CodedNet(QuantNet):
    """The float network with weight-only quantized layers, for the final fine-tune.

    Args:
        table: the precomputed codes (initial k-means codebooks and assignments, clip ratios).
        bits: layer name -> weight bits (32 or missing: float weights).
    """

    def __init__(self, table: CodedWeights, bits: Mapping[str, int]) -> None:
        super().__init__(table.graph, {})
        self.coding = table.coding
        self.w_bits = {
            layer.name: int(bits.get(layer.name, FLOAT_BITS)) for layer in table.graph.layers
        }
        self.clip_ratios = {
            n: (table.clip_ratios[n][b] if b != FLOAT_BITS else 1.0) for n, b in self.w_bits.items()
        }
        self.centroids = torch.nn.ParameterDict()
        for name, b in self.w_bits.items():
            if self.coding == "kmeans" and b != FLOAT_BITS:
                code = table.codes[name][b]
                self.centroids[_key(name)] = torch.nn.Parameter(torch.from_numpy(code.table.copy()))
                self.register_buffer(
                    f"assign_{_key(name)}", torch.from_numpy(code.codes.astype(np.int64))
                )
                self.weights[_key(name)].requires_grad_(False)  # replaced by the codebook

    def coded_weight(self, name: str) -> torch.Tensor:
        """The weight layer ``name`` computes with (differentiable in what is trained)."""
        b = self.w_bits[name]
        w = self.weights[_key(name)]
        if b == FLOAT_BITS:
            return w
        if self.coding == "kmeans":
            return self.centroids[_key(name)][getattr(self, f"assign_{_key(name)}")]
        return fake_quant_weight(w, b, self.clip_ratios[name])

    def _layer_params(self, layer: Conv | Linear) -> tuple[torch.Tensor, torch.Tensor]:
        return self.coded_weight(layer.name), self.biases[_key(layer.name)]

    @torch.no_grad()
    def weight_codes(self) -> dict[str, WeightCode]:
        """Layer name -> WeightCode of the current model (quantized layers only).

        linear: :func:`hwnas.graph.wcodes.encode` of the latent weights with the model's clip
        ratio (the same grid as the fake quantizer); k-means: the trained codebook and the fixed
        assignments. Either way ``dequantize()`` equals :meth:`coded_weight` exactly (tested).
        """
        out = {}
        for name, b in self.w_bits.items():
            if b == FLOAT_BITS:
                continue
            if self.coding == "kmeans":
                assign = getattr(self, f"assign_{_key(name)}").cpu().numpy().astype(np.uint8)
                table = self.centroids[_key(name)].detach().float().cpu().numpy().copy()
                out[name] = WeightCode(b, "kmeans", assign, table)
            else:
                latent = self.weights[_key(name)].detach().float().cpu().numpy()
                out[name] = encode(latent, b, "linear", self.clip_ratios[name])
        return out

    @torch.no_grad()
    def coded_graph(self) -> Graph:
        """The folded graph with the coded (dequantized) weights and the fine-tuned biases."""
        nodes = []
        for node in self.graph.nodes:
            if isinstance(node, (Conv, Linear)):
                w = self.coded_weight(node.name).detach().float().cpu().numpy().copy()
                b = self.biases[_key(node.name)].detach().float().cpu().numpy().copy()
                node = replace(node, weight=w, bias=b)
            nodes.append(node)
        g = self.graph
        return Graph(tuple(nodes), g.input_shape, g.input_name, g.output_name)
