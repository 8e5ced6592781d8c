"""``hwnas.runs.measure`` + ``profile``: per-precision measurements on the real local agent."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from hwnas.blocks.specs import ConvSpec, FCSpec
from hwnas.blocks.torch_blocks import build_sequential
from hwnas.devices.connect import open_device
from hwnas.graph.blocks import layer_spec
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import LayerBits
from hwnas.lut.schema import load_lut
from hwnas.quant.profile import cost_from_lut
from hwnas.runs.measure import (
    PROBE_CHANNELS,
    MeasureSettings,
    _saturation_probe_onnx,
    measure_layer_table,
    probe_int8_weight_bits,
)
from hwnas.runs.profile import profile_device
from tests.quant.conftest import SMALL_SPECS

FAST = MeasureSettings(warmup=1, repeats=3)


@pytest.fixture(scope="module")
def graph():
    return graph_from_module(build_sequential(SMALL_SPECS), SMALL_SPECS[0].in_shape)


class CountingClient:
    """Wraps an AgentClient and counts ``measure`` calls."""

    def __init__(self, client) -> None:
        self.client = client
        self.measured = 0

    def measure(self, *args, **kwargs):
        self.measured += 1
        return self.client.measure(*args, **kwargs)

    def infer(self, *args, **kwargs):
        return self.client.infer(*args, **kwargs)


def test_layer_specs_describe_the_layers(graph) -> None:
    specs = [layer_spec(graph, layer) for layer in graph.layers]
    assert specs[0] == ConvSpec(h=8, w=8, cin=3, cout=8, kernel=3, stride=1, act="relu")
    assert specs[1].groups == 2 and specs[2].groups == specs[2].cin  # g2 expand, depthwise
    assert specs[3].act == "none"  # the projection conv
    assert specs[-1] == FCSpec(h=1, w=1, cin=32, cout=10)


def test_saturation_probe_agrees_with_a_direct_onnxruntime_session() -> None:
    session = ort.InferenceSession(_saturation_probe_onnx(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": np.full((1, PROBE_CHANNELS, 1, 1), 255.0, np.float32)})
    exact = PROBE_CHANNELS * 255 * 127
    expected = 8 if abs(float(y.ravel()[0]) - exact) <= 0.01 * exact else 7
    with open_device("local") as client:
        assert probe_int8_weight_bits(client, "onnx") == expected
        assert probe_int8_weight_bits(client, "tflite") == 8


def test_layer_table_measures_each_spec_once_and_reuses_known(graph) -> None:
    with open_device("local") as raw:
        client = CountingClient(raw)
        table = measure_layer_table(client, graph, ("fp32", "int8"), "onnx", FAST)
        keys = {layer_spec(graph, layer).key() for layer in graph.layers}
        assert set(table) == {(k, p) for k in keys for p in ("fp32", "int8")}
        assert client.measured == len(table)
        assert all(v["median_ms"] > 0 and v["n"] == 3 for v in table.values())
        again = measure_layer_table(client, graph, ("fp32", "int8"), "onnx", FAST, known=table)
        assert again == table and client.measured == len(table)


def test_profile_writes_a_valid_lut_and_calibrates_uniform_networks(graph, tmp_path) -> None:
    path = tmp_path / "quant_lut.json"
    with open_device("local") as raw:
        client = CountingClient(raw)
        profile = profile_device(client, "local", graph, "onnx", FAST, path)
        first = client.measured
        latest = profile_device(client, "local", graph, "onnx", FAST, path)
        assert client.measured - first == 6  # the second time: the whole networks (3 rounds)
    lut = load_lut(path)
    assert lut.settings["precision"] == "mixed" and lut.device_name == "local"
    assert len(lut.entries) == first - 6
    assert {e.precision for e in lut.entries} == {"fp32", "int8"}
    cost = profile.cost
    n = len(graph.layers)
    assert cost.latency_ms([LayerBits(32, 32)] * n) == pytest.approx(cost.network_ms["fp32"])
    assert cost.latency_ms([LayerBits(8, 8)] * n) == pytest.approx(cost.network_ms["int8"])
    assert profile.int8_weight_bits in (7, 8)
    assert lut.models["haq-calibration"]["int8_weight_bits"] == profile.int8_weight_bits
    # the search can run from the file alone (no device): same cost model
    again, bits = cost_from_lut(lut, graph)
    assert bits == profile.int8_weight_bits
    mixed = [LayerBits(32, 32) if i % 2 else LayerBits(8, 8) for i in range(n)]
    assert again.latency_ms(mixed) == pytest.approx(latest.cost.latency_ms(mixed))
