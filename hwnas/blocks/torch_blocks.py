"""PyTorch modules for block specs: what gets exported to ONNX and timed on a device.

``build_module(spec)`` turns one :mod:`hwnas.blocks.specs` spec into a module with exactly the
semantics stated there; ``build_sequential(specs)`` chains specs into one network (how a whole FBNet
net, stem + 22 blocks + head conv + GAP + FC, is built for end-to-end latency measurement).

Semantics:

* FBNet ConvBlock (Wu et al., "FBNet", CVPR 2019; HW-NAS-Bench, Li et al., ICLR 2021): 1x1 conv
  (groups g) + BN + act, channel shuffle (Zhang et al., "ShuffleNet", CVPR 2018) when g > 1, kxk
  depthwise conv + BN + act, 1x1 conv (groups g) + BN, identity residual when ``res``.
* DARTS ops (Liu et al., "DARTS", ICLR 2019, ``quark0/darts`` ``operations.py``): ReLU-first
  separable and dilated convs, 3x3 pools (average excludes padding), FactorizedReduce, Zero.

Convs followed by BN have no bias. Weights and BN statistics are drawn from a seeded
``torch.Generator``, so the same spec and seed give bit-identical modules (and exported files);
BN statistics are random rather than (0, 1) so that BN folding is really exercised by parity tests.
Modules are returned in eval mode (BN uses running statistics), the mode used for export.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from hwnas.blocks.specs import (
    BlockSpec,
    ConvSpec,
    DilConvSpec,
    FactorizedReduceSpec,
    FCSpec,
    GAPSpec,
    IBSpec,
    PoolSpec,
    SepConvSpec,
    SkipSpec,
    ZeroSpec,
)

# Bump when the module built for a spec changes (it invalidates exported-file caches).
BUILD_VERSION = 1


def _act(name: str) -> nn.Module:
    table: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "hswish": nn.Hardswish,
        "none": nn.Identity,
    }
    return table[name]()


def _conv(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Conv2d:
    """Bias-free conv, padding ``dilation * (kernel - 1) // 2`` (as ``specs.conv_out``)."""
    pad = dilation * (kernel - 1) // 2
    return nn.Conv2d(cin, cout, kernel, stride, pad, dilation=dilation, groups=groups, bias=False)


def conv_bn_act(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: str = "relu"
) -> nn.Sequential:
    """Conv (no bias) + BN + activation; ``act="none"`` leaves the activation out."""
    layers = [_conv(cin, cout, kernel, stride, groups), nn.BatchNorm2d(cout)]
    if act != "none":
        layers.append(_act(act))
    return nn.Sequential(*layers)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: (N, g * c, H, W) -> (N, g, c, H, W) -> swap g and c -> back."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)


class InvertedBottleneck(nn.Module):
    """FBNet ConvBlock / MBConv for an :class:`IBSpec`: (1, cin, h, w) -> (1, cout, ho, wo)."""

    def __init__(self, spec: IBSpec) -> None:
        super().__init__()
        g = spec.groups
        self.expand = conv_bn_act(spec.cin, spec.mid, 1, groups=g, act=spec.act)
        self.shuffle = ChannelShuffle(g) if g > 1 else nn.Identity()
        self.depthwise = conv_bn_act(
            spec.mid, spec.mid, spec.kernel, spec.stride, groups=spec.mid, act=spec.act
        )
        self.project = conv_bn_act(spec.mid, spec.cout, 1, groups=g, act="none")
        self.res = spec.res

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.shuffle(self.expand(x))))
        return x + y if self.res else y


