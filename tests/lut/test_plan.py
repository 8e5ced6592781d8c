"""Build plans: which blocks each space measures, and the whole networks they draw."""

from __future__ import annotations

import pytest

from hwnas.blocks.specs import IBSpec
from hwnas.errors import UserError
from hwnas.lut.compose import check_chain, is_identity
from hwnas.lut.linear import family_key
from hwnas.lut.plan import BUILD_PLANS, get_plan
from hwnas.lut.schema import load_lut
from hwnas.paths import shipped_luts_dir
from hwnas.spaces import fbnet_geometry as fb


@pytest.mark.parametrize("space", BUILD_PLANS.names())
@pytest.mark.parametrize("quick", [False, True])
def test_every_plan_has_unique_non_identity_blocks_and_chains(space: str, quick: bool) -> None:
    plan = get_plan(space, quick=quick)
    keys = [b.key() for b in plan.blocks]
    assert len(keys) == len(set(keys)) and keys
    assert not any(is_identity(b) for b in plan.blocks)
    assert all(f.key() in keys for f in plan.fixed)
    if plan.has_networks:
        archs = plan.sample_archs(5, seed=3)
        assert archs == plan.sample_archs(5, seed=3)  # reproducible
        for arch in archs:
            assert plan.parse_arch(plan.format_arch(arch)) == arch
            network = plan.network(arch)
            check_chain(network)
            # fbnet networks only run planned blocks; ib-channel widths in between are priced by
            # the linear fit of their (planned) family
            families = {family_key(b) for b in plan.blocks if isinstance(b, IBSpec)}
            for block in network:
                if isinstance(block, IBSpec) and space == "ib-channel":
                    assert family_key(block) in families
                elif not is_identity(block):
                    assert block.key() in keys


def test_fbnet_plan_covers_the_space_plus_linear_widths() -> None:
    plan = get_plan("fbnet")
    keys = {b.key() for b in plan.blocks}
    for slot in fb.layer_slots():
        for o in range(len(fb.OPS)):
            spec = fb.op_spec(slot, o)
            assert is_identity(spec) or spec.key() in keys
    widths: dict[str, set[int]] = {}
    for b in plan.blocks:
        if isinstance(b, IBSpec) and b.groups == 1:
            widths.setdefault(b.key().split("-mid")[0], set()).add(b.mid // b.cin)
    assert len(widths) == 24 and all(w == {1, 2, 3, 4, 6} for w in widths.values())
    quick = get_plan("fbnet", quick=True)
    assert {a for arch in quick.sample_archs(20, 0) for a in arch} == {0, 8}


def test_ib_channel_plan_contains_the_reference_lut_widths() -> None:
    plan = get_plan("ib-channel")
    keys = {b.key() for b in plan.blocks}
    reference = load_lut(shipped_luts_dir() / "pi4_fbnet.json")
    ib_g1 = [e.key for e in reference.entries if isinstance(e.spec, IBSpec) and e.spec.groups == 1]
    assert len(ib_g1) == 72  # 12 geometries x k3/k5 x e1/e3/e6
    assert set(ib_g1) <= keys
    assert len(plan.blocks) == 12 * 2 * 5 + 4


def test_ib_channel_arch_encoding_and_sampling_range() -> None:
    plan = get_plan("ib-channel")
    archs = plan.sample_archs(50, seed=0)
    assert any((0, 0) in arch for arch in archs)  # removed blocks are drawn too
    for arch in archs:
        text = plan.format_arch(arch)
        assert text.count("-") == 21 and "/" in text
        for slot, (m3, m5) in zip(fb.layer_slots(), arch):
            assert m3 == 0 or m5 == 0
            assert m3 + m5 == 0 or slot.cin // 2 <= m3 + m5 <= 6 * slot.cin
    network = plan.network(((0, 0), (16, 0), *[(0, s.cin) for s in fb.layer_slots()[2:]]))
    assert is_identity(network[1])  # slot 0 (16 -> 16, stride 1) removed
    assert network[2] == IBSpec(32, 32, 16, 24, 3, 1, 16)
    assert network[3] == IBSpec(32, 32, 24, 24, 5, 1, 24, res=True)
    with pytest.raises(ValueError, match="needs at least one middle channel"):
        plan.network(((16, 0), (0, 0), *[(0, s.cin) for s in fb.layer_slots()[2:]]))
    with pytest.raises(ValueError, match="mixed"):
        plan.network(((8, 8), *[(0, s.cin) for s in fb.layer_slots()[1:]]))


def test_darts_plan_has_blocks_only() -> None:
    plan = get_plan("darts")
    assert not plan.has_networks
    distinct_fixed = {f.key() for f in plan.fixed}
    assert len(distinct_fixed) == 11  # stem, 8 distinct preprocessing blocks, pooling, classifier
    assert len(plan.blocks) == 32 + 11
    with pytest.raises(UserError, match="no whole networks"):
        plan.sample_archs(3, 0)


def test_dso_plan_times_every_edge_op_and_the_fixed_blocks() -> None:
    from hwnas.spaces import dso_geometry as dg

    plan = get_plan("dso")
    assert not plan.has_networks
    keys = {b.key() for b in plan.blocks}
    needed = {
        s.key()
        for slot in dg.block_slots(32)
        for op in range(len(dg.OPS))
        for s in dg.edge_specs(slot, op)
    }
    assert needed <= keys and {f.key() for f in plan.fixed} <= keys
    # per block: conv 3x3, depthwise 3x3, conv 1x1 (sep3x3's pointwise is the conv 1x1 spec)
    assert len(needed) == 3 * 3 and len(plan.blocks) == 9 + 5  # + stem, 2 reductions, gap, fc
    assert {b.op for b in plan.blocks} == {"conv", "gap", "fc"}  # all writable at int8 / tflite
    with pytest.raises(UserError, match="no whole networks"):
        plan.sample_archs(3, 0)


def test_unknown_space_lists_known() -> None:
    with pytest.raises(UserError, match="darts, dso, fbnet, ib-channel"):
        get_plan("nasbench201")
