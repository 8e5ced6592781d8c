"""The channel-wise ``ib-channel`` space: supernet with one gate per middle channel, standalone nets.

Geometry, encoding and per-channel costs are in :mod:`hwnas.spaces.ib_channel_geometry`
(FGA-NAS, Chen et al. IJCNN 2022; AtomNAS, Mei et al. ICLR 2020).

* Supernet (relaxation ``"channel"``): every block has ``6 * cin`` channels of each kernel at
  ``search_width`` w; channel i's output after the depthwise BN + ReLU is multiplied by its gate
  ``weights[i]`` (N,), ordered block by block, the k = 3 group before the k = 5 group. Each gate
  stands for ``granularity = 1 / w`` channels of the full-width network (w in 1, 1/2, 1/4, 1/8).
  A zero gate is exactly the removal of that channel from the expand, depthwise and project convs
  (tested; :func:`prune_block`). The branch of a removable (residual) block is also scaled by
  ``min(1, max |gate|)`` (:func:`branch_scale`), so that it fades out as all its gates go to zero
  instead of being renormalised to full scale by the project BN.
* Standalone network: the same :class:`MixedKernelIB` blocks with the chosen widths, no gates.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from hwnas.blocks.torch_blocks import build_module, init_weights_
from hwnas.costs.tables import ChannelTable
from hwnas.errors import UserError
from hwnas.spaces import fbnet_geometry as fb
from hwnas.spaces import ib_channel_geometry as geo
from hwnas.spaces.base import METRICS, SPACES, Space, SpaceConfig
from hwnas.spaces.fbnet import scaled_fixed_specs

WIDTHS = (1.0, 0.5, 0.25, 0.125)


class MixedKernelIB(nn.Module):
    """Inverted bottleneck with kernel-grouped middle channels: (B, cin, h, w) -> (B, cout, ho, wo).

    Args:
        cin, cout, stride: block geometry.
        mids: middle channels per kernel of :data:`geo.KERNELS` (zero groups are left out).
        residual: add the input (needs cin == cout and stride 1).
    """

    def __init__(
        self, cin: int, cout: int, stride: int, mids: tuple[int, ...], residual: bool
    ) -> None:
        super().__init__()
        self.mids = tuple(int(m) for m in mids)
        self.residual = residual
        mid = sum(self.mids)
        if mid == 0:
            raise ValueError("a MixedKernelIB needs at least one middle channel")
        self.expand = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU()
        )
        self.depthwise = nn.ModuleList(
            nn.Conv2d(m, m, k, stride, (k - 1) // 2, groups=m, bias=False)
            for m, k in zip(self.mids, geo.KERNELS)
            if m
        )
        self.dw_bn = nn.Sequential(nn.BatchNorm2d(mid), nn.ReLU())
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor, gates: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.expand(x)
        parts = torch.split(h, [m for m in self.mids if m], dim=1)
        h = torch.cat([conv(p) for conv, p in zip(self.depthwise, parts)], dim=1)
        h = self.dw_bn(h)
        if gates is not None:
            h = h * gates.view(1, -1, 1, 1)
        y = self.project(h)
        if gates is not None and self.residual:
            y = y * branch_scale(gates)
        return x + y if self.residual else y


def branch_scale(gates: torch.Tensor) -> torch.Tensor:
    """Scale of a removable block's branch: ``min(1, max_i |gates_i|)`` (a 0-d tensor).

    The BN after the project conv normalises away any common scale of the gates, so without this
    factor a block whose gates all went to ~0 would still add a unit-variance branch (the few
    near-zero channels, amplified), where the derived network has no block at all. With it the
    branch fades out with the block's largest gate, and a block keeping any gate of size >= 1 is
    exactly the gated block.
    """
    return gates.abs().max().clamp(max=1.0)


def _blocks(resolution: int, width: float, mids_per_block: list[tuple[int, int]]) -> nn.ModuleList:
    out = []
    for slot, mids in zip(geo.slots(resolution), mids_per_block):
        cin, cout = round(slot.cin * width), round(slot.cout * width)
        if sum(mids) == 0:
            out.append(nn.Identity())
        else:
            out.append(MixedKernelIB(cin, cout, slot.stride, mids, geo.removable(slot)))
    return nn.ModuleList(out)


class ChannelNet(nn.Module):
    """Stem, blocks, head; ``forward(x, weights=None)`` with optional gates (N,) for the supernet."""

    def __init__(self, config: SpaceConfig, width: float, mids: list[tuple[int, int]]) -> None:
        super().__init__()
        fixed = scaled_fixed_specs(config.resolution, config.num_classes, width)
        self.stem = build_module(fixed[0])
        self.blocks = _blocks(config.resolution, width, mids)
        self.head = nn.Sequential(*(build_module(s) for s in fixed[1:]))
        self.splits = [sum(m) for m in mids]

    def forward(self, x: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = self.stem(x)
        gates = (
            torch.split(weights, self.splits) if weights is not None else [None] * len(self.blocks)
        )
        for block, g in zip(self.blocks, gates):
            x = block(x) if isinstance(block, nn.Identity) else block(x, g)
        return self.head(x)


@torch.no_grad()
def prune_block(block: MixedKernelIB, gates: torch.Tensor, keep: np.ndarray) -> MixedKernelIB:
    """The block with only the ``keep`` (M,) channels, gates folded into the project conv.

    Its output equals ``block(x, gates)`` whenever the dropped channels' gates are zero.
    """
    keep = np.asarray(keep, dtype=bool)
    starts = np.cumsum([0, *block.mids])
    mids = tuple(int(keep[a:b].sum()) for a, b in zip(starts[:-1], starts[1:]))
    cin, cout = block.expand[0].in_channels, block.project[0].out_channels
    stride = block.depthwise[0].stride[0]
    out = MixedKernelIB(cin, cout, stride, mids, block.residual)
    idx = torch.as_tensor(np.flatnonzero(keep))
    _copy_bn(out.expand[1], block.expand[1], idx)
    _copy_bn(out.dw_bn[0], block.dw_bn[0], idx)
    out.expand[0].weight.copy_(block.expand[0].weight[idx])
    new_convs = iter(out.depthwise)
    for g, (a, b) in enumerate(zip(starts[:-1], starts[1:])):
        if mids[g]:
            local = torch.as_tensor(np.flatnonzero(keep[a:b]))
            next(new_convs).weight.copy_(_group_weight(block, g)[local])
    out.project[0].weight.copy_(block.project[0].weight[:, idx] * gates[idx].view(1, -1, 1, 1))
    out.project[1].load_state_dict(block.project[1].state_dict())
    if block.residual:  # the branch scale, folded into the project BN's affine
        scale = branch_scale(gates)
        out.project[1].weight.mul_(scale)
        out.project[1].bias.mul_(scale)
    return out.train(block.training)


def _group_weight(block: MixedKernelIB, group: int) -> torch.Tensor:
    convs = iter(block.depthwise)
    for g, m in enumerate(block.mids):
        if m:
            conv = next(convs)
            if g == group:
                return conv.weight
    raise ValueError(f"group {group} is empty")


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[idx])


@SPACES.register("ib-channel")
class IBChannelSpace(Space):
    """Channel-wise inverted bottlenecks (see the module docstrings)."""

    name = "ib-channel"
    relaxation = "channel"
    lut_space = "fbnet"
    latency_luts = ("ib-channel", "fbnet")

    def __init__(self, config: SpaceConfig) -> None:
        super().__init__(config)
        if config.search_width not in WIDTHS:
            raise UserError(
                f"ib-channel search width must be one of {WIDTHS}, got {config.search_width}"
            )
        self.granularity = round(1 / config.search_width)
        self.slots = geo.slots(config.resolution)
        self.max_units = np.array([[geo.max_mid(s)] * len(geo.KERNELS) for s in self.slots])

    # -- encodings -------------------------------------------------------------------------------
    def parse_arch(self, text: str) -> geo.Arch:
        try:
            return geo.parse_arch(text, self.config.resolution)
        except ValueError as exc:
            raise UserError(str(exc)) from None

    def format_arch(self, arch: geo.Arch) -> str:
        return geo.format_arch(arch)

    def arch_to_json(self, arch: geo.Arch) -> list[list[int]]:
        return [[int(m) for m in pair] for pair in arch]

    def arch_from_json(self, value: Any) -> geo.Arch:
        try:
            arch = tuple(tuple(int(m) for m in pair) for pair in value)
            geo.check_arch(arch, self.config.resolution)
        except (TypeError, ValueError) as exc:
            raise UserError(f"malformed ib-channel arch: {exc}") from None
        return arch  # type: ignore[return-value]

    # -- relaxation and costs ----------------------------------------------------------------------
    @property
    def alpha_shape(self) -> tuple[int]:
        return (int(self.max_units.sum()) // self.granularity,)

    def arch_vector(self, arch: geo.Arch) -> np.ndarray:
        return np.asarray(arch, dtype=np.int64).reshape(len(self.slots), len(geo.KERNELS))

    def arch_from_vector(self, vector: np.ndarray) -> geo.Arch:
        arch = tuple(tuple(int(m) for m in row) for row in np.asarray(vector).reshape(-1, 2))
        geo.check_arch(arch, self.config.resolution)
        return arch  # type: ignore[return-value]

    def position_name(self, index: int) -> str:
        block, kernel = divmod(int(index), len(geo.KERNELS))
        return f"block {block} kernel {kernel} channels"

    def cost_table(self, metric: str, latency_predictor: Any = None) -> ChannelTable:
        if metric not in METRICS:
            raise UserError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        fixed = fb.fixed_specs(self.config.resolution, self.config.num_classes)
        if metric == "latency_ms":
            unit, setup, constant = self._latency_parts(latency_predictor)
        elif metric == "flops":
            unit = [[geo.channel_flops(s, k) for k in geo.KERNELS] for s in self.slots]
            setup, constant = np.zeros(len(self.slots)), sum(s.flops() for s in fixed)
        else:
            unit = [[geo.channel_params(s, k) for k in geo.KERNELS] for s in self.slots]
            setup = [geo.block_setup_params(s) for s in self.slots]
            constant = sum(s.params() for s in fixed)
        required = [not geo.removable(s) for s in self.slots]
        return ChannelTable(unit, self.max_units, setup, required, constant, self.granularity)

    def _latency_parts(self, source: Any) -> tuple[np.ndarray, np.ndarray, float]:
        """(slope, setup, constant) from a LUT (or a LUT predictor's LUT) of this geometry."""
        lut = getattr(source, "lut", source)
        if lut is None or not hasattr(lut, "entries"):
            raise UserError("ib-channel latency needs a LUT (pass --device or a LUT file)")
        if (lut.resolution or 32) != self.config.resolution:
            raise UserError(f"the LUT is for {lut.resolution} px, not {self.config.resolution}")
        slope, intercept, _ = geo.linear_latency(lut, self.config.resolution)
        constant = geo.fixed_latency_ms(lut, self.config.resolution)
        calibration = lut.models.get("calibration") or {}
        if calibration.get("space") == self.name:  # measured end to end on ib-channel networks
            scale = float(calibration["scale"])
            slope, intercept = scale * slope, scale * intercept
            constant = scale * constant + float(calibration["offset_ms"])
        # One intercept per present block: the larger of its two kernels' (conservative).
        return slope, intercept.max(axis=1), constant

    def sample_arch(self, rng: np.random.Generator) -> geo.Arch:
        g = self.granularity
        arch = []
        for slot in self.slots:
            low = 0 if geo.removable(slot) else 1
            while True:
                pair = tuple(
                    int(g * rng.integers(0, geo.max_mid(slot) // g + 1)) for _ in geo.KERNELS
                )
                if sum(pair) >= low:
                    break
            arch.append(pair)
        return tuple(arch)

    # -- networks ------------------------------------------------------------------------------
    def build_supernet(self, seed: int = 0) -> ChannelNet:
        w = self.config.search_width
        mids = [(geo.max_mid(s) // self.granularity,) * len(geo.KERNELS) for s in self.slots]
        return init_weights_(ChannelNet(self.config, w, mids), seed).train()

    def build_net(self, arch: geo.Arch, width: float = 1.0, seed: int = 0) -> ChannelNet:
        geo.check_arch(arch, self.config.resolution)
        mids = [tuple(_scaled_mid(m, width) for m in pair) for pair in arch]
        return init_weights_(ChannelNet(self.config, width, mids), seed).train()


def _scaled_mid(m: int, width: float) -> int:
    return 0 if m == 0 else max(1, round(m * width))
