"""What ``hwnas build-lut`` measures for a space: its blocks, and how to draw whole networks.

A space registers a :class:`BuildPlan` factory in :data:`BUILD_PLANS` (the name is the CLI word).
A plan lists every block spec the LUT needs (each becomes an entry), and, when the space's
networks are chains of blocks, how to draw a random architecture and which specs its network runs,
so that whole networks can be timed on the device for the end-to-end calibration
(:mod:`hwnas.lut.calibration`) and for ``hwnas lut validate``.

Plans here:

* ``fbnet``: the 22 x 9 FBNet layer-wise space (HW-NAS-Bench geometry): every block any
  architecture can contain, the fixed stem/head blocks, and for each (position geometry, kernel)
  two extra middle-channel counts (expansion 2 and 4, groups 1), so that every inverted-bottleneck
  family has 5 points for the FGA-NAS linear model (:mod:`hwnas.lut.linear`).
* ``ib-channel``: FGA-NAS' channel-wise space on the FBNet macro-architecture: every position is an
  inverted bottleneck with kernel 3 or 5 and any number of middle channels; measured at
  mid = cin x {1, 2, 3, 4, 6} per (position geometry, kernel) (a superset of the reference LUTs'
  e1/e3/e6 entries); unmeasured widths are priced by the per-family linear fit.
* ``darts``: the ops of the DARTS C=16, 8-cell search network on 32 x 32 inputs
  (:mod:`hwnas.spaces.darts_geometry`). Its cells are DAGs, not chains, so the plan has no
  network sampler: the LUT holds block entries only (no calibration, no ``validate``).
* ``dso``: the edge ops of the DSO-NAS space's completely connected blocks (conv 3x3, the
  depthwise and pointwise halves of a separable 3x3, conv 1x1, per block geometry) and its stem,
  reductions, pooling and classifier (:mod:`hwnas.spaces.dso_geometry`); its blocks are DAGs too,
  so block entries only.

``quick=True`` gives a small plan of the same kind (a few ops or widths per position) for tests
and smoke runs.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from hwnas.blocks.specs import BlockSpec, IBSpec, SkipSpec
from hwnas.errors import UserError
from hwnas.registry import Registry
from hwnas.spaces.fbnet_geometry import LayerSlot

Arch = tuple[int, ...]


@dataclass(frozen=True)
class BuildPlan:
    """Everything build-lut needs to know about a space.

    Attributes:
        space: the space's CLI word.
        resolution: input height = width in pixels.
        num_classes: classifier outputs.
        blocks: every spec to time (one LUT entry each), fixed blocks included; no duplicates.
        fixed: the blocks every network runs (stem, head, pooling, classifier).
        sample_arch: draws a random architecture (None: the space has no chain networks).
        network: the specs an architecture's network runs in order, fixed blocks included.
        format_arch / parse_arch: the text encoding of architectures.
        quick: whether this is the small test plan.
        note: one line on what is measured (stored in the LUT).
    """

    space: str
    resolution: int
    num_classes: int
    blocks: tuple[BlockSpec, ...]
    fixed: tuple[BlockSpec, ...]
    sample_arch: Optional[Callable[[random.Random], Arch]]
    network: Optional[Callable[[Arch], list[BlockSpec]]]
    format_arch: Callable[[Arch], str]
    parse_arch: Callable[[str], Arch]
    quick: bool = False
    note: str = ""

    @property
    def has_networks(self) -> bool:
        return self.sample_arch is not None and self.network is not None

    def sample_archs(self, n: int, seed: int) -> list[Arch]:
        """``n`` random architectures from ``random.Random(seed)`` (distinct when possible)."""
        if not self.has_networks:
            raise UserError(f"space {self.space!r} has no whole networks to sample")
        rng = random.Random(seed)
        out: list[Arch] = []
        seen: set[Arch] = set()
        for _ in range(20 * n + 100):  # bounded: small spaces may have fewer than n archs
            if len(out) == n:
                break
            arch = self.sample_arch(rng)  # type: ignore[misc]
            if arch not in seen:
                seen.add(arch)
                out.append(arch)
        return out

    def describe(self) -> dict:
        """JSON-ready identity of the plan (stored in journals and LUTs)."""
        return {
            "space": self.space,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "quick": self.quick,
            "blocks": len(self.blocks),
        }


PlanFactory = Callable[[Optional[int], Optional[int], bool], BuildPlan]
BUILD_PLANS: Registry[PlanFactory] = Registry("space")


def get_plan(
    space: str,
    resolution: Optional[int] = None,
    num_classes: Optional[int] = None,
    quick: bool = False,
) -> BuildPlan:
    """The build plan of ``space`` (unknown names raise :class:`UserError` listing the known)."""
    return BUILD_PLANS.get(space)(resolution, num_classes, quick)


def _dedup(specs: Sequence[BlockSpec]) -> tuple[BlockSpec, ...]:
    seen: dict[str, BlockSpec] = {}
    for spec in specs:
        seen.setdefault(spec.key(), spec)
    return tuple(seen.values())


def _not_identity(spec: BlockSpec) -> bool:
    from hwnas.lut.compose import is_identity

    return not is_identity(spec)


# -- fbnet -----------------------------------------------------------------------------------------

FBNET_QUICK_OPS = (0, 8)  # k3_e1 and skip
EXTRA_EXPANSIONS = (2, 4)


@BUILD_PLANS.register("fbnet")
def fbnet_plan(
    resolution: Optional[int] = None, num_classes: Optional[int] = None, quick: bool = False
) -> BuildPlan:
    """FBNet layer-wise space; ``quick`` keeps only ``k3_e1`` and ``skip`` at every position."""
    from hwnas.spaces import fbnet_geometry as fb

    resolution, num_classes = resolution or 32, num_classes or 100
    if resolution < 8:
        raise UserError(f"fbnet needs a resolution of at least 8 pixels, got {resolution}")
    slots = fb.layer_slots(resolution)
    fixed = fb.fixed_specs(resolution, num_classes)
    ops = FBNET_QUICK_OPS if quick else tuple(range(len(fb.OPS)))
    blocks = [fb.op_spec(slot, o) for slot in slots for o in ops]
    if not quick:
        blocks += [
            IBSpec.fbnet(slot.h, slot.cin, slot.cout, k, slot.stride, e, 1)
            for slot in slots
            for k in (3, 5)
            for e in EXTRA_EXPANSIONS
        ]

    def sample(rng: random.Random) -> Arch:
        return tuple(rng.choice(ops) for _ in slots)

    def network(arch: Arch) -> list[BlockSpec]:
        return [fixed[0], *fb.arch_specs(arch, resolution), *fixed[1:]]

    return BuildPlan(
        space="fbnet",
        resolution=resolution,
        num_classes=num_classes,
        blocks=_dedup([b for b in [*blocks, *fixed] if _not_identity(b)]),
        fixed=tuple(fixed),
        sample_arch=sample,
        network=network,
        format_arch=fb.format_arch,
        parse_arch=fb.parse_arch,
        quick=quick,
        note="every FBNet block (9 ops x 22 positions) + fixed blocks + expansions 2 and 4 "
        "(k3/k5, groups 1) for the middle-channel linear model",
    )


# -- ib-channel ------------------------------------------------------------------------------------

IB_KERNELS = (3, 5)
IB_RATIOS = (1, 2, 3, 4, 6)
IB_QUICK_RATIOS = (1, 2)


@BUILD_PLANS.register("ib-channel")
def ib_channel_plan(
    resolution: Optional[int] = None, num_classes: Optional[int] = None, quick: bool = False
) -> BuildPlan:
    """Channel-wise inverted bottlenecks on the FBNet macro-architecture (FGA-NAS).

    Architectures use :mod:`hwnas.spaces.ib_channel_geometry`'s encoding: per position the middle
    channels ``(m3, m5)`` of the 3x3 and 5x5 kernel groups, text ``"m3/m5-..."``. The networks
    drawn for the calibration use one kernel group per block (``m3 = 0`` or ``m5 = 0``; a mixed
    block is no single block spec), widths uniform in ``[cin // 2, 6 * cin]``, and remove a
    block (0/0, an identity) with probability 0.1 where its residual allows.
    """
    from hwnas.spaces import fbnet_geometry as fb
    from hwnas.spaces import ib_channel_geometry as ibg

    resolution, num_classes = resolution or 32, num_classes or 100
    slots = fb.layer_slots(resolution)
    fixed = fb.fixed_specs(resolution, num_classes)
    kernels = IB_KERNELS[:1] if quick else IB_KERNELS
    ratios = IB_QUICK_RATIOS if quick else IB_RATIOS
    blocks = [_ib(s, k, s.cin * r) for s in slots for k in kernels for r in ratios]

    def sample(rng: random.Random) -> Arch:
        out = []
        for s in slots:
            if ibg.removable(s) and rng.random() < 0.1:
                out.append((0, 0))
                continue
            mid = rng.randint(max(1, s.cin // 2), max(ratios) * s.cin)
            out.append((mid, 0) if rng.choice(kernels) == 3 else (0, mid))
        return tuple(out)  # type: ignore[return-value]

    def network(arch: Arch) -> list[BlockSpec]:
        ibg.check_arch(arch, resolution)  # type: ignore[arg-type]
        body = [_ib_block(s, pair) for s, pair in zip(slots, arch)]  # type: ignore[arg-type]
        return [fixed[0], *body, *fixed[1:]]

    return BuildPlan(
        space="ib-channel",
        resolution=resolution,
        num_classes=num_classes,
        blocks=_dedup([*blocks, *fixed]),
        fixed=tuple(fixed),
        sample_arch=sample,
        network=network,
        format_arch=ibg.format_arch,  # type: ignore[arg-type]
        parse_arch=lambda text: ibg.parse_arch(text, resolution),  # type: ignore[arg-type,return-value]
        quick=quick,
        note=f"inverted bottlenecks at mid = cin x {list(ratios)}, kernels {list(kernels)}, "
        "per FBNet position geometry, + fixed blocks",
    )


def _ib(slot: LayerSlot, kernel: int, mid: int) -> IBSpec:
    res = slot.cin == slot.cout and slot.stride == 1
    return IBSpec(slot.h, slot.h, slot.cin, slot.cout, kernel, slot.stride, mid, 1, "relu", res)


def _ib_block(slot: LayerSlot, pair: tuple[int, int]) -> BlockSpec:
    """The block of ``(m3, m5)`` middle channels at ``slot``: one kernel group, or an identity."""
    m3, m5 = pair
    if m3 and m5:
        raise ValueError(
            f"block {slot.index}: mixed 3x3/5x5 groups ({m3}/{m5}) are not one block spec; "
            "price them with hwnas.spaces.ib_channel_geometry.linear_latency"
        )
    if not m3 and not m5:
        return SkipSpec(h=slot.h, w=slot.h, cin=slot.cin, cout=slot.cout, stride=slot.stride)
    return _ib(slot, 3 if m3 else 5, m3 or m5)


# -- darts -----------------------------------------------------------------------------------------

DARTS_QUICK_OPS = ("max_pool_3x3", "sep_conv_3x3")


@BUILD_PLANS.register("darts")
def darts_plan(
    resolution: Optional[int] = None, num_classes: Optional[int] = None, quick: bool = False
) -> BuildPlan:
    """DARTS search-network ops (C=16, 8 cells): block entries only, no whole networks."""
    from hwnas.spaces import darts_geometry as dg

    resolution, num_classes = resolution or 32, num_classes or 10
    cells = dg.cells(16, 8, resolution)
    ops = DARTS_QUICK_OPS if quick else dg.PRIMITIVES
    blocks = [
        spec
        for cell in cells
        for edge in dg.edges(cell)
        for op in ops
        if (spec := dg.edge_op_spec(cell, edge, op)) is not None
    ]
    fixed = dg.fixed_specs(16, 8, resolution, num_classes)

    def no_text(arch: Arch) -> str:
        raise UserError("darts LUTs have no whole-network encoding (block entries only)")

    return BuildPlan(
        space="darts",
        resolution=resolution,
        num_classes=num_classes,
        blocks=_dedup([*blocks, *fixed]),
        fixed=tuple(fixed),
        sample_arch=None,
        network=None,
        format_arch=no_text,
        parse_arch=lambda text: no_text(()),  # type: ignore[arg-type,return-value]
        quick=quick,
        note="DARTS ops (sep/dil conv 3x3 and 5x5, max/avg pool, factorized reduce) at the "
        "shapes of the C=16, 8-cell search network, + stem, preprocessing, pooling, classifier",
    )


# -- dso -------------------------------------------------------------------------------------------


@BUILD_PLANS.register("dso")
def dso_plan(
    resolution: Optional[int] = None, num_classes: Optional[int] = None, quick: bool = False
) -> BuildPlan:
    """The DSO-NAS space's edge ops and fixed blocks: block entries only, no whole networks.

    Already small (14 blocks at the default geometry), so ``quick`` measures the same blocks.
    """
    from hwnas.spaces import dso_geometry as dg

    resolution, num_classes = resolution or 32, num_classes or 10
    if resolution < 8:
        raise UserError(f"dso needs a resolution of at least 8 pixels, got {resolution}")
    blocks = [
        spec
        for slot in dg.block_slots(resolution)
        for op in range(len(dg.OPS))
        for spec in dg.edge_specs(slot, op)
    ]
    fixed = dg.fixed_specs(resolution, num_classes)

    def no_text(arch: Arch) -> str:
        raise UserError("dso LUTs have no whole-network encoding (block entries only)")

    return BuildPlan(
        space="dso",
        resolution=resolution,
        num_classes=num_classes,
        blocks=_dedup([*blocks, *fixed]),
        fixed=tuple(fixed),
        sample_arch=None,
        network=None,
        format_arch=no_text,
        parse_arch=lambda text: no_text(()),  # type: ignore[arg-type,return-value]
        quick=quick,
        note="DSO-NAS edge ops (conv 3x3, depthwise 3x3 + pointwise 1x1, conv 1x1) per block "
        "geometry, + stem, stride-2 reductions, pooling, classifier",
    )
