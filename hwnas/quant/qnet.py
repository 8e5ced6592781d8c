"""The fake-quantized PyTorch model of a :class:`~hwnas.graph.nodes.Graph` under a bit policy.

``QuantNet(graph, policy)`` runs the graph's nodes in order with trainable (BN-folded) weights.
Integer layers fake-quantize their weights (per channel) and bias (int32 grid
``input_scale * weight_scale``); every tensor that :func:`hwnas.graph.qparams.plan_tensors`
quantizes passes through its :class:`~hwnas.quant.quantizers.ActQuantizer` right after it is
produced. This is the model HAQ fine-tunes and scores, and the one exports are checked against:
``to_state()`` returns the folded graph with the learned weights and the quantization grids that
the ONNX and TFLite writers turn into integer tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from hwnas.graph.nodes import Add, Conv, GlobalPool, Graph, Linear, Shuffle
from hwnas.graph.qparams import (
    MIN_RANGE,
    LayerBits,
    QuantState,
    TensorQuant,
    plan_tensors,
    weight_qmax,
)
from hwnas.quant.quantizers import ActQuantizer, fake_quant_weight, round_ste


def _key(name: str) -> str:
    return name.replace(".", "_")


class QuantNet(nn.Module):
    """Fake-quantized network: input (N, C, H, W) float -> logits (N, classes).

    Args:
        graph: the folded float graph (weights are copied into parameters).
        policy: layer name -> :class:`LayerBits`; missing layers and 32/32 layers stay float.
        clip_ratios: per-layer weight clip ratios (default 1.0).
    """

    def __init__(
        self,
        graph: Graph,
        policy: Mapping[str, LayerBits],
        clip_ratios: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.graph = graph
        self.policy = dict(policy)
        self.plan = plan_tensors(graph, self.policy)
        self.clip_ratios = {layer.name: 1.0 for layer in graph.layers}
        self.clip_ratios.update(clip_ratios or {})
        self.weights = nn.ParameterDict()
        self.biases = nn.ParameterDict()
        for layer in graph.layers:
            self.weights[_key(layer.name)] = nn.Parameter(torch.from_numpy(layer.weight.copy()))
            self.biases[_key(layer.name)] = nn.Parameter(torch.from_numpy(layer.bias.copy()))
        self.quantizers = nn.ModuleDict(
            {_key(t): ActQuantizer(bits) for t, bits in self.plan.bits.items()}
        )

    # -- forward -------------------------------------------------------------------------------
    def quantizer(self, tensor: str) -> ActQuantizer | None:
        """The quantizer of ``tensor`` (through aliases), or None if it stays float."""
        key = _key(self.plan.root(tensor))
        if key not in self.quantizers:
            return None
        return self.quantizers[key]

    def _layer_params(self, layer: Conv | Linear) -> tuple[torch.Tensor, torch.Tensor]:
        return self.layer_params_at(layer, self.policy.get(layer.name))

    def layer_params_at(
        self, layer: Conv | Linear, bits: LayerBits | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) of ``layer`` as it runs at ``bits`` (None or 32/32: float), on this
        net's grids (the bias grid needs the quantizer of the layer's input)."""
        w = self.weights[_key(layer.name)]
        b = self.biases[_key(layer.name)]
        if bits is None or bits.is_float:
            return w, b
        wq = fake_quant_weight(w, bits.w_bits, self.clip_ratios[layer.name])
        q_in = self.quantizer(layer.inp)
        if q_in is not None:  # int32 bias on the grid input_scale * weight_scale
            flat = w.detach().abs().reshape(w.shape[0], -1)
            w_scale = (flat.amax(dim=1) * self.clip_ratios[layer.name]).clamp_min(MIN_RANGE)
            step = q_in.scale() * (w_scale / weight_qmax(bits.w_bits))
            b = round_ste(b / step) * step
        return wq, b

    def forward(self, x: torch.Tensor, observe: dict | None = None) -> torch.Tensor:
        """Run the graph; ``observe`` (if given) receives every float tensor before quantization."""
        values = {self.graph.input_name: self._quantize(self.graph.input_name, x, observe)}
        for node in self.graph.nodes:
            if isinstance(node, Conv):
                w, b = self._layer_params(node)
                pad = (node.kernel - 1) // 2
                y = F.conv2d(values[node.inp], w, b, node.stride, pad, 1, node.groups)
                y = _act(y, node.act)
            elif isinstance(node, Linear):
                w, b = self._layer_params(node)
                y = _act(F.linear(values[node.inp], w, b), node.act)
            elif isinstance(node, Add):
                y = values[node.a] + values[node.b]
            elif isinstance(node, Shuffle):
                v = values[node.inp]
                n, c, h, wd = v.shape
                g = node.groups
                values[node.out] = (
                    v.reshape(n, g, c // g, h, wd).transpose(1, 2).reshape(n, c, h, wd)
                )
                continue  # an alias: already on its input's grid
            elif isinstance(node, GlobalPool):
                y = values[node.inp].mean(dim=(2, 3))
            values[node.out] = self._quantize(node.out, y, observe)
        return values[self.graph.output_name]

    def _quantize(self, tensor: str, y: torch.Tensor, observe: dict | None) -> torch.Tensor:
        if observe is not None and tensor in self.plan.bits:
            observe.setdefault(tensor, []).append(y.detach())
        q = self.quantizer(tensor) if tensor in self.plan.bits else None
        return q(y) if q is not None else y

    # -- export ------------------------------------------------------------------------------
    def to_state(self) -> QuantState:
        """The current weights and grids as plain data (see :class:`QuantState`)."""
        nodes = []
        for node in self.graph.nodes:
            if isinstance(node, (Conv, Linear)):
                w = self.weights[_key(node.name)].detach().float().cpu().numpy().copy()
                b = self.biases[_key(node.name)].detach().float().cpu().numpy().copy()
                node = replace(node, weight=w, bias=b)
            nodes.append(node)
        graph = Graph(
            tuple(nodes), self.graph.input_shape, self.graph.input_name, self.graph.output_name
        )
        tensors = {
            t: TensorQuant(
                bits,
                float(self.quantizers[_key(t)].lo.item()),
                float(self.quantizers[_key(t)].hi.item()),
            )
            for t, bits in self.plan.bits.items()
        }
        return QuantState(graph, dict(self.policy), self.plan, tensors, dict(self.clip_ratios))

    @classmethod
    def from_state(cls, state: QuantState) -> QuantNet:
        """Rebuild the fake-quantized model from saved plain data."""
        net = cls(state.graph, state.policy, state.clip_ratios)
        for tensor, tq in state.tensors.items():
            net.quantizers[_key(tensor)].set_range(tq.lo, tq.hi)
        return net


def _act(y: torch.Tensor, act: str) -> torch.Tensor:
    if act == "relu":
        return F.relu(y)
    if act == "relu6":
        return F.relu6(y)
    return y


def numpy_forward(net: QuantNet, x: np.ndarray) -> np.ndarray:
    """Logits of ``net`` (eval, no grad) for an NCHW float32 batch."""
    net.eval()
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()
