"""``hwnas build-lut`` and ``hwnas lut validate`` as runs: open the device, hand the LUT layer an
agent (and, for precisions other than fp32 ONNX, the model writer :func:`hwnas.runs.models.graph_model`)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional

from hwnas.errors import UserError
from hwnas.lut.build import BuildConfig, BuildResult


def build_lut_on_device(config: BuildConfig, client: Any = None) -> BuildResult:
    """Run a build (or resume one) on ``config.device`` and write the LUT.

    Args:
        config: what to build (checked before the device is looked up).
        client: an open ``AgentClient`` to use instead of connecting to ``config.device``.
    """
    from hwnas.lut.build import build_lut, plan_build
    from hwnas.runs.models import graph_model

    plan_build(config)  # user mistakes first, before any device is resolved
    if client is not None:
        return build_lut(config, client, graph_model)
    from hwnas.devices.connect import open_device
    from hwnas.devices.registry import get_device

    device = get_device(config.device)
    if not device.measurable:
        raise UserError(
            f"device {config.device!r} is a reference LUT (published numbers) with no agent; "
            f"build-lut needs a device to measure on (local, or one added with 'hwnas devices add')"
        )
    if device.core is not None and config.block_timing.core is None:
        config = replace(
            config,
            block_timing=replace(config.block_timing, core=device.core),
            arch_timing=replace(config.arch_timing, core=device.core),
        )
    with open_device(device, timeout_s=config.timeout_s) as opened:
        return build_lut(config, opened, graph_model)


def validate_on_device(
    lut: Any, plan: Any, device: str, n_archs: int, seed: Optional[int] = None
) -> Any:
    """Time ``n_archs`` random networks of ``plan`` on ``device`` against ``lut``'s predictions
    (:func:`hwnas.lut.validation.validate_lut`)."""
    from hwnas.devices.connect import open_device
    from hwnas.lut.validation import VALIDATION_SEED, validate_lut

    with open_device(device) as client:
        return validate_lut(lut, plan, client, n_archs, VALIDATION_SEED if seed is None else seed)
