"""Geometry, encoding and per-channel costs of the channel-wise ``ib-channel`` space (torch-free).

The FGA-NAS "condensed" space (Chen et al., IJCNN 2022; AtomNAS, Mei et al., ICLR 2020): the
FBNet macro-architecture of ``hwnas.spaces.fbnet_geometry`` (stem, 22 block positions, head),
where every position holds *one* inverted bottleneck whose middle channels are split into kernel
groups, k = 3 and k = 5, each up to ``6 * cin`` channels (FBNet's largest expansion). Choosing a
kernel or an expansion reduces to choosing which middle channels survive.

Block with ``m3 + m5 > 0`` middle channels: 1x1 conv cin -> m3 + m5 + BN + ReLU, depthwise 3x3 on
the first m3 channels and 5x5 on the other m5 (stride s) + BN + ReLU, 1x1 conv -> cout + BN,
identity residual iff cin == cout and s == 1. A block with no channel is removed (an identity),
which is allowed only where the residual exists; elsewhere at least one channel must stay.

Architecture: per position ``(m3, m5)``; text ``"m3/m5"`` per position joined by ``-``
(``"16/0-0/0-72/24-..."``), JSON a list of ``[m3, m5]`` pairs.

Per-channel costs (METHODS.md §1.3; exact, every layer of the block is linear in the width):

* FLOPs (MACs) per channel of kernel k: ``h*w*cin + ho*wo*k^2 + ho*wo*cout``; no setup cost.
* params per channel: ``cin + 2 + k^2 + 2 + cout`` (weights and BN affine of both middle BNs);
  setup ``2 * cout`` (the output BN) once per present block.
* latency: ``slope[k] * mid + intercept`` from linear fits of the LUT's inverted bottlenecks
  (:func:`linear_latency`): an ``ib-channel`` LUT the user built, else the device's FBNet LUT.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hwnas.blocks.specs import conv_out
from hwnas.errors import UserError
from hwnas.spaces import fbnet_geometry as fb

KERNELS = (3, 5)
MAX_EXPANSION = 6
Arch = tuple[tuple[int, int], ...]


def slots(resolution: int = 32) -> list[fb.LayerSlot]:
    return fb.layer_slots(resolution)


def max_mid(slot: fb.LayerSlot) -> int:
    """Most middle channels of one kernel group at ``slot``."""
    return MAX_EXPANSION * slot.cin


def removable(slot: fb.LayerSlot) -> bool:
    """A block can be removed (identity) iff its residual exists."""
    return slot.cin == slot.cout and slot.stride == 1


def channel_flops(slot: fb.LayerSlot, kernel: int) -> int:
    """MACs of one middle channel with a ``kernel`` x ``kernel`` depthwise conv."""
    ho = conv_out(slot.h, kernel, slot.stride)
    return slot.h * slot.h * slot.cin + ho * ho * kernel**2 + ho * ho * slot.cout


def channel_params(slot: fb.LayerSlot, kernel: int) -> int:
    """Parameters of one middle channel (conv weights and the BN affine of both middle BNs)."""
    return slot.cin + 2 + kernel**2 + 2 + slot.cout


def block_setup_params(slot: fb.LayerSlot) -> int:
    """Parameters a present block has whatever its width: the output BN affine."""
    return 2 * slot.cout


def linear_latency(lut: Any, resolution: int = 32) -> tuple:
    """Per-position linear latency fits ``lat(mid) = slope * mid + intercept`` per kernel.

    Fits, by non-negative least squares (slope >= 0, intercept >= 0), the LUT's inverted
    bottlenecks (groups 1) of each kernel at each position, whatever middle widths it holds: an
    FBNet LUT has 3 (expansions 1, 3, 6), an ``ib-channel`` LUT from ``hwnas build-lut`` 5. The
    slope is the per-channel cost h of FGA-NAS (METHODS.md §1.3), the intercept the block's
    fixed part. On the Pi 4 reference LUT, uniform FBNet networks are predicted within about
    10 % (the Pi's latency grows faster than linearly with the width at low resolution), on the
    Pixel 3 within about 3 %.

    Args:
        lut: a :class:`hwnas.lut.schema.LUT`.
        resolution: input resolution of the geometry.

    Returns:
        ``(slope_ms, intercept_ms, rel_error)``: (22, 2) slopes per channel, (22, 2) intercepts,
        and the largest relative error of the fit on its own points.

    Raises:
        UserError: a position/kernel with fewer than two widths in the LUT (named).
    """
    from scipy.optimize import nnls

    points: dict[tuple, dict[int, float]] = {}
    for entry in lut.entries:
        spec = entry.spec
        if spec.op == "ib" and spec.groups == 1 and entry.precision == lut.precision:
            family = (spec.h, spec.cin, spec.cout, spec.kernel, spec.stride, spec.act, spec.res)
            points.setdefault(family, {})[spec.mid] = entry.median_ms
    positions = slots(resolution)
    slope = np.zeros((len(positions), len(KERNELS)))
    intercept, worst, missing = np.zeros_like(slope), 0.0, []
    for s, slot in enumerate(positions):
        for j, kernel in enumerate(KERNELS):
            family = (slot.h, slot.cin, slot.cout, kernel, slot.stride, "relu", removable(slot))
            by_mid = points.get(family, {})
            if len(by_mid) < 2:
                missing.append(f"position {s} k{kernel}")
                continue
            mids = np.array(sorted(by_mid), dtype=np.float64)
            y = np.array([by_mid[m] for m in sorted(by_mid)])
            design = np.stack([mids, np.ones_like(mids)], axis=1)
            (a, b), _ = nnls(design, y)
            slope[s, j], intercept[s, j] = a, b
            worst = max(worst, float(np.max(np.abs(design @ (a, b) - y) / np.maximum(y, 1e-9))))
    if missing:
        raise UserError(
            f"LUT {lut.device_name!r} has fewer than two widths of the inverted bottlenecks at "
            f"{len(missing)} ib-channel position(s) ({', '.join(missing[:6])}); build them with "
            "hwnas build-lut --space ib-channel"
        )
    return slope, intercept, worst


def fixed_latency_ms(lut: Any, resolution: int = 32) -> float:
    """Latency of the stem, head and classifier in the LUT (its fixed part or its entries)."""
    covered = set(lut.fixed.covers) if lut.fixed else set()
    total = lut.fixed.latency_ms if lut.fixed else 0.0
    fixed = fb.fixed_specs(resolution, lut.num_classes or 100)
    return total + sum(lut.latency_ms(s) for s in fixed if s.key() not in covered)


def check_arch(arch: Sequence[Sequence[int]], resolution: int = 32) -> None:
    """Raise ``ValueError`` saying what is wrong with an ``ib-channel`` architecture."""
    positions = slots(resolution)
    if len(arch) != len(positions):
        raise ValueError(f"ib-channel arch has {len(arch)} blocks, expected {len(positions)}")
    for slot, pair in zip(positions, arch):
        if len(pair) != len(KERNELS):
            raise ValueError(f"block {slot.index}: expected {len(KERNELS)} counts (m3, m5)")
        for m in pair:
            if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 0:
                raise ValueError(f"block {slot.index}: channel counts must be integers >= 0")
            if m > max_mid(slot):
                raise ValueError(f"block {slot.index}: {m} channels > max {max_mid(slot)}")
        if sum(pair) == 0 and not removable(slot):
            raise ValueError(
                f"block {slot.index} ({slot.cin}->{slot.cout}, stride {slot.stride}) has no "
                "residual and needs at least one middle channel"
            )


def parse_arch(text: str, resolution: int = 32) -> Arch:
    """``"m3/m5-m3/m5-..."`` -> arch; ``ValueError`` says what is wrong."""
    try:
        arch = tuple(tuple(int(v) for v in block.split("/")) for block in text.strip().split("-"))
    except ValueError:
        raise ValueError(
            f"ib-channel arch {text!r}: expected 22 blocks 'm3/m5' joined by '-'"
        ) from None
    check_arch(arch, resolution)
    return arch  # type: ignore[return-value]


def format_arch(arch: Arch) -> str:
    return "-".join(f"{m3}/{m5}" for m3, m5 in arch)
