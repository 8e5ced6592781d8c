"""``hwnas.export.packed_onnx`` / ``packed_tflite`` via ``api.write_packed``, run in the runtimes.

Each packed file must compute the fp32 export of ``dequantized_graph(graph, codes)`` (ONNX in
onnxruntime, TFLite in LiteRT), take about the priced bytes (ONNX), and shrink with the bits.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.export.api import write_packed
from hwnas.export.onnx_writer import graph_to_onnx
from hwnas.export.tflite_writer import graph_to_tflite
from hwnas.export.verify import run_export
from hwnas.graph.lower import graph_from_module
from hwnas.graph.nodes import Conv, GlobalPool, Graph, Linear, Shuffle
from hwnas.graph.wcodes import dequantized_graph, encode, weight_bytes
from tests.quant.conftest import SMALL_SPECS

FORMATS = ("onnx", "tflite")


@pytest.fixture(scope="module")
def fbnet() -> Graph:
    """Stem, grouped IB with shuffle + residual, strided k5 depthwise IB, skip, head, pool, fc."""
    return graph_from_module(build_sequential(SMALL_SPECS, seed=2), SMALL_SPECS[0].in_shape)


def wide_graph() -> Graph:
    """~150k weights (0.6 MB fp32): enough that framing is small against the weights."""
    rng = np.random.default_rng(0)

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.1).astype(np.float32)

    nodes = (
        Conv("stem", "input", "a", w(64, 3, 3, 3), w(64), 1, 1, "relu"),
        Conv("dw", "a", "b", w(64, 1, 3, 3), w(64), 2, 64, "relu6"),
        Conv("g2", "b", "c", w(128, 32, 1, 1), w(128), 1, 2, "relu"),
        Shuffle("shuf", "c", "d", 2),
        Conv("c3", "d", "e", w(96, 128, 3, 3), w(96), 1, 1, "relu"),
        GlobalPool("gap", "e", "f"),
        Linear("fc", "f", "output", w(100, 96), w(100)),
    )
    return Graph(nodes, (1, 3, 8, 8))


def fp32_file(graph: Graph, fmt: str) -> bytes:
    return graph_to_onnx(graph) if fmt == "onnx" else graph_to_tflite(graph)


def images(n: int = 8) -> np.ndarray:
    return np.random.default_rng(5).standard_normal((n, 3, 8, 8)).astype(np.float32)


def assert_reproduces(graph: Graph, codes: dict, fmt: str) -> None:
    """The packed file's logits == the fp32 export of the dequantized graph, same runtime."""
    x = images()
    got = run_export(write_packed(graph, codes, fmt), fmt, x)
    want = run_export(fp32_file(dequantized_graph(graph, codes), fmt), fmt, x)
    assert got.shape == want.shape == (len(x), graph.shapes[graph.output_name][1])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * float(np.abs(want).max()))
    plain = run_export(fp32_file(graph, fmt), fmt, x)
    assert not np.allclose(got, plain, rtol=0, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["linear", "kmeans"])
@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_uniform_bits_reproduce_dequantized_graph(fbnet, fmt: str, kind: str, bits: int) -> None:
    codes = {layer.name: encode(layer.weight, bits, kind) for layer in fbnet.layers}
    assert_reproduces(fbnet, codes, fmt)


@pytest.mark.parametrize("fmt", FORMATS)
def test_mixed_policy_with_float_layers(fbnet, fmt: str) -> None:
    """Bits 2..8 and both codings over the layers; every third layer stays float32."""
    codes = {}
    for i, layer in enumerate(fbnet.layers):
        if i % 3 != 2:
            codes[layer.name] = encode(layer.weight, 2 + i % 7, ("linear", "kmeans")[i % 2])
    assert {c.bits for c in codes.values()} >= {2, 3, 5, 6, 8}
    assert any(isinstance(n, Conv) and n.is_depthwise and n.name in codes for n in fbnet.nodes)
    assert any(
        isinstance(n, Conv) and 1 < n.groups < n.cin and n.name in codes for n in fbnet.nodes
    )
    assert_reproduces(fbnet, codes, fmt)


