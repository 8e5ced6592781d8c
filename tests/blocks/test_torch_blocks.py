"""Torch modules of block specs: shapes, analytic vs counted costs, and op semantics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hwnas.blocks.count import count_flops_params
from hwnas.blocks.specs import (
    SPEC_TYPES,
    BlockSpec,
    FCSpec,
    GAPSpec,
    IBSpec,
    PoolSpec,
    SkipSpec,
    ZeroSpec,
)
from hwnas.blocks.torch_blocks import ChannelShuffle, build_module, build_sequential
from hwnas.spaces.fbnet_geometry import OPS, arch_specs, fixed_specs, layer_slots, op_spec

FBNET_PAIRS = [(slot, op) for slot in layer_slots() for op in range(len(OPS))]


def _check_costs_and_shape(spec: BlockSpec) -> None:
    module = build_module(spec)
    with torch.no_grad():
        out = module(torch.randn(spec.in_shape))
    assert tuple(out.shape) == spec.out_shape
    flops, params = count_flops_params(module, spec.in_shape)
    assert params == spec.params()
    assert flops == spec.flops()


def test_examples_cover_every_spec_type(example_specs: list[BlockSpec]) -> None:
    assert {type(s) for s in example_specs} == set(SPEC_TYPES.values())


def test_example_shapes_and_costs(example_spec: BlockSpec) -> None:
    _check_costs_and_shape(example_spec)
    if isinstance(example_spec, IBSpec):
        _check_residual(example_spec)


@pytest.mark.parametrize(
    ("slot", "op"), FBNET_PAIRS, ids=[f"slot{s.index}-{OPS[o].name}" for s, o in FBNET_PAIRS]
)
def test_fbnet_block_shapes_costs_and_residual(slot, op: int) -> None:
    spec = op_spec(slot, op)
    _check_costs_and_shape(spec)
    if isinstance(spec, IBSpec):
        assert spec.res == (slot.cin == slot.cout and slot.stride == 1)
        _check_residual(spec)


def _check_residual(spec: IBSpec) -> None:
    """With the last BN zeroed the branch outputs 0: the block returns x iff it has a residual."""
    module = build_module(spec)
    last_bn = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)][-1]
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
        x = torch.randn(spec.in_shape)
        out = module(x)
    assert torch.equal(out, x) if spec.res else torch.count_nonzero(out) == 0


def test_identity_skip_is_identity() -> None:
    spec = SkipSpec(h=8, w=8, cin=16, cout=16, stride=1)
    module = build_module(spec)
    x = torch.randn(spec.in_shape)
    assert torch.equal(module(x), x)
    assert sum(p.numel() for p in module.parameters()) == 0
    projecting = build_module(SkipSpec(h=8, w=8, cin=16, cout=16, stride=2))
    assert (projecting(x) >= 0).all()  # 1x1 conv + BN + ReLU
    assert count_flops_params(projecting, spec.in_shape) == (4 * 4 * 16 * 16, 16 * 16 + 32)


def test_channel_shuffle_interleaves_groups() -> None:
    x = torch.arange(6.0).reshape(1, 6, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert ChannelShuffle(3)(x).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    grouped = build_module(IBSpec(h=4, w=4, cin=8, cout=8, kernel=3, stride=1, mid=8, groups=2))
    assert [type(m) for m in grouped.children()].count(ChannelShuffle) == 1
    plain = build_module(IBSpec(h=4, w=4, cin=8, cout=8, kernel=3, stride=1, mid=8))
    assert not any(isinstance(m, ChannelShuffle) for m in plain.modules())


def test_grouped_ib_matches_functional_reference() -> None:
    """FBNet g2 block in functional form: pw(g) BN ReLU shuffle, dw BN ReLU, pw(g) BN, + x."""
    spec = IBSpec(h=6, w=6, cin=8, cout=8, kernel=3, stride=1, mid=12, groups=2, res=True)
    module = build_module(spec, seed=11)
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]

    def bn(y: torch.Tensor, m: nn.BatchNorm2d) -> torch.Tensor:
        return F.batch_norm(y, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    x = torch.randn(spec.in_shape)
    with torch.no_grad():
        y = F.relu(bn(F.conv2d(x, convs[0].weight, groups=2), bns[0]))
        y = y.reshape(1, 2, 6, 6, 6).transpose(1, 2).reshape(1, 12, 6, 6)  # channel shuffle
        y = F.relu(bn(F.conv2d(y, convs[1].weight, padding=1, groups=12), bns[1]))
        want = x + bn(F.conv2d(y, convs[2].weight, groups=2), bns[2])
        assert torch.allclose(module(x), want, atol=1e-6)


def test_darts_pool_and_zero_semantics() -> None:
    ones = torch.ones(1, 4, 6, 6)
    avg = build_module(PoolSpec(h=6, w=6, cin=4, kind="avg"))
    assert torch.allclose(avg(ones), ones)  # padding excluded from the average
    x = torch.randn(1, 4, 6, 6)
    mx = build_module(PoolSpec(h=6, w=6, cin=4, kind="max", stride=2))
    assert torch.equal(mx(x)[0, :, 0, 0], x[0, :, :2, :2].amax(dim=(1, 2)))
    zero = build_module(ZeroSpec(h=7, w=7, cin=4, cout=6, stride=2))
    out = zero(torch.randn(1, 4, 7, 7))
    assert out.shape == (1, 6, 4, 4) and torch.count_nonzero(out) == 0


def test_gap_and_fc() -> None:
    x = torch.randn(1, 24, 5, 3)
    assert torch.allclose(build_module(GAPSpec(h=5, w=3, cin=24))(x), x.mean(dim=(2, 3)))
    fc = build_module(FCSpec(h=1, w=1, cin=24, cout=10))
    assert isinstance(fc, nn.Linear) and fc.bias is not None


def test_convs_before_bn_have_no_bias(example_specs: list[BlockSpec]) -> None:
    for spec in example_specs:
        for m in build_module(spec).modules():
            if isinstance(m, nn.Conv2d):
                assert m.bias is None, spec.key()


def test_seeded_init_is_deterministic() -> None:
    spec = IBSpec(h=9, w=9, cin=12, cout=20, kernel=5, stride=2, mid=24, groups=2, act="relu6")
    a, b, c = build_module(spec, seed=3), build_module(spec, seed=3), build_module(spec, seed=4)
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name])
    assert not torch.equal(a.expand[0].weight, c.expand[0].weight)
    assert not a.training


def test_whole_fbnet_network() -> None:
    arch = (0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 3, 7, 8)
    stem, *head = fixed_specs()
    specs = [stem, *arch_specs(arch), *head]
    net = build_sequential(specs, seed=1)
    assert len(net) == 26
    with torch.no_grad():
        assert net(torch.randn(1, 3, 32, 32)).shape == (1, 100)
    flops, params = count_flops_params(net, (1, 3, 32, 32))
    assert flops == sum(s.flops() for s in specs)
    assert params == sum(s.params() for s in specs)


def test_build_sequential_rejects_mismatched_shapes() -> None:
    stem, head, gap, fc = fixed_specs()
    with pytest.raises(ValueError, match=r"block 1 \(conv-in:4x4x352.*outputs \(1, 16, 32, 32\)"):
        build_sequential([stem, head])
    with pytest.raises(ValueError, match="at least one"):
        build_sequential([])
    assert build_sequential([head, gap, fc])(torch.randn(1, 352, 4, 4)).shape == (1, 100)