class GlobalAvgPool(nn.Module):
    """Global average pooling, flattened: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


class FactorizedReduce(nn.Module):
    """DARTS FactorizedReduce: ReLU, two stride-2 1x1 convs on grids one pixel apart, concat, BN.

    (1, cin, h, w) -> (1, cout, h // 2, w // 2). On odd sizes the first conv sees the input cropped
    to an even size so both halves agree (DARTS itself only runs on even sizes).
    """

    def __init__(self, spec: FactorizedReduceSpec) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        self.conv_1 = nn.Conv2d(spec.cin, spec.cout // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(spec.cin, spec.cout // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(spec.cout)
        self.h_even, self.w_even = 2 * (spec.h // 2), 2 * (spec.w // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        a = self.conv_1(x[:, :, : self.h_even, : self.w_even])
        b = self.conv_2(x[:, :, 1:, 1:])
        return self.bn(torch.cat([a, b], dim=1))


class Zero(nn.Module):
    """DARTS 'none' op: zeros of shape (N, cout, ceil(h / s), ceil(w / s)), made from the input."""

    def __init__(self, cout: int, stride: int) -> None:
        super().__init__()
        self.cout, self.stride = cout, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return x[:, :1, ::s, ::s].mul(0.0).expand(-1, self.cout, -1, -1)


def _sepconv(spec: SepConvSpec) -> nn.Module:
    c, k = spec.cin, spec.kernel
    return nn.Sequential(
        nn.ReLU(),
        _conv(c, c, k, spec.stride, groups=c),
        _conv(c, c, 1),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        _conv(c, c, k, 1, groups=c),
        _conv(c, spec.cout, 1),
        nn.BatchNorm2d(spec.cout),
    )


def _dilconv(spec: DilConvSpec) -> nn.Module:
    c = spec.cin
    return nn.Sequential(
        nn.ReLU(),
        _conv(c, c, spec.kernel, spec.stride, groups=c, dilation=spec.dilation),
        _conv(c, spec.cout, 1),
        nn.BatchNorm2d(spec.cout),
    )


def _pool(spec: PoolSpec) -> nn.Module:
    pad = (spec.kernel - 1) // 2  # as conv_out; equals kernel // 2 for odd kernels
    if spec.kind == "max":
        return nn.MaxPool2d(spec.kernel, spec.stride, pad)
    return nn.AvgPool2d(spec.kernel, spec.stride, pad, count_include_pad=False)


def _skip(spec: SkipSpec) -> nn.Module:
    if spec.is_identity:
        return nn.Identity()
    return conv_bn_act(spec.cin, spec.cout, 1, spec.stride, act="relu")


_BUILDERS: dict[type[BlockSpec], Callable[[Any], nn.Module]] = {
    IBSpec: InvertedBottleneck,
    SkipSpec: _skip,
    ConvSpec: lambda s: conv_bn_act(s.cin, s.cout, s.kernel, s.stride, s.groups, s.act),
    GAPSpec: lambda s: GlobalAvgPool(),
    FCSpec: lambda s: nn.Linear(s.cin, s.cout),
    PoolSpec: _pool,
    SepConvSpec: _sepconv,
    DilConvSpec: _dilconv,
    FactorizedReduceSpec: FactorizedReduce,
    ZeroSpec: lambda s: Zero(s.cout, s.stride),
}


def _raw_module(spec: BlockSpec) -> nn.Module:
    builder = _BUILDERS.get(type(spec))
    if builder is None:
        raise ValueError(f"no torch module for block spec type {type(spec).__name__}")
    return builder(spec)


@torch.no_grad()
def init_weights_(module: nn.Module, seed: int) -> nn.Module:
    """Deterministic in-place init from ``seed``: He-normal convs, PyTorch-style linear layers,
    BN affine and running statistics drawn near (1, 0) so BN is not an identity."""
    gen = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_in = m.weight[0].numel()
            m.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=gen)
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.0, generator=gen)
            m.bias.normal_(0.0, 0.1, generator=gen)
            m.running_mean.normal_(0.0, 0.1, generator=gen)
            m.running_var.uniform_(0.75, 1.5, generator=gen)
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.in_features)
            m.weight.uniform_(-bound, bound, generator=gen)
            m.bias.uniform_(-bound, bound, generator=gen)
    return module


def build_module(spec: BlockSpec, seed: int = 0) -> nn.Module:
    """The eval-mode module for ``spec``: input ``spec.in_shape``, output ``spec.out_shape``.

    Args:
        spec: any spec type of :data:`hwnas.blocks.specs.SPEC_TYPES`.
        seed: seed of the deterministic weight init (same spec and seed: identical weights).
    """
    return init_weights_(_raw_module(spec), seed).eval()


def build_sequential(specs: Sequence[BlockSpec], seed: int = 0) -> nn.Sequential:
    """Chain ``specs`` into one eval-mode ``nn.Sequential`` (child ``i`` is ``specs[i]``).

    Raises:
        ValueError: if ``specs`` is empty, or a spec's ``out_shape`` is not the next ``in_shape``.
    """
    if not specs:
        raise ValueError("build_sequential needs at least one block spec")
    for i in range(1, len(specs)):
        prev, nxt = specs[i - 1], specs[i]
        if prev.out_shape != nxt.in_shape:
            raise ValueError(
                f"block {i} ({nxt.key()}) expects input {nxt.in_shape}, but block {i - 1} "
                f"({prev.key()}) outputs {prev.out_shape}"
            )
    seq = nn.Sequential(*(_raw_module(s) for s in specs))
    return init_weights_(seq, seed).eval()