def test_onnx_decode_is_folded_at_session_creation(fbnet, tmp_path) -> None:
    """onnxruntime computes the weights once: the optimized graph has no decode nodes left."""
    codes = {layer.name: encode(layer.weight, 3, "kmeans") for layer in fbnet.layers}
    data = write_packed(fbnet, codes, "onnx")
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert {"BitShift", "BitwiseAnd", "ReduceSum", "Gather"} <= ops
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    folded = {n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node}
    assert folded.isdisjoint({"BitShift", "BitwiseAnd", "Cast", "ReduceSum", "Gather"})
    assert "Conv" in folded


def test_onnx_file_size_is_the_priced_size() -> None:
    graph = wide_graph()
    fp32 = len(graph_to_onnx(graph))
    n_params = sum(layer.weight.size + layer.bias.size for layer in graph.layers)
    framing = fp32 - 4 * n_params  # the fp32 file's own graph and tensor headers
    assert 0 < framing < 0.01 * fp32
    sizes = {}
    for bits in range(2, 9):
        codes = {layer.name: encode(layer.weight, bits, "linear") for layer in graph.layers}
        sizes[bits] = len(write_packed(graph, codes, "onnx"))
        priced = sum(
            weight_bytes(layer.weight.size, layer.weight.shape[0], bits) + 4 * layer.bias.size
            for layer in graph.layers
        )
        overhead = sizes[bits] - priced
        # the decode nodes and shapes: under 800 bytes a layer on top of the fp32 framing
        assert framing < overhead < framing + 800 * len(graph.layers), (bits, overhead)
    assert sizes[2] < 0.1 * fp32
    assert all(sizes[b] < sizes[b + 1] for b in range(2, 8)), sizes


def test_tflite_file_size_int4_and_int8() -> None:
    graph = wide_graph()
    fp32 = len(graph_to_tflite(graph))
    sizes = {}
    for bits in (2, 4, 5, 8):
        codes = {layer.name: encode(layer.weight, bits, "linear") for layer in graph.layers}
        sizes[bits] = len(write_packed(graph, codes, "tflite"))
    n_weights = sum(layer.weight.size for layer in graph.layers)
    assert sizes[2] == sizes[4] < 0.15 * fp32  # INT4 storage: 2 weights a byte
    assert sizes[5] == sizes[8] < 0.3 * fp32  # INT8 storage
    assert sizes[8] - sizes[4] == pytest.approx(n_weights / 2, abs=len(graph.layers))


def test_write_packed_rejects_bad_input(fbnet) -> None:
    layer = fbnet.layers[0]
    with pytest.raises(ValueError, match="onnx and tflite"):
        write_packed(fbnet, {}, "tf")
    wrong = encode(np.ones((2, 2), np.float32), 2, "linear")
    for fmt in FORMATS:
        with pytest.raises(ValueError, match="matches no"):
            write_packed(fbnet, {layer.name: wrong}, fmt)
        with pytest.raises(ValueError, match="matches no"):
            write_packed(fbnet, {"nope": encode(layer.weight, 2, "linear")}, fmt)


def test_tflite_int8_storage_option(fbnet) -> None:
    """``int4=False``: 2-4 bit codes stored as INT8, same outputs, INT8-sized file."""
    from hwnas.export.packed_tflite import graph_to_packed_tflite

    x = images()
    for kind in ("linear", "kmeans"):
        codes = {layer.name: encode(layer.weight, 3, kind) for layer in fbnet.layers}
        wide = graph_to_packed_tflite(fbnet, codes, int4=False)
        narrow = graph_to_packed_tflite(fbnet, codes)
        n_weights = sum(layer.weight.size for layer in fbnet.layers)
        assert len(wide) - len(narrow) >= n_weights // 2 - len(fbnet.layers)
        np.testing.assert_allclose(
            run_export(wide, "tflite", x), run_export(narrow, "tflite", x), rtol=0, atol=1e-6
        )
