"""Block features: MAC split agrees with the analytic FLOPs, byte counts by hand, identity is free."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.blocks.specs import SPEC_TYPES, ConvSpec, IBSpec, SkipSpec
from hwnas.errors import UserError
from hwnas.lut.features import (
    COST_FEATURE_NAMES,
    FEATURE_NAMES,
    cost_features,
    feature_matrix,
    layers,
    spec_features,
)
from hwnas.spaces import fbnet_geometry as fb

COST = {name: i for i, name in enumerate(COST_FEATURE_NAMES)}


def all_fbnet_specs():
    specs = [fb.op_spec(slot, o) for slot in fb.layer_slots() for o in range(len(fb.OPS))]
    return specs + fb.fixed_specs()


@pytest.mark.parametrize("spec", all_fbnet_specs(), ids=str)
def test_dense_plus_depthwise_macs_equal_analytic_flops(spec):
    f = cost_features(spec)
    assert f[COST["dense_macs"]] + f[COST["dw_macs"]] == spec.flops()


def test_inverted_bottleneck_counts_by_hand():
    spec = IBSpec.fbnet(h=8, cin=4, cout=8, kernel=3, stride=2, expansion=2, groups=2)  # mid 8
    f = cost_features(spec, "fp32")
    # expand 8x8x4 -> 8x8x8 (groups 2), shuffle, dw 3x3 s2 -> 4x4x8, project -> 4x4x8 (groups 2)
    assert [layer.kind for layer in layers(spec)] == ["dense", "elementwise", "dw", "dense"]
    assert f[COST["dense_macs"]] == 64 * 8 * 4 / 2 + 16 * 8 * 8 / 2
    assert f[COST["dw_macs"]] == 16 * 8 * 9 and f[COST["dw_outputs"]] == 16 * 8
    weights = 4 * 8 / 2 + 8 * 9 + 8 * 8 / 2
    assert f[COST["weight_bytes"]] == 4 * weights
    assert f[COST["bytes_read"]] == 4 * (256 + 512 + 512 + 128 + weights)
    assert f[COST["bytes_written"]] == 4 * (512 + 512 + 128 + 128)
    assert f[COST["n_layers"]] == 4
    assert cost_features(spec, "int8")[COST["bytes_read"]] == f[COST["bytes_read"]] / 4


def test_identity_skip_is_free_and_conv_skip_is_a_pointwise_conv():
    assert not np.any(cost_features(SkipSpec(h=8, w=8, cin=16, cout=16)))
    f = cost_features(SkipSpec(h=8, w=8, cin=16, cout=32, stride=2))
    assert f[COST["dense_macs"]] == 4 * 4 * 16 * 32 and f[COST["n_layers"]] == 1


def test_full_features_cover_every_op_kind():
    specs = [
        ConvSpec(h=9, w=9, cin=3, cout=8, kernel=3, stride=2),
        IBSpec(h=6, w=6, cin=8, cout=8, kernel=5, stride=1, mid=16, res=True),
    ]
    X = feature_matrix(specs)
    assert X.shape == (2, len(FEATURE_NAMES))
    assert X[0, list(SPEC_TYPES).index("conv")] == 1 and X[1, list(SPEC_TYPES).index("ib")] == 1
    assert X[1, FEATURE_NAMES.index("mid")] == 16 and X[0, FEATURE_NAMES.index("ho")] == 5
    assert np.array_equal(spec_features(specs[1]), X[1])
    assert feature_matrix([]).shape == (0, len(FEATURE_NAMES))
    with pytest.raises(UserError, match="unknown precision 'fp8'"):
        cost_features(specs[0], "fp8")
