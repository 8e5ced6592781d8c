"""Block specs: key and dict round trips over random valid fields, and clear parse errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hwnas.blocks.specs import (
    ACTIVATIONS,
    SPEC_TYPES,
    BlockSpec,
    ConvSpec,
    DilConvSpec,
    FactorizedReduceSpec,
    FCSpec,
    GAPSpec,
    IBSpec,
    PoolSpec,
    SepConvSpec,
    SkipSpec,
    ZeroSpec,
    parse_key,
    spec_from_dict,
)

sizes = st.integers(1, 64)
channels = st.integers(1, 512)
kernels = st.integers(1, 7)
strides = st.integers(1, 3)


def _make(cls: type[BlockSpec], **fields: object) -> BlockSpec:
    """Build a spec; geometry the spec rejects (e.g. an empty output) is discarded, not failed."""
    try:
        return cls(**fields)
    except ValueError:
        assume(False)
        raise


@st.composite
def ib_specs(draw: st.DrawFn) -> IBSpec:
    g = draw(st.integers(1, 4))
    cin, cout, mid = (g * draw(st.integers(1, 64)) for _ in range(3))
    stride = draw(strides)
    res = draw(st.booleans()) and cin == cout and stride == 1
    return _make(
        IBSpec,
        **dict(h=draw(sizes), w=draw(sizes), cin=cin, cout=cout, kernel=draw(kernels)),
        **dict(stride=stride, mid=mid, groups=g, act=draw(st.sampled_from(ACTIVATIONS)), res=res),
    )


@st.composite
def conv_specs(draw: st.DrawFn) -> ConvSpec:
    g = draw(st.integers(1, 4))
    return _make(
        ConvSpec,
        **dict(h=draw(sizes), w=draw(sizes), cin=g * draw(st.integers(1, 64))),
        **dict(cout=g * draw(st.integers(1, 64)), kernel=draw(kernels), stride=draw(strides)),
        **dict(groups=g, act=draw(st.sampled_from(ACTIVATIONS))),
    )


@st.composite
def geometry(draw: st.DrawFn, cls: type[BlockSpec], **extra: st.SearchStrategy) -> BlockSpec:
    fields = dict(h=draw(sizes), w=draw(sizes), cin=draw(channels))
    return _make(cls, **fields, **{name: draw(s) for name, s in extra.items()})


STRATEGIES: dict[type[BlockSpec], st.SearchStrategy] = {
    IBSpec: ib_specs(),
    SkipSpec: geometry(SkipSpec, cout=channels, stride=strides),
    ConvSpec: conv_specs(),
    GAPSpec: geometry(GAPSpec),
    FCSpec: st.builds(FCSpec, h=st.just(1), w=st.just(1), cin=channels, cout=channels),
    PoolSpec: geometry(
        PoolSpec, kind=st.sampled_from(["max", "avg"]), kernel=kernels, stride=strides
    ),
    SepConvSpec: geometry(SepConvSpec, cout=channels, kernel=kernels, stride=strides),
    DilConvSpec: geometry(
        DilConvSpec, cout=channels, kernel=kernels, stride=strides, dilation=st.integers(1, 4)
    ),
    FactorizedReduceSpec: geometry(
        FactorizedReduceSpec, cout=st.integers(1, 256).map(lambda c: 2 * c)
    ),
    ZeroSpec: geometry(ZeroSpec, cout=channels, stride=strides),
}


def test_every_spec_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(SPEC_TYPES.values())


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.op)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_key_and_dict_round_trip(cls: type[BlockSpec], data: st.DataObject) -> None:
    spec = data.draw(STRATEGIES[cls])
    key = spec.key()
    assert key.startswith(f"{cls.op}-in:{spec.h}x{spec.w}x{spec.cin}")
    assert str(spec) == key
    assert parse_key(key) == spec
    assert spec_from_dict(spec.to_dict()) == spec
    # through JSON, as LUT files store records, with statistics beside the fields
    record = json.loads(json.dumps({**spec.to_dict(), "median_ms": 1.5, "n": 50}))
    assert spec_from_dict(record) == spec
    assert spec.flops() >= 0 and spec.params() >= 0
    assert all(d >= 1 for d in spec.out_shape)


def test_documented_key_example() -> None:
    spec = IBSpec.fbnet(h=32, cin=16, cout=24, kernel=3, stride=1, expansion=3)
    assert spec.key() == "ib-in:32x32x16-out:24-k:3-s:1-mid:48-g:1-act:relu-res:0"
    assert parse_key("ib-in:32x32x16-out:24-k:3-s:1-mid:48-g:1-act:relu-res:0") == spec
    assert IBSpec.fbnet(h=8, cin=64, cout=64, kernel=5, stride=1, expansion=6).res
    assert not IBSpec.fbnet(h=8, cin=64, cout=64, kernel=5, stride=2, expansion=6).res


def test_key_defaults_and_non_canonical_values() -> None:
    assert parse_key("conv-in:32x32x3-out:16-k:3") == ConvSpec(h=32, w=32, cin=3, cout=16, kernel=3)
    spec = parse_key("ib-in:8x8x16-out:16-k:3-s:1-mid:48-res:true")
    assert spec.res and spec.groups == 1 and spec.act == "relu"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "unknown block op ''"),
        ("mbconv-in:8x8x3-out:16", "unknown block op 'mbconv'"),
        ("conv-in:8x8x3-out16-k:3", "malformed key part 'out16'"),
        ("conv-in:8x8-out:16-k:3", "malformed input shape '8x8'"),
        ("conv-in:8xAx3-out:16-k:3", "malformed input shape"),
        ("conv-in:8x8x3-out:16-k:three", "field 'kernel': not an integer: 'three'"),
        ("conv-in:8x8x3-out:16-k:3.5", "field 'kernel': not an integer"),
        ("conv-in:8x8x3-out:16", "missing field 'kernel'"),
        ("conv-in:8x8x3-out:16-k:3-st:2", "unknown key part 'st' for 'conv'"),
        ("conv-in:8x8x3-out:16-k:3-k:5", "key part 'k' given twice"),
        ("ib-in:8x8x16-out:16-k:3-s:1-mid:48-res:2", "field 'res': not a boolean"),
        ("ib-in:8x8x16-out:16-k:3-s:2-mid:48-res:1", "residual needs cin == cout and stride 1"),
        ("ib-in:8x8x16-out:16-k:3-s:1-mid:48-g:3", "divisible by groups=3"),
        ("ib-in:8x8x16-out:16-k:3-s:1-mid:48-act:gelu", "unknown activation 'gelu'"),
        ("conv-in:8x8x3-out:16-k:3-g:2", "divisible by groups=2"),
        ("conv-in:0x8x3-out:16-k:3", "h must be a positive integer"),
        ("conv-in:1x1x3-out:16-k:2", "gives an empty output"),
        ("factreduce-in:1x8x16-out:32", "gives an empty output"),
        ("factreduce-in:8x8x16-out:31", "cout must be even"),
        ("pool-in:8x8x16-kind:min", "kind must be 'max' or 'avg'"),
        ("fc-in:2x2x16-out:10", "h and w must be 1"),
        ("gap-in:4x4x0", "cin must be a positive integer"),
        ("zero-in:4x4x8-out:0", "cout must be a positive integer"),
    ],
)
def test_parse_errors_are_clear(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_key(key)


def test_spec_from_dict_errors() -> None:
    with pytest.raises(ValueError, match="unknown block op 'nope'"):
        spec_from_dict({"op": "nope"})
    with pytest.raises(ValueError, match="skip: missing field 'cout'"):
        spec_from_dict({"op": "skip", "h": 8, "w": 8, "cin": 16})
    with pytest.raises(ValueError, match="field 'stride': not an integer: True"):
        spec_from_dict({"op": "skip", "h": 8, "w": 8, "cin": 16, "cout": 16, "stride": True})
    assert spec_from_dict({"op": "skip", "h": 8, "w": 8, "cin": 16, "cout": 16, "stride": 2.0}) == (
        SkipSpec(h=8, w=8, cin=16, cout=16, stride=2)
    )


def test_specs_and_geometry_import_without_torch() -> None:
    code = (
        "import sys, hwnas.blocks, hwnas.blocks.specs, hwnas.spaces.fbnet_geometry; "
        "sys.exit('torch' in sys.modules)"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0
