"""``hwnas.runs.profile.measure_precisions``: every precision, per layer and whole network, on
the real local agent (onnxruntime and LiteRT)."""

from __future__ import annotations

import pytest

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.devices.connect import open_device
from hwnas.export.precisions import PRECISIONS
from hwnas.graph.blocks import layer_spec
from hwnas.graph.lower import graph_from_module
from hwnas.runs.measure import MeasureSettings
from hwnas.runs.profile import measure_precisions
from tests.quant.conftest import SMALL_SPECS

FAST = MeasureSettings(warmup=1, repeats=3)


@pytest.fixture(scope="module")
def graph():
    return graph_from_module(build_sequential(SMALL_SPECS), SMALL_SPECS[0].in_shape)


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_every_precision_is_timed_per_layer_and_per_network(graph, fmt: str) -> None:
    done = []
    with open_device("local") as client:
        profile = measure_precisions(
            client,
            graph,
            fmt,
            PRECISIONS,
            FAST,
            network_rounds=2,
            layer_rounds=2,
            progress=lambda i, total: done.append((i, total)),
        )
    keys = {layer_spec(graph, layer).key() for layer in graph.layers}
    assert set(profile.table) == {(k, p) for k in keys for p in PRECISIONS}
    for entry in profile.table.values():
        assert len(entry["rounds_ms"]) == 2 and entry["n"] == 6
        assert 0 < entry["p10_ms"] <= entry["median_ms"] * 1.5
    assert done[-1] == (len(keys) * len(PRECISIONS) * 2,) * 2
    assert set(profile.network_ms) == set(PRECISIONS)
    assert all(len(r) == 2 and min(r) > 0 for r in profile.network_rounds_ms.values())
    assert profile.runtime.get("name") in ("onnxruntime", "tflite", "ai-edge-litert")
    for precision in PRECISIONS:  # one value per layer, in network order
        assert len(profile.layer_ms(precision)) == len(graph.layers)


def test_known_entries_are_not_measured_again(graph) -> None:
    with open_device("local") as client:
        first = measure_precisions(
            client, graph, "tflite", ("fp32", "dyn_int8"), FAST, network_rounds=0
        )
        assert first.network_ms == {}

        class Refuse:
            def measure(self, *args, **kwargs):
                raise AssertionError("measured a known entry")

        again = measure_precisions(
            Refuse(),
            graph,
            "tflite",
            ("fp32", "dyn_int8"),
            FAST,
            network_rounds=0,
            known=first.table,
        )
    assert again.table == first.table
