"""Stitched networks compute exactly what running their block files one after another computes."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas.blocks.export import spec_to_onnx
from hwnas.blocks.specs import ConvSpec, GAPSpec, IBSpec, SkipSpec
from hwnas.lut.compose import chain_onnx, check_chain, network_onnx

SPECS = [
    ConvSpec(h=16, w=16, cin=3, cout=16, kernel=3),
    IBSpec(h=16, w=16, cin=16, cout=16, kernel=3, stride=1, mid=32, groups=2, res=True),
    SkipSpec(h=16, w=16, cin=16, cout=16),  # identity: left out
    IBSpec(h=16, w=16, cin=16, cout=24, kernel=5, stride=2, mid=48),
    SkipSpec(h=8, w=8, cin=24, cout=32, stride=1),  # a 1x1 conv
    GAPSpec(h=8, w=8, cin=32),
]


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def test_network_equals_blocks_run_in_sequence() -> None:
    x = np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)
    net = network_onnx(SPECS)
    proto = onnx.load_from_string(net)
    onnx.checker.check_model(proto)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["output"]
    want = x
    for spec in SPECS:
        if spec != SPECS[2]:
            want = _run(spec_to_onnx(spec), want)
    got = _run(net, x)
    assert got.shape == (1, 32)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_chain_of_one_model_is_the_model() -> None:
    block = spec_to_onnx(SPECS[0])
    x = np.ones((1, 3, 16, 16), np.float32)
    np.testing.assert_array_equal(_run(chain_onnx([block]), x), _run(block, x))


def test_bad_chains_are_refused() -> None:
    with pytest.raises(ValueError, match="expects input"):
        check_chain([SPECS[0], SPECS[4]])
    with pytest.raises(ValueError, match="identity"):
        network_onnx([SPECS[2]])
    with pytest.raises(ValueError, match="at least one"):
        chain_onnx([])
