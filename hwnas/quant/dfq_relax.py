"""DFQ's relaxed super-network (weights mixed over candidate bitwidths) and its quantizer.

Split from :mod:`hwnas.quant.dfq` (the search) so that the latency-mode relaxation
(:mod:`hwnas.quant.dfq_act`) can extend it without an import cycle; both are re-exported there.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from hwnas.graph.nodes import Graph
from hwnas.graph.qparams import FLOAT_BITS, MIN_RANGE
from hwnas.quant.qnet import QuantNet, _key
from hwnas.quant.quantizers import fake_quant_weight


def quantize_candidate(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Straight-through weight quantizer at ``bits``: 1 = per-channel binary, 2..8 = linear grid,
    32 = the float weight."""
    if bits == FLOAT_BITS:
        return weight
    if bits != 1:
        return fake_quant_weight(weight, bits)
    dims = tuple(range(1, weight.dim()))
    scale = weight.detach().abs().mean(dim=dims, keepdim=True).clamp_min(MIN_RANGE)
    binary = torch.where(weight >= 0, scale, -scale)
    return weight + (binary - weight).detach()


class RelaxedNet(nn.Module):
    """The DFQ super-network: float activations, mixed-bitwidth weights, logits per structure."""

    def __init__(self, graph: Graph, candidates, channel_groups: int = 1, seed: int = 0) -> None:
        super().__init__()
        self.candidates = tuple(sorted(candidates))
        self.net = QuantNet(graph, {})  # float: holds the trainable weights and biases
        self.layer_names = [layer.name for layer in graph.layers]
        gen = torch.Generator().manual_seed(seed)
        self.alphas = nn.ParameterDict()
        for layer in graph.layers:
            cout = int(layer.weight.shape[0])
            chunks = np.array_split(np.arange(cout), min(channel_groups, cout))
            group = np.concatenate([np.full(len(c), g) for g, c in enumerate(chunks)])
            # output channel -> group index; group -> share of the layer's channels
            self.register_buffer(f"group_of_{_key(layer.name)}", torch.from_numpy(group).long())
            share = torch.tensor([len(c) / cout for c in chunks], dtype=torch.float64)
            self.register_buffer(f"share_{_key(layer.name)}", share)
            init = 1e-3 * torch.randn(len(chunks), len(self.candidates), generator=gen)
            self.alphas[_key(layer.name)] = nn.Parameter(init)

    def probs(self) -> dict[str, torch.Tensor]:
        """Layer name -> (groups, candidates) softmax of the logits."""
        return {n: F.softmax(self.alphas[_key(n)], dim=1) for n in self.layer_names}

    def weight_params(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def forward(
        self, x: torch.Tensor, probs: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Logits of the relaxed model; ``probs`` overrides the softmax (e.g. one-hot rows)."""
        probs = self.probs() if probs is None else probs
        mixed = {}
        for name in self.layer_names:
            w = self.net.weights[_key(name)]
            p = probs[name][getattr(self, f"group_of_{_key(name)}")]  # (cout, candidates)
            shape = (-1,) + (1,) * (w.dim() - 1)
            terms = [
                p[:, j].reshape(shape) * quantize_candidate(w, b)
                for j, b in enumerate(self.candidates)
            ]
            mixed[f"weights.{_key(name)}"] = torch.stack(terms).sum(dim=0)
        return functional_call(self.net, mixed, (x,))

    def expected_cost(
        self, cost: torch.Tensor, probs: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """``G(alpha)``: sum over structures of channel share * sum_j p_j * cost[layer, j]."""
        probs = self.probs() if probs is None else probs
        total = cost.new_zeros(())
        for i, name in enumerate(self.layer_names):
            share = getattr(self, f"share_{_key(name)}").to(cost)
            total = total + share @ probs[name].to(cost) @ cost[i]
        return total

    def argmax_bits(self) -> dict[str, list[int]]:
        """Layer name -> argmax candidate of each group."""
        return {
            n: [self.candidates[j] for j in p.argmax(dim=1).tolist()]
            for n, p in self.probs().items()
        }
