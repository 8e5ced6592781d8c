"""ib-channel space: geometry, gate-zeroing == channel removal, per-channel costs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.blocks.count import count_flops_params
from hwnas.errors import UserError
from hwnas.spaces import ib_channel_geometry as geo
from hwnas.spaces.base import SpaceConfig, create_space
from hwnas.spaces.ib_channel import MixedKernelIB, prune_block


def test_geometry():
    slots = geo.slots(32)
    assert sum(geo.removable(s) for s in slots) == 16
    assert [s.index for s in slots if not geo.removable(s)] == [1, 5, 9, 13, 17, 21]
    assert geo.format_arch(geo.parse_arch("0/0-4/0" + "-8/8" * 20)) == "0/0-4/0" + "-8/8" * 20
    with pytest.raises(ValueError, match=r"block 1 .* needs at least one middle channel"):
        geo.check_arch(((0, 0),) * 22)
    with pytest.raises(ValueError, match="max 96"):
        geo.check_arch(((97, 0),) + ((4, 0),) * 21)


@pytest.mark.parametrize("stride", [1, 2])
def test_zero_gates_equal_removed_channels(stride):
    torch.manual_seed(0)
    cin = cout = 6
    block = MixedKernelIB(cin, cout if stride == 1 else 8, stride, (12, 12), residual=stride == 1)
    for m in block.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    block.eval()
    gates = torch.rand(24) + 0.5
    keep = np.ones(24, dtype=bool)
    keep[[0, 3, 4, 11, 12, 13, 20]] = False
    gates[torch.from_numpy(~keep)] = 0.0
    pruned = prune_block(block, gates, keep)
    assert pruned.mids == (8, 9)
    x = torch.randn(3, cin, 9, 9)
    torch.testing.assert_close(pruned(x), block(x, gates), rtol=1e-5, atol=1e-5)
    # a whole kernel group removed
    keep[12:] = False
    gates[12:] = 0.0
    pruned = prune_block(block, gates, keep)
    assert pruned.mids == (8, 0) and len(pruned.depthwise) == 1
    torch.testing.assert_close(pruned(x), block(x, gates), rtol=1e-5, atol=1e-5)


def test_removed_blocks_are_identities_and_costs_count_them():
    space = create_space("ib-channel", SpaceConfig(32, 10, 0.25))
    arch = tuple((0, 0) if geo.removable(s) else (4, 0) for s in space.slots)
    net = space.build_net(arch)
    assert sum(isinstance(b, torch.nn.Identity) for b in net.blocks) == 16
    flops, params = count_flops_params(net, (1, 3, 32, 32))
    vector = space.arch_vector(arch)
    assert flops == space.cost_table("flops").discrete(vector)
    assert params == space.cost_table("params").discrete(vector)
    assert space.cost_table("flops").minimum() == flops  # the cheapest searchable architecture


def test_granularity_follows_the_search_width():
    for width, g in [(1.0, 1), (0.5, 2), (0.25, 4), (0.125, 8)]:
        space = create_space("ib-channel", SpaceConfig(32, 10, width))
        assert space.granularity == g
        assert space.alpha_shape == (2 * 6 * sum(s.cin for s in space.slots) // g,)
    with pytest.raises(UserError):
        create_space("ib-channel", SpaceConfig(32, 10, 0.3))


def _synthetic_ib_lut(slope_ms: float = 0.002, intercept_ms: float = 0.1, calibration=None):
    """An ib-channel LUT like ``hwnas build-lut --space ib-channel`` writes, exactly linear."""
    from hwnas.blocks.specs import IBSpec
    from hwnas.lut.schema import LUT, LUTEntry
    from hwnas.spaces import fbnet_geometry as fb

    entries = {}
    for slot in geo.slots(32):
        for kernel in geo.KERNELS:
            for ratio in (1, 2, 3, 4, 6):
                mid = slot.cin * ratio
                spec = IBSpec(
                    slot.h,
                    slot.h,
                    slot.cin,
                    slot.cout,
                    kernel,
                    slot.stride,
                    mid,
                    1,
                    "relu",
                    geo.removable(slot),
                )
                ms = kernel * slope_ms * mid + intercept_ms
                entries[spec.key()] = LUTEntry(spec, "fp32", ms, ms, ms, 5)
    for spec in fb.fixed_specs(32, 100):
        entries[spec.key()] = LUTEntry(spec, "fp32", 1.0, 1.0, 1.0, 5)
    models = {"calibration": calibration} if calibration else {}
    return LUT(
        {"name": "mine", "fingerprint": {}},
        {"name": "onnxruntime"},
        {"precision": "fp32"},
        tuple(entries.values()),
        space="ib-channel",
        resolution=32,
        num_classes=100,
        models=models,
    )


def test_latency_from_a_built_ib_channel_lut_is_its_linear_model():
    space = create_space("ib-channel", SpaceConfig(32, 10, 0.25))
    table = space.cost_table("latency_ms", _synthetic_ib_lut())
    assert np.allclose(table.unit_cost[:, 0], 3 * 0.002) and np.allclose(
        table.unit_cost[:, 1], 0.01
    )
    assert np.allclose(table.block_cost, 0.1) and table.constant == pytest.approx(4.0)
    arch = tuple((s.cin * 2, 0) if geo.removable(s) else (0, s.cin) for s in space.slots)
    expected = 4.0 + sum(0.1 + (0.006 * a + 0.01 * b) for a, b in arch)
    assert table.discrete(space.arch_vector(arch)) == pytest.approx(expected)
    calibrated = _synthetic_ib_lut(
        calibration={"space": "ib-channel", "scale": 2.0, "offset_ms": 1.0}
    )
    table2 = space.cost_table("latency_ms", calibrated)
    assert table2.discrete(space.arch_vector(arch)) == pytest.approx(2 * expected + 1.0)


def test_a_lut_without_widths_at_a_position_is_refused():
    lut = _synthetic_ib_lut()
    kept = [
        e for e in lut.entries if not (e.spec.op == "ib" and e.spec.h == 4 and e.spec.kernel == 5)
    ]
    space = create_space("ib-channel", SpaceConfig(32, 10, 0.25))
    with pytest.raises(UserError, match=r"4 ib-channel position\(s\) \(position 18 k5"):
        space.cost_table("latency_ms", lut.replace(entries=kept))


def test_a_users_ib_channel_lut_is_preferred_to_the_fbnet_one():
    from hwnas.costs.latency import load_latency_source
    from hwnas.lut.schema import save_lut
    from hwnas.paths import user_luts_dir

    space = create_space("ib-channel", SpaceConfig(32, 10, 0.25))
    assert load_latency_source("pi4", space).lut.space == "fbnet"
    save_lut(_synthetic_ib_lut(), user_luts_dir() / "pi4_ib-channel.json")
    source = load_latency_source("pi4", space)
    assert source.lut.space == "ib-channel" and source.name == "lut:mine"
