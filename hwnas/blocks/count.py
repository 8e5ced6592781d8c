"""Counted reference for analytic costs: MACs and parameters of a module, measured by running it.

The analytic ``flops()``/``params()`` of :mod:`hwnas.blocks.specs` are checked against this
counter (tests build every spec and compare). Conventions match the specs: FLOPs are
multiply-accumulates (MACs) of convolutions and linear layers only, in the way MobileNet/FBNet
papers quote them; BN, activations, pooling and additions count nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _conv_macs(module: nn.Module, output: torch.Tensor) -> int:
    # Each output element is a dot product over (cin / groups) * prod(kernel) inputs; dilation and
    # stride only change which inputs, not how many.
    per_output = module.in_channels // module.groups
    for k in module.kernel_size:
        per_output *= k
    return output.numel() * per_output


def _linear_macs(module: nn.Module, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def count_flops_params(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """Count MACs of one forward pass and the trainable parameters of ``module``.

    Runs ``module`` once in eval mode under ``torch.no_grad()`` on a zero tensor of ``input_shape``
    (modes are restored afterwards, so BN statistics are never touched). A layer called twice is
    counted twice. Transposed convs (not subclasses of ``nn.ConvNd``) are not counted.

    Args:
        module: any module; ``nn.Conv1d/2d/3d`` and ``nn.Linear`` calls are counted.
        input_shape: input tensor shape, batch included, e.g. ``(1, C, H, W)``.

    Returns:
        ``(flops, params)``: MACs for the whole batch, and the number of trainable parameters.
    """
    macs = 0

    def hook(m: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        macs += _linear_macs(m, output) if isinstance(m, nn.Linear) else _conv_macs(m, output)

    modes = {m: m.training for m in module.modules()}
    handles = [
        m.register_forward_hook(hook)
        for m in module.modules()
        if isinstance(m, (*_CONVS, nn.Linear))
    ]
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(tuple(input_shape)))
    finally:
        for h in handles:
            h.remove()
        for m, training in modes.items():
            m.training = training
    params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return macs, params
