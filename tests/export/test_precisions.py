"""``hwnas.export.precisions``: every precision of both formats, run in onnxruntime and LiteRT.

Each precision is checked against the fp32 model of the same graph in the same runtime. To see
what the precision itself adds, the reference of the weight-quantized precisions carries the
same int8-rounded weights (``_rounded``): what is left is the activation arithmetic (fp16,
run-time 8-bit, or int16 grids), with a tolerance set by it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.export.precisions import (
    PRECISIONS,
    check_precision,
    layer_graph,
    layer_model,
    model_bytes,
    runtime_options,
)
from hwnas.export.verify import run_export, tflite_interpreter_class
from hwnas.graph.lower import graph_from_module
from hwnas.graph.nodes import Conv, Graph, reference_forward
from hwnas.graph.qparams import LayerBits, quantize_weight
from hwnas.quant.calibrate import calibrate
from hwnas.quant.qnet import QuantNet
from tests.quant.conftest import SMALL_SPECS

FORMATS = ("onnx", "tflite")
# max |precision - reference| / max |reference| (reference: fp32 with the same weights)
TOLERANCE = {"fp16": 3e-3, "dyn_int8": 3e-2, "int16x8": 5e-4}
# one layer against its float64 reference (int8 weights rounded too): max relative error
LAYER_TOLERANCE = {"fp32": 1e-5, "fp16": 3e-3, "int8": 3e-2, "dyn_int8": 3e-2, "int16x8": 2e-2}


@pytest.fixture(scope="module")
def graph_and_state():
    graph = graph_from_module(build_sequential(SMALL_SPECS, seed=3), SMALL_SPECS[0].in_shape)
    return graph, _state(graph, 8)


def _state(graph: Graph, w_bits: int):
    policy = {layer.name: LayerBits(w_bits, 8) for layer in graph.layers}
    return calibrate(QuantNet(graph, policy), [torch.from_numpy(_x())]).to_state()


class _LocalORT:
    """The agent client's ``infer`` on this machine's onnxruntime (for the saturation probe)."""

    def infer(self, data: bytes, inputs: list) -> tuple[None, list]:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return None, session.run(None, {session.get_inputs()[0].name: inputs[0]})


@pytest.fixture(scope="module")
def onnx_int8_state(graph_and_state):
    """The int8 state the product would use with onnxruntime on this CPU: 8-bit weights where
    its u8 x s8 kernels are exact (VNNI), 7-bit where they saturate (AVX2 without VNNI), as
    ``hwnas export`` decides with :func:`hwnas.runs.measure.probe_int8_weight_bits`."""
    from hwnas.runs.measure import probe_int8_weight_bits

    graph, state = graph_and_state
    bits = probe_int8_weight_bits(_LocalORT(), "onnx")  # type: ignore[arg-type]
    return state if bits == 8 else _state(graph, bits)


def _x(n: int = 32) -> np.ndarray:
    return np.random.default_rng(5).standard_normal((n, 3, 8, 8)).astype(np.float32)


def _rounded(graph: Graph, clip: dict | None = None) -> Graph:
    """``graph`` with every weight replaced by its int8 per-channel value times its scale."""
    nodes = []
    for node in graph.nodes:
        if hasattr(node, "weight"):
            q, s = quantize_weight(node.weight, 8, (clip or {}).get(node.name, 1.0))
            w = (q.astype(np.float32) * s.reshape((-1,) + (1,) * (q.ndim - 1))).astype(np.float32)
            node = dataclasses.replace(node, weight=w)
        nodes.append(node)
    return Graph(tuple(nodes), graph.input_shape)


def _run(data: bytes, fmt: str, precision: str, x: np.ndarray) -> np.ndarray:
    if fmt == "onnx" and precision == "fp16":
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x.astype(np.float16)})[0].astype(np.float32)
    return run_export(data, fmt, x, runtime_options(precision, fmt))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("precision", ["fp16", "dyn_int8", "int16x8"])
def test_network_matches_fp32(graph_and_state, fmt: str, precision: str) -> None:
    graph, state = graph_and_state
    x = _x()
    if precision == "fp16":
        reference_graph = graph
    else:
        reference_graph = _rounded(graph, state.clip_ratios if precision == "int16x8" else None)
    want = run_export(model_bytes(reference_graph, "fp32", fmt), fmt, x)
    got = _run(model_bytes(graph, precision, fmt, state), fmt, precision, x)
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= TOLERANCE[precision], f"{fmt} {precision}: relative error {err:.2e}"
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.9
    # and not trivially equal to the float model: the precision really changed the arithmetic
    assert np.abs(got - run_export(model_bytes(graph, "fp32", fmt), fmt, x)).max() > 0


def test_onnx_dynamic_int8_runs_integer_kernels(graph_and_state, tmp_path) -> None:
    graph, _ = graph_and_state
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    model = model_bytes(graph, "dyn_int8", "onnx")
    ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(so.optimized_model_filepath).graph.node]
    convs = sum(isinstance(n, Conv) for n in graph.nodes)
    assert ops.count("ConvInteger") == convs and "Conv" not in ops
    assert "DynamicQuantizeMatMul" in ops  # the linear fused by onnxruntime
    weights = {i.name: i.data_type for i in onnx.load_from_string(model).graph.initializer}
    assert sum(t == onnx.TensorProto.INT8 for t in weights.values()) >= len(graph.layers)


def test_onnx_16x8_has_int16_activations(graph_and_state) -> None:
    graph, state = graph_and_state
    model = onnx.load_from_string(model_bytes(graph, "int16x8", "onnx", state))
    inits = {i.name: i for i in model.graph.initializer}
    quants = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quants and all(inits[n.input[2]].data_type == onnx.TensorProto.INT16 for n in quants)
    assert model.opset_import[0].version >= 21


def _tensor_types(data: bytes) -> dict[str, list[tuple[str, ...]]]:
    """Per TFLite op name, the dtypes of (input, filter) of each such op."""
    interp = tflite_interpreter_class()(model_content=data, num_threads=1)
    interp.allocate_tensors()
    dtype = {t["index"]: np.dtype(t["dtype"]).name for t in interp.get_tensor_details()}
    found: dict[str, list[tuple[str, ...]]] = {}
    for op in interp._get_ops_details():
        if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            found.setdefault(op["op_name"], []).append(tuple(dtype[i] for i in op["inputs"][:2]))
    return found


@pytest.mark.parametrize(
    "precision, kinds",
    [("dyn_int8", ("float32", "int8")), ("int16x8", ("int16", "int8")), ("int8", ("int8", "int8"))],
)
def test_tflite_layers_have_the_precision_types(graph_and_state, precision, kinds) -> None:
    graph, state = graph_and_state
    found = _tensor_types(model_bytes(graph, precision, "tflite", state))
    assert set(found) == {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"}
    assert all(pair == kinds for pairs in found.values() for pair in pairs)


def _activation(graph: Graph, tensor: str, x: np.ndarray) -> np.ndarray:
    """The value of ``tensor`` when ``graph`` runs on ``x`` (float64 numpy reference)."""
    if tensor == graph.input_name:
        return x
    upto = next(i for i, n in enumerate(graph.nodes) if n.out == tensor)
    return reference_forward(Graph(graph.nodes[: upto + 1], graph.input_shape, "input", tensor), x)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_layer_model_computes_its_layer(graph_and_state, onnx_int8_state, fmt: str) -> None:
    """Each layer alone, at each precision, fed what it sees inside the network (ONNX int8 at
    the weight bits the product uses on this CPU)."""
    graph, state = graph_and_state
    x = _x(4)
    for layer in graph.layers:
        single = layer_graph(graph, layer)
        inp = _activation(graph, layer.inp, x).astype(np.float32)
        want = reference_forward(single, inp)
        for precision in PRECISIONS:
            mine = onnx_int8_state if (fmt, precision) == ("onnx", "int8") else state
            data = layer_model(graph, layer, precision, fmt, mine)
            got = _run_layer(data, fmt, precision, inp)
            assert got.shape == want.shape, (layer.name, precision)
            err = np.abs(got - want).max() / np.abs(want).max()
            assert err < LAYER_TOLERANCE[precision], (
                f"{layer.name} {fmt} {precision}: relative error {err:.3f}"
            )


def _run_layer(data: bytes, fmt: str, precision: str, x: np.ndarray) -> np.ndarray:
    """Run a one-layer model on NCHW (or (N, C)) ``x``; the output in NCHW (or (N, C))."""
    if fmt == "onnx":
        return _run(data, fmt, precision, x)
    interp = tflite_interpreter_class()(model_content=data, num_threads=1)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]
    rows = []
    for row in x:
        interp.set_tensor(
            inp, np.ascontiguousarray(row.transpose(1, 2, 0) if row.ndim == 3 else row)[None]
        )
        interp.invoke()
        y = interp.get_tensor(out)[0]
        rows.append(y.transpose(2, 0, 1) if y.ndim == 3 else y)
    return np.stack(rows)


def test_unknown_precision_and_missing_ranges_are_refused(graph_and_state) -> None:
    graph, _ = graph_and_state
    with pytest.raises(ValueError, match="int4"):
        check_precision("int4", "onnx")
    with pytest.raises(ValueError, match="coreml"):
        check_precision("fp32", "coreml")
    with pytest.raises(ValueError, match="QuantState"):
        model_bytes(graph, "int16x8", "tflite")
