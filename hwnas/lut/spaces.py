"""What latency prediction needs to know about a search space, behind one small interface.

An architecture of any space is written as a tuple of option indices, one per *slot*
(FBNet: 22 slots x 9 ops; a channel space: one slot per layer, one option per width; a DARTS
cell: one slot per edge). Option ``o`` at slot ``s`` runs the block specs ``option_specs(s, o)``
(possibly none, e.g. an identity). Latency models only use that, the text encoding and the fixed
blocks every network shares, so a new space plugs in by registering a :class:`LatencySpace`
factory in :data:`LATENCY_SPACES`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Optional

from hwnas.blocks.specs import BlockSpec
from hwnas.errors import UserError
from hwnas.registry import Registry

Arch = tuple[int, ...]


@dataclass(frozen=True)
class LatencySpace:
    """A search space as latency models see it (all callables are pure).

    Attributes:
        name: the space's CLI word (``fbnet``).
        resolution: input height = width in pixels.
        num_classes: classifier outputs.
        choices: number of options per slot, e.g. ``(9,) * 22``.
        option_names: a short name per option of each slot (for tables and plots).
        option_specs: ``(slot, option) -> tuple of block specs`` that option runs.
        fixed_specs: the blocks every architecture runs (stem, head, pooling, classifier).
        parse_arch: text encoding -> arch; raises ``ValueError`` saying what is wrong.
        format_arch: arch -> text encoding.
    """

    name: str
    resolution: int
    num_classes: int
    choices: tuple[int, ...]
    option_names: tuple[tuple[str, ...], ...]
    option_specs: Callable[[int, int], tuple[BlockSpec, ...]]
    fixed_specs: tuple[BlockSpec, ...]
    parse_arch: Callable[[str], Arch]
    format_arch: Callable[[Arch], str]

    @property
    def num_slots(self) -> int:
        return len(self.choices)

    def arch_specs(self, arch: Arch) -> list[BlockSpec]:
        """The searchable blocks of ``arch`` in network order (fixed blocks excluded)."""
        self.check(arch)
        return [spec for s, o in enumerate(arch) for spec in self.option_specs(s, o)]

    def check(self, arch: Sequence[int]) -> None:
        """Raise ``ValueError`` if ``arch`` has the wrong length or an option out of range."""
        if len(arch) != self.num_slots:
            raise ValueError(f"{self.name} arch has {len(arch)} slots, expected {self.num_slots}")
        for s, (o, n) in enumerate(zip(arch, self.choices)):
            if not 0 <= int(o) < n:
                raise ValueError(
                    f"{self.name} arch: option {o} at slot {s} is out of range 0..{n - 1}"
                )

    def describe(self) -> dict:
        """JSON-ready identity of the space geometry (stored in predictors)."""
        return {"space": self.name, "resolution": self.resolution, "num_classes": self.num_classes}


SpaceFactory = Callable[[Optional[int], Optional[int]], LatencySpace]
LATENCY_SPACES: Registry[SpaceFactory] = Registry("space")


def get_space(
    name: str, resolution: Optional[int] = None, num_classes: Optional[int] = None
) -> LatencySpace:
    """The latency view of space ``name`` (unknown names raise :class:`UserError`)."""
    return LATENCY_SPACES.get(name)(resolution, num_classes)


@LATENCY_SPACES.register("fbnet")
def fbnet_space(
    resolution: Optional[int] = None, num_classes: Optional[int] = None
) -> LatencySpace:
    """FBNet layer-wise space in HW-NAS-Bench geometry (default 32 x 32 input, 100 classes)."""
    from hwnas.spaces import fbnet_geometry as fb

    resolution = resolution or 32
    num_classes = num_classes or 100
    if resolution < 8:
        raise UserError(f"fbnet needs a resolution of at least 8 pixels, got {resolution}")
    slots = fb.layer_slots(resolution)
    table = tuple(tuple((fb.op_spec(slot, o),) for o in range(len(fb.OPS))) for slot in slots)
    return LatencySpace(
        name="fbnet",
        resolution=resolution,
        num_classes=num_classes,
        choices=(len(fb.OPS),) * len(slots),
        option_names=tuple(tuple(op.name for op in fb.OPS) for _ in slots),
        option_specs=lambda s, o: table[s][o],
        fixed_specs=tuple(fb.fixed_specs(resolution, num_classes)),
        parse_arch=fb.parse_arch,
        format_arch=fb.format_arch,
    )
