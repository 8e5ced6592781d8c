"""The FBNet layer-wise space (Wu et al., CVPR 2019) in HW-NAS-Bench geometry (Li et al., ICLR 2021).

22 searchable layers x 9 ops (``hwnas.spaces.fbnet_geometry``); an architecture is a tuple of 22
op indices, written ``"0-8-2-..."`` as in the HW-NAS-Bench CSV files and JSON as a list of ints.
At full width and 32 x 32 input the blocks are exactly those of the reference LUTs, so LUT
latencies apply to the exported network as is.

* Supernet (relaxation ``"choice"``): every layer computes all 9 ops and returns
  ``sum_k weights[l, k] * op_k(x) / sum_k |weights[l, k]|``; the method supplies ``weights``
  (L=22, K=9): gates for Greedy-ADMM, softmax probabilities for DARTS-like methods, a one-hot path
  for sampling methods (pass ``active`` to skip the ops it zeroes; or ``forward_path``, which
  runs only the sampled ops with unnormalised gates, for DSNAS and ProxylessNAS). The per-layer L1
  normalisation leaves probabilities and one-hot paths unchanged; for gates it keeps each layer's
  output scale fixed while the gates' support shrinks from 9 ops to 1 (unnormalised, the scale
  fell ~9x per layer during a search and the supernet collapsed to chance). It runs at
  ``search_width`` (1, 0.5 or 0.25).
* Standalone network: stem, the 22 chosen blocks, head conv, pooling, classifier, built from
  block specs by ``hwnas.blocks.torch_blocks.build_sequential`` (the same modules the LUT timed).
* Cost tables: FLOPs (MACs) and params are analytic sums of block specs; latency comes from a
  LUT predictor of the ``fbnet`` latency space (option table + constant, calibration included).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import numpy as np
import torch
from torch import nn

from hwnas.blocks.specs import BlockSpec, ConvSpec, FCSpec, GAPSpec
from hwnas.blocks.torch_blocks import build_module, build_sequential, init_weights_
from hwnas.costs.tables import ChoiceTable
from hwnas.errors import UserError
from hwnas.spaces import fbnet_geometry as fb
from hwnas.spaces.base import METRICS, SPACES, Space, SpaceConfig

WIDTHS = (1.0, 0.5, 0.25)  # every scaled channel count stays an even integer (g2 ops)
_TINY = 1e-12  # floor of a layer's weight norm (an all-zero layer outputs zeros)


def scaled_slots(resolution: int, width: float) -> list[fb.LayerSlot]:
    """The 22 slots with channel counts multiplied by ``width``."""
    return [
        fb.LayerSlot(s.index, s.h, _scale(s.cin, width), _scale(s.cout, width), s.stride)
        for s in fb.layer_slots(resolution)
    ]


def scaled_fixed_specs(resolution: int, num_classes: int, width: float) -> list[BlockSpec]:
    """Stem, head conv, pooling, classifier at ``width`` (``fb.fixed_specs`` at width 1)."""
    if width == 1.0:
        return fb.fixed_specs(resolution, num_classes)
    last = fb.layer_slots(resolution)[-1]
    h = fb.conv_out(last.h, 3, last.stride)
    head = _scale(fb.HEAD_CHANNELS, width)
    stem = _scale(fb.STEM_CHANNELS, width)
    return [
        ConvSpec(h=resolution, w=resolution, cin=3, cout=stem, kernel=3, stride=1),
        ConvSpec(h=h, w=h, cin=_scale(last.cout, width), cout=head, kernel=1, stride=1),
        GAPSpec(h=h, w=h, cin=head),
        FCSpec(h=1, w=1, cin=head, cout=num_classes),
    ]


def net_specs(
    arch: fb.Arch, resolution: int, num_classes: int, width: float = 1.0
) -> list[BlockSpec]:
    """All block specs of the standalone network, in order (stem, 22 blocks, head, pool, fc)."""
    fixed = scaled_fixed_specs(resolution, num_classes, width)
    blocks = [fb.op_spec(slot, op) for slot, op in zip(scaled_slots(resolution, width), arch)]
    return [fixed[0], *blocks, *fixed[1:]]


def _scale(channels: int, width: float) -> int:
    value = channels * width
    if not float(value).is_integer():
        raise UserError(f"width {width} gives {value} channels for {channels}; use {WIDTHS}")
    return int(value)


class FBNetSupernet(nn.Module):
    """All 9 ops per layer, mixed with caller-given weights (L, K) -> logits (B, num_classes)."""

    def __init__(self, resolution: int, num_classes: int, width: float, seed: int) -> None:
        super().__init__()
        self.resolution, self.num_classes, self.width = resolution, num_classes, width
        fixed = scaled_fixed_specs(resolution, num_classes, width)
        self.stem = build_module(fixed[0])
        self.layers = nn.ModuleList(
            nn.ModuleList(build_module(fb.op_spec(slot, k)) for k in range(len(fb.OPS)))
            for slot in scaled_slots(resolution, width)
        )
        self.head = nn.Sequential(*(build_module(s) for s in fixed[1:]))
        init_weights_(self, seed).train()

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, active: Optional[np.ndarray] = None
    ) -> torch.Tensor:
        """Logits (B, num_classes) of the mixture.

        Args:
            x: (B, 3, H, W) images.
            weights: (22, 9) mixing weights, normalised per layer by their L1 norm: layer l
                outputs ``sum_k w_lk op_k(x) / sum_j |w_lj|``. Probabilities and one-hot paths
                are used as given; unnormalised gates (Greedy-ADMM) keep every layer's output
                scale fixed however many ops they keep, and a support of one op gives exactly
                that op.
            active: (22, 9) bool; ops outside it are skipped (their weight must be zero).
        """
        x = self.stem(x)
        mix = weights / weights.abs().sum(dim=1, keepdim=True).clamp_min(_TINY)
        for layer, ops in enumerate(self.layers):
            parts = [
                mix[layer, k] * op(x)
                for k, op in enumerate(ops)
                if active is None or active[layer, k]
            ]
            if not parts:
                raise ValueError(f"layer {layer}: no active op")
            x = torch.stack(parts).sum(0) if len(parts) > 1 else parts[0]
        return self.head(x)

    def forward_path(
        self,
        x: torch.Tensor,
        path: Sequence[Union[int, Sequence[int]]],
        gates: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Logits (B, num_classes) of a sparse path: layer l runs only the ops ``path[l]`` names.

        Args:
            x: (B, 3, H, W) images.
            path: per layer, one op index or several (22 entries); no other op is computed.
            gates: (22, 9) multipliers, not normalised: layer l outputs
                ``sum_{k in path[l]} gates[l, k] * op_k(x)`` (DSNAS' dummy 1s, ProxylessNAS'
                binary gates: their gradients are those methods' credits). None: layer l
                outputs its single op as is.
        """
        x = self.stem(x)
        for layer, ops in enumerate(self.layers):
            chosen = path[layer]
            chosen = (int(chosen),) if isinstance(chosen, (int, np.integer)) else tuple(chosen)
            if gates is None:
                if len(chosen) != 1:
                    raise ValueError(f"layer {layer}: several ops need gates to mix them")
                x = ops[chosen[0]](x)
                continue
            parts = [gates[layer, k] * ops[k](x) for k in chosen]
            x = parts[0] if len(parts) == 1 else torch.stack(parts).sum(0)
        return self.head(x)

    def extract(self, arch: fb.Arch) -> nn.Sequential:
        """The standalone network of ``arch`` at this supernet's width, with a copy of the
        supernet's weights and BN statistics for its ops (what a single-path method such as
        DSNAS keeps training instead of retraining): the layout of
        :meth:`FBNetSpace.build_net`, in training mode."""
        fb.check_arch(tuple(arch))
        specs = net_specs(tuple(arch), self.resolution, self.num_classes, self.width)
        child = build_sequential(specs).train()
        sources = [self.stem, *(ops[k] for ops, k in zip(self.layers, arch)), *self.head]
        for target, source in zip(child, sources):
            target.load_state_dict(source.state_dict())
        return child


