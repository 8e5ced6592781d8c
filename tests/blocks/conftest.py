"""Shared block-spec examples: ``example_spec`` is parametrized over them, one test per spec."""

from __future__ import annotations

import pytest

from hwnas.blocks.specs import (
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
)

# Every spec type, with odd sizes, strides, groups, dilations and activations mixed in.
EXAMPLES: list[BlockSpec] = [
    IBSpec(h=9, w=7, cin=12, cout=12, kernel=3, stride=1, mid=36, groups=1, act="relu", res=True),
    IBSpec(h=9, w=9, cin=12, cout=20, kernel=5, stride=2, mid=24, groups=2, act="relu6"),
    IBSpec(h=6, w=6, cin=12, cout=12, kernel=3, stride=1, mid=24, groups=4, act="hswish", res=True),
    IBSpec(h=5, w=5, cin=8, cout=16, kernel=4, stride=1, mid=16, act="none"),
    SkipSpec(h=8, w=8, cin=16, cout=16, stride=1),
    SkipSpec(h=7, w=7, cin=16, cout=24, stride=2),
    ConvSpec(h=11, w=11, cin=3, cout=16, kernel=3, stride=2),
    ConvSpec(h=4, w=4, cin=8, cout=12, kernel=1, groups=4, act="none"),
    GAPSpec(h=5, w=3, cin=24),
    FCSpec(h=1, w=1, cin=24, cout=10),
    PoolSpec(h=9, w=9, cin=8, kind="max", kernel=3, stride=2),
    PoolSpec(h=8, w=8, cin=8, kind="avg", kernel=3, stride=1),
    SepConvSpec(h=9, w=9, cin=8, cout=16, kernel=5, stride=2),
    SepConvSpec(h=8, w=8, cin=8, cout=8, kernel=3),
    DilConvSpec(h=9, w=9, cin=8, cout=16, kernel=3, stride=2, dilation=2),
    DilConvSpec(h=8, w=8, cin=8, cout=8, kernel=5, dilation=2),
    FactorizedReduceSpec(h=8, w=8, cin=8, cout=16),
    FactorizedReduceSpec(h=9, w=7, cin=8, cout=16),
    ZeroSpec(h=8, w=8, cin=8, cout=8, stride=1),
    ZeroSpec(h=9, w=9, cin=8, cout=16, stride=2),
]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "example_spec" in metafunc.fixturenames:
        metafunc.parametrize("example_spec", EXAMPLES, ids=str)


@pytest.fixture
def example_specs() -> list[BlockSpec]:
    return list(EXAMPLES)
