"""``hwnas.quant.costs``: per-layer latencies calibrated to whole-network measurements."""

from __future__ import annotations

import pytest

from hwnas.graph.qparams import LayerBits
from hwnas.quant.costs import calibrated_cost

FP32, INT8 = LayerBits(32, 32), LayerBits(8, 8)


def test_uniform_policies_reproduce_the_measured_networks() -> None:
    rows = [{"fp32": 1.0, "int8": 0.8}, {"fp32": 2.0, "int8": 1.0}, {"fp32": 1.0, "int8": 1.2}]
    cost = calibrated_cost(["a", "b", "c"], rows, {"fp32": 3.0, "int8": 2.0})
    assert cost.latency_ms([FP32] * 3) == pytest.approx(3.0)
    assert cost.latency_ms([INT8] * 3) == pytest.approx(2.0)
    assert cost.scale["fp32"] == pytest.approx(0.75) and cost.scale["int8"] == pytest.approx(2 / 3)
    mixed = cost.latency_ms([INT8, INT8, FP32])
    assert mixed == pytest.approx(0.8 * 2 / 3 + 1.0 * 2 / 3 + 1.0 * 0.75)
    assert cost.precisions == ("fp32", "int8")
    assert cost.layer_ms(1, LayerBits(4, 4)) == cost.layer_ms(1, INT8)  # sub-8-bit runs as int8
    doc = cost.to_dict()
    assert doc["network_ms"] == {"fp32": 3.0, "int8": 2.0} and len(doc["layers"]) == 3


def test_rows_must_match_layers() -> None:
    with pytest.raises(ValueError):
        calibrated_cost(["a"], [], {})
