"""Geometry and text encoding of the FBNet layer-wise space (HW-NAS-Bench, CIFAR-100 geometry).

Torch-free on purpose: LUT building, latency prediction and ``fit-latency`` only need to know which
block sits at which position. The trainable supernet lives with the search code.

Macro-architecture (HW-NAS-Bench data README): stem 3x3 conv 3->16 stride 1; 7 stages with layer
counts [1, 4, 4, 4, 4, 4, 1], output channels [16, 24, 32, 64, 112, 184, 352] and first-layer
strides [1, 1, 2, 2, 1, 2, 1]; 1x1 head conv to 1504, global average pool, FC to the classes.
22 searchable layers, 9 candidate ops each (``OPS``); an architecture is 22 op indices, written
as text joined by '-' (``"0-0-...-8"``), exactly as in the HW-NAS-Bench CSV files.
"""

from __future__ import annotations

from dataclasses import dataclass

from hwnas.blocks.specs import BlockSpec, ConvSpec, FCSpec, GAPSpec, IBSpec, SkipSpec, conv_out


@dataclass(frozen=True)
class FBNetOp:
    """One candidate op: depthwise ``kernel``, ``expansion`` ratio, 1x1 ``groups``; or skip."""

    name: str
    kernel: int = 0
    expansion: int = 0
    groups: int = 1

    @property
    def is_skip(self) -> bool:
        return self.name == "skip"


OPS: tuple[FBNetOp, ...] = (
    FBNetOp("k3_e1", 3, 1, 1),
    FBNetOp("k3_e1_g2", 3, 1, 2),
    FBNetOp("k3_e3", 3, 3, 1),
    FBNetOp("k3_e6", 3, 6, 1),
    FBNetOp("k5_e1", 5, 1, 1),
    FBNetOp("k5_e1_g2", 5, 1, 2),
    FBNetOp("k5_e3", 5, 3, 1),
    FBNetOp("k5_e6", 5, 6, 1),
    FBNetOp("skip"),
)
SKIP = 8
STAGE_LAYERS = (1, 4, 4, 4, 4, 4, 1)
STAGE_CHANNELS = (16, 24, 32, 64, 112, 184, 352)
STAGE_STRIDES = (1, 1, 2, 2, 1, 2, 1)
STEM_CHANNELS = 16
HEAD_CHANNELS = 1504
NUM_LAYERS = sum(STAGE_LAYERS)  # 22

Arch = tuple[int, ...]


@dataclass(frozen=True)
class LayerSlot:
    """A searchable position: input resolution ``h`` (square), channels in/out, stride."""

    index: int
    h: int
    cin: int
    cout: int
    stride: int


def layer_slots(resolution: int = 32) -> list[LayerSlot]:
    """The 22 searchable positions for a square input of ``resolution`` pixels."""
    slots: list[LayerSlot] = []
    h, cin = resolution, STEM_CHANNELS
    for n_layers, cout, first_stride in zip(STAGE_LAYERS, STAGE_CHANNELS, STAGE_STRIDES):
        for i in range(n_layers):
            stride = first_stride if i == 0 else 1
            slots.append(LayerSlot(len(slots), h, cin, cout, stride))
            h, cin = conv_out(h, 3, stride), cout
    return slots


def op_spec(slot: LayerSlot, op_index: int) -> BlockSpec:
    """The block spec of op ``op_index`` placed at ``slot``."""
    op = OPS[op_index]
    if op.is_skip:
        return SkipSpec(h=slot.h, w=slot.h, cin=slot.cin, cout=slot.cout, stride=slot.stride)
    return IBSpec.fbnet(
        slot.h, slot.cin, slot.cout, op.kernel, slot.stride, op.expansion, op.groups
    )


def fixed_specs(resolution: int = 32, num_classes: int = 100) -> list[BlockSpec]:
    """Stem conv, head conv, pooling and classifier: the parts every architecture shares."""
    last = layer_slots(resolution)[-1]
    h_out = conv_out(last.h, 3, last.stride)
    return [
        ConvSpec(h=resolution, w=resolution, cin=3, cout=STEM_CHANNELS, kernel=3, stride=1),
        ConvSpec(h=h_out, w=h_out, cin=last.cout, cout=HEAD_CHANNELS, kernel=1, stride=1),
        GAPSpec(h=h_out, w=h_out, cin=HEAD_CHANNELS),
        FCSpec(h=1, w=1, cin=HEAD_CHANNELS, cout=num_classes),
    ]


def arch_specs(arch: Arch, resolution: int = 32) -> list[BlockSpec]:
    """The searchable blocks of ``arch`` in network order (fixed parts excluded)."""
    check_arch(arch)
    return [op_spec(slot, op) for slot, op in zip(layer_slots(resolution), arch)]


def parse_arch(text: str) -> Arch:
    """``"0-1-...-8"`` (22 indices) -> tuple of ints. Raises ``ValueError`` saying what is wrong."""
    parts = text.strip().split("-")
    try:
        arch = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"FBNet arch {text!r}: expected {NUM_LAYERS} integers joined by '-'"
        ) from None
    check_arch(arch)
    return arch


def format_arch(arch: Arch) -> str:
    check_arch(arch)
    return "-".join(str(i) for i in arch)


def check_arch(arch: Arch) -> None:
    if len(arch) != NUM_LAYERS:
        raise ValueError(f"FBNet arch has {len(arch)} layers, expected {NUM_LAYERS}")
    bad = [i for i in arch if not 0 <= int(i) < len(OPS)]
    if bad:
        raise ValueError(f"FBNet op index out of range 0..{len(OPS) - 1}: {bad}")
