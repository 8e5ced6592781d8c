"""``hwnas.graph.wcodes``: bit-plane packing, k-means codes, the dequantized graph, codes on disk."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.graph.nodes import Add, Conv, GlobalPool, Graph, Linear, reference_forward
from hwnas.graph.wcodes import (
    dequantized_graph,
    encode,
    kmeans_code,
    pack_codes,
    unpack_codes,
)


def small_graph(seed: int = 0) -> Graph:
    """conv -> depthwise -> conv + residual -> pool -> linear, numpy weights."""
    rng = np.random.default_rng(seed)

    def w(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float32) * 0.3

    nodes = (
        Conv("c0", "input", "t0", w(8, 3, 3, 3), w(8), 1, 1, "relu"),
        Conv("dw", "t0", "t1", w(8, 1, 3, 3), w(8), 1, 8, "relu6"),
        Conv("c1", "t1", "t2", w(8, 8, 1, 1), w(8), 1, 1),
        Add("res", "t0", "t2", "t3"),
        GlobalPool("gap", "t3", "t4"),
        Linear("fc", "t4", "output", w(5, 8), w(5)),
    )
    return Graph(nodes, (1, 3, 6, 6))


@pytest.mark.parametrize("bits", range(2, 9))
def test_pack_unpack_roundtrip(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for n in (1, 7, 8, 61, 1000):
        codes = rng.integers(0, 2**bits, size=n).astype(np.uint8)
        planes = pack_codes(codes, bits)
        assert planes.shape == (bits, -(-n // 8)) and planes.dtype == np.uint8
        np.testing.assert_array_equal(unpack_codes(planes, bits, n), codes)


def test_kmeans_error_falls_with_bits_and_is_deterministic() -> None:
    w = np.random.default_rng(3).standard_normal((16, 8, 3, 3)).astype(np.float32)
    errors = []
    for bits in range(2, 9):
        code = kmeans_code(w, bits)
        again = kmeans_code(w, bits)
        np.testing.assert_array_equal(code.codes, again.codes)
        np.testing.assert_array_equal(code.table, again.table)
        assert code.table.shape == (2**bits,) and np.all(np.diff(code.table) >= 0)
        errors.append(float(np.mean((code.dequantize() - w) ** 2)))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-3 * float(np.mean(w**2))


def test_dequantized_graph_replaces_only_coded_weights() -> None:
    graph = small_graph()
    codes = {
        "c0": encode(graph.layers[0].weight, 2, "linear"),
        "fc": encode(graph.layers[3].weight, 3, "kmeans"),
    }
    deq = dequantized_graph(graph, codes)
    assert [type(n) for n in deq.nodes] == [type(n) for n in graph.nodes]
    assert deq.shapes == graph.shapes
    for old, new in zip(graph.layers, deq.layers):
        np.testing.assert_array_equal(new.bias, old.bias)
        want = codes[old.name].dequantize() if old.name in codes else old.weight
        np.testing.assert_array_equal(new.weight, want)
    assert not np.array_equal(deq.layers[0].weight, graph.layers[0].weight)
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6)).astype(np.float32)
    assert not np.allclose(reference_forward(deq, x), reference_forward(graph, x))
    assert reference_forward(dequantized_graph(graph, {}), x) == pytest.approx(
        reference_forward(graph, x)
    )


def test_dequantized_graph_rejects_unknown_layers_and_shapes() -> None:
    graph = small_graph()
    with pytest.raises(ValueError, match="no conv/linear layer"):
        dequantized_graph(graph, {"gap": encode(np.ones((2, 2), np.float32), 2, "linear")})
    with pytest.raises(ValueError, match="shape"):
        dequantized_graph(graph, {"fc": encode(np.ones((5, 9), np.float32), 2, "linear")})
