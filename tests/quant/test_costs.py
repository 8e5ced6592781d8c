"""``hwnas.quant.costs``: per-layer latencies calibrated to whole-network measurements."""

from __future__ import annotations

import pytest

from hwnas.graph.qparams import LayerBits
from hwnas.quant.costs import calibrated_cost, precision_summary

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


def test_precision_summary_reports_every_measured_precision() -> None:
    """fp16 beats fp32 and int8 on one layer: measured, counted, not offered (no mixed export);
    int16x8 is never faster; int8 is offered; fp32 is the reference."""
    rows = [
        {"fp32": 1.0, "int8": 0.5, "fp16": 0.9, "int16x8": 9.0},
        {"fp32": 2.0, "int8": 2.5, "fp16": 1.5, "int16x8": 20.0},
        {"fp32": 1.0, "int8": 0.8, "fp16": 1.1, "int16x8": 30.0},
    ]
    network = {"fp32": 4.0, "int8": 3.5, "fp16": 3.6, "int16x8": 59.0}
    cost = calibrated_cost(["a", "b", "c"], rows, network)
    assert cost.precisions == ("fp32", "fp16", "int8", "int16x8")
    summary = precision_summary(cost, ["fp32", "int8"])
    assert set(summary) == {"fp32", "fp16", "int8", "int16x8"}
    fp16 = summary["fp16"]
    assert fp16["faster_than_fp32_layers"] == 2 and fp16["faster_than_mixed_layers"] == 1
    assert fp16["status"] == (
        "measured, faster on 1 layers, not offered: mixed export not implemented"
    )
    assert fp16["median_ratio_to_fp32"] == pytest.approx(0.9)
    assert fp16["network_ms"] == 3.6 and fp16["layers"] == 3
    assert summary["int8"]["status"] == "offered"
    assert summary["int8"]["faster_than_fp32_layers"] == 2
    assert summary["int8"]["median_ratio_to_fp32"] == pytest.approx(0.8)
    assert summary["int16x8"]["faster_than_mixed_layers"] == 0
    assert "never faster" in summary["int16x8"]["status"]
    assert summary["fp32"]["median_ratio_to_fp32"] == 1.0
    # int8 measured but not offered (its network is not faster): said so, with its layer count
    only_fp32 = precision_summary(cost, ["fp32"])["int8"]["status"]
    assert only_fp32.startswith("measured, faster on 2 layers, not offered")
