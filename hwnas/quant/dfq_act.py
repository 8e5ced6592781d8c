"""DFQ's relaxation for latency: each layer mixes its float op and its integer op (DARTS-style).

The weight-only relaxation of :mod:`hwnas.quant.dfq` mixes a layer's *weights* and keeps its
activations float: right for model size, wrong for latency, where what a runtime executes at
int8 is a layer whose input (and output) are integer tensors too. Here the mixture is of the two
ops' outputs (Cheng et al. 2018's relaxation with the integer op in full; METHODS.md §9):

``y_l = p_l,fp32 * f(x, w) + sum_b p_l,b * f(Q_a(x), Q_b(w), Q_bias)``

with ``Q_a`` the layer input's activation quantizer (``act_bits``, asymmetric per tensor, its
range calibrated on train images and trained with the weights), ``Q_b`` the symmetric
per-channel weight grid and ``Q_bias`` the int32 bias grid of :class:`~hwnas.quant.qnet.QuantNet`.
Tensors are quantized as :func:`hwnas.graph.qparams.plan_tensors` would for the relaxed policy:
with ``pi_l = 1 - p_l,fp32`` the probability that layer ``l`` runs integer, a tensor ``t`` is
quantized with probability ``q_t = 1 - (1 - made_t) * prod_{c consumes t} (1 - pi_c)``, where
``made_t`` is ``pi`` of the producing layer, or the product of the inputs' ``q`` for a residual
add or a global pooling (they run integer when all their inputs are integer). Every tensor is
then ``(1 - q_t) * v + q_t * Q_t(v)`` as it is produced.

With one-hot probabilities every ``q_t`` and ``pi_l`` is exactly 0 or 1 and the model *is* the
fake-quantized :class:`QuantNet` of that policy (tested bit-exact for all-integer and
all-float), so the relaxation is anchored to the network that is exported and timed.
Channel groups are not supported: a runtime executes a layer at one precision.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from hwnas.graph.nodes import Add, Conv, GlobalPool, Graph, Linear, Shuffle
from hwnas.graph.qparams import FLOAT_BITS, LayerBits
from hwnas.quant.calibrate import calibrate
from hwnas.quant.dfq_relax import RelaxedNet
from hwnas.quant.qnet import QuantNet, _act


class ActRelaxedNet(RelaxedNet):
    """The latency-mode DFQ super-network: per layer, a float op and integer ops mixed.

    Args:
        graph: the folded float graph.
        candidates: bitwidths; ``32`` is the float op, 2..8 an integer op with that many weight
            bits and ``act_bits`` activations.
        act_bits: activation bits of every integer op (8 for int8).
        calibration: train images (N, C, H, W) that set the activation ranges.
        seed: the logits' small random init.
    """

    def __init__(
        self, graph: Graph, candidates, act_bits: int, calibration: torch.Tensor, seed: int = 0
    ) -> None:
        super().__init__(graph, candidates, 1, seed)
        ints = [b for b in self.candidates if b != FLOAT_BITS]
        if not ints or not all(2 <= b <= 8 for b in ints) or not 2 <= act_bits <= 8:
            raise ValueError(
                f"activation DFQ needs integer candidates in 2..8 and act_bits in 2..8, "
                f"got {self.candidates} and {act_bits}"
            )
        self.act_bits = act_bits
        self.graph = graph
        # every layer integer: its quantizers cover every tensor any policy quantizes
        self.net = QuantNet(graph, {n: LayerBits(max(ints), act_bits) for n in self.layer_names})
        calibrate(self.net, [calibration], seed=seed)
        self.net.train()

    def integer_probs(self, probs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Layer name -> probability (0-d) that it runs as an integer op."""
        if self.candidates[-1] != FLOAT_BITS:
            return {n: probs[n].new_ones(()) for n in self.layer_names}
        return {n: 1.0 - probs[n][0, -1] for n in self.layer_names}

    def quantized_probs(self, pi: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Root tensor -> probability that it is quantized (module docstring)."""
        plan = self.net.plan
        unconsumed: dict[str, torch.Tensor] = {}
        for layer in self.graph.layers:
            root = plan.root(layer.inp)
            unconsumed[root] = unconsumed.get(root, 1.0) * (1.0 - pi[layer.name])
        one = next(iter(pi.values())).new_ones(())
        root = plan.root(self.graph.input_name)
        q = {root: 1.0 - unconsumed.get(root, one)}
        for node in self.graph.nodes:
            if isinstance(node, (Conv, Linear)):
                made = pi[node.name]
            elif isinstance(node, Add):
                made = q[plan.root(node.a)] * q[plan.root(node.b)]
            elif isinstance(node, GlobalPool):
                made = q[plan.root(node.inp)]
            else:  # a shuffle: an alias of its input
                continue
            q[node.out] = 1.0 - (1.0 - made) * unconsumed.get(node.out, one)
        return q

    def _mix(self, tensor: str, y: torch.Tensor, q: dict) -> torch.Tensor:
        quantizer = self.net.quantizer(tensor)
        if quantizer is None:
            return y
        qt = q[self.net.plan.root(tensor)]
        return (1.0 - qt) * y + qt * quantizer(y)

    def forward(
        self, x: torch.Tensor, probs: dict[str, torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Logits of the relaxed model; ``probs`` overrides the softmax (e.g. one-hot rows)."""
        probs = self.probs() if probs is None else probs
        q = self.quantized_probs(self.integer_probs(probs))
        graph = self.graph
        values = {graph.input_name: self._mix(graph.input_name, x, q)}
        for node in graph.nodes:
            if isinstance(node, (Conv, Linear)):
                y = self._layer(node, values[node.inp], probs[node.name][0])
            elif isinstance(node, Add):
                y = values[node.a] + values[node.b]
            elif isinstance(node, Shuffle):
                v = values[node.inp]
                n, c, h, w = v.shape
                g = node.groups
                values[node.out] = v.reshape(n, g, c // g, h, w).transpose(1, 2).reshape(n, c, h, w)
                continue
            elif isinstance(node, GlobalPool):
                y = values[node.inp].mean(dim=(2, 3))
            values[node.out] = self._mix(node.out, y, q)
        return values[graph.output_name]

    def _layer(self, node: Conv | Linear, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``sum_j p_j * op_j(x)``: the float op on x, integer ops on the quantized x."""
        total = None
        for j, bits in enumerate(self.candidates):
            if bits == FLOAT_BITS:
                w, b = self.net.layer_params_at(node, None)
                xin = x
            else:
                w, b = self.net.layer_params_at(node, LayerBits(bits, self.act_bits))
                xin = self.net.quantizer(node.inp)(x)
            if isinstance(node, Conv):
                pad = (node.kernel - 1) // 2
                y = F.conv2d(xin, w, b, node.stride, pad, 1, node.groups)
            else:
                y = F.linear(xin, w, b)
            term = p[j] * _act(y, node.act)
            total = term if total is None else total + term
        return total

    def policy(self, bits: dict[str, int]) -> dict[str, LayerBits]:
        """Layer name -> :class:`LayerBits` of a per-layer bits dict (32: float)."""
        return {
            n: LayerBits(FLOAT_BITS, FLOAT_BITS) if b == FLOAT_BITS else LayerBits(b, self.act_bits)
            for n, b in bits.items()
        }