@SPACES.register("fbnet")
class FBNetSpace(Space):
    """FBNet: 22 layers x 9 ops (see the module docstring)."""

    name = "fbnet"
    relaxation = "choice"
    lut_space = "fbnet"

    def __init__(self, config: SpaceConfig) -> None:
        super().__init__(config)
        if config.search_width not in WIDTHS:
            raise UserError(
                f"fbnet search width must be one of {WIDTHS}, got {config.search_width}"
            )
        self.slots = fb.layer_slots(config.resolution)

    # -- encodings -------------------------------------------------------------------------------
    def parse_arch(self, text: str) -> fb.Arch:
        try:
            return fb.parse_arch(text)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def format_arch(self, arch: fb.Arch) -> str:
        return fb.format_arch(arch)

    def arch_to_json(self, arch: fb.Arch) -> list[int]:
        return [int(i) for i in arch]

    def arch_from_json(self, value: Any) -> fb.Arch:
        if not isinstance(value, list) or not all(isinstance(i, int) for i in value):
            raise UserError(f"fbnet arch must be a list of {fb.NUM_LAYERS} op indices")
        try:
            fb.check_arch(tuple(value))
        except ValueError as exc:
            raise UserError(str(exc)) from None
        return tuple(value)

    # -- relaxation and costs ----------------------------------------------------------------------
    @property
    def alpha_shape(self) -> tuple[int, int]:
        return (fb.NUM_LAYERS, len(fb.OPS))

    def arch_vector(self, arch: fb.Arch) -> np.ndarray:
        return np.asarray(arch, dtype=np.int64)

    def arch_from_vector(self, vector: np.ndarray) -> fb.Arch:
        arch = tuple(int(i) for i in np.asarray(vector).ravel())
        fb.check_arch(arch)
        return arch

    def cost_table(self, metric: str, latency_predictor: Any = None) -> ChoiceTable:
        if metric == "latency_ms":
            return _latency_table(latency_predictor, self.config.resolution)
        if metric not in METRICS:
            raise UserError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        price = (lambda s: s.flops()) if metric == "flops" else (lambda s: s.params())
        values = [[price(fb.op_spec(slot, k)) for k in range(len(fb.OPS))] for slot in self.slots]
        fixed = fb.fixed_specs(self.config.resolution, self.config.num_classes)
        return ChoiceTable(np.array(values, dtype=np.float64), sum(price(s) for s in fixed))

    def sample_arch(self, rng: np.random.Generator) -> fb.Arch:
        return tuple(int(i) for i in rng.integers(0, len(fb.OPS), size=fb.NUM_LAYERS))

    # -- networks ------------------------------------------------------------------------------
    def build_supernet(self, seed: int = 0) -> FBNetSupernet:
        c = self.config
        return FBNetSupernet(c.resolution, c.num_classes, c.search_width, seed)

    def build_net(self, arch: fb.Arch, width: float = 1.0, seed: int = 0) -> nn.Module:
        fb.check_arch(tuple(arch))
        specs = net_specs(tuple(arch), self.config.resolution, self.config.num_classes, width)
        return build_sequential(specs, seed).train()


def _latency_table(predictor: Any, resolution: int) -> ChoiceTable:
    if predictor is None:
        raise UserError("a latency cost needs a LUT predictor (pass --device or a LUT)")
    space = predictor.space
    if space.name != "fbnet" or space.resolution != resolution:
        raise UserError(
            f"predictor {predictor.name} is for space {space.name!r} at {space.resolution} px, "
            f"not fbnet at {resolution} px"
        )
    return ChoiceTable(np.array(predictor.option_table_ms()), predictor.constant_ms)
