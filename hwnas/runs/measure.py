"""Measuring models on a device for quantization and export: layer tables, networks, int8 probe.

Hardware feedback for HAQ (per-layer latency at each precision) is measured here, in the run
layer, and handed to :mod:`hwnas.quant` as a cost model; quantization itself never sees a device.

HAQ (Wang et al., CVPR 2019) prices a bitwidth policy with what each layer costs on the target
hardware. Here that is a LUT measured on the device: every conv/linear layer of the network,
as a standalone model (conv + folded BN + activation, :func:`~hwnas.graph.blocks.layer_spec`), timed at each precision
the runtime can run (:mod:`hwnas.runs.models`). Whole uniform networks are timed too,
because standalone layers miss what fusion and Q/DQ boundaries do to a real network; the cost
model (:mod:`hwnas.quant.costs`) uses them to calibrate the per-layer sums.

:func:`probe_int8_weight_bits` checks, on the device, whether its int8 kernels saturate with full
8-bit weights: onnxruntime's u8s8 kernels on x86 CPUs without VNNI add pairs of uint8 x int8
products in int16 with saturation (255 * 127 * 2 > 32767), so such devices deploy int8 layers
with 7-bit weights (onnxruntime's ``reduce_range``). The probe is one tiny QDQ conv.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.devices.client import AgentClient, Measurement
from hwnas.export.api import network_bytes, runtime_options
from hwnas.graph.blocks import layer_spec
from hwnas.graph.nodes import Graph
from hwnas.graph.qparams import QuantState

logger = logging.getLogger(__name__)

PROBE_CHANNELS = 16


@dataclass(frozen=True)
class MeasureSettings:
    """How models are timed on the device (passed to ``AgentClient.measure``)."""

    warmup: int = 10
    repeats: int = 30
    threads: int = 1
    core: int | None = None

    def to_dict(self) -> dict:
        return {
            "warmup": self.warmup,
            "repeats": self.repeats,
            "threads": self.threads,
            "core": self.core,
        }


def measure_model(
    client: AgentClient, data: bytes, settings: MeasureSettings, options: dict | None = None
) -> Measurement:
    """Time one model file on the device with ``settings``."""
    return client.measure(
        data,
        warmup=settings.warmup,
        repeats=settings.repeats,
        threads=settings.threads,
        core=settings.core,
        options=options,
    )


def measure_layer_table(
    client: AgentClient,
    graph: Graph,
    precisions: Sequence[str],
    fmt: str,
    settings: MeasureSettings,
    known: dict[tuple[str, str], dict] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[tuple[str, str], dict]:
    """Median/p10/p90 (ms) of every distinct layer spec of ``graph`` at every precision.

    Args:
        client: the device's agent.
        graph: the network.
        precisions: e.g. ``("fp32", "int8")``.
        fmt: ``onnx`` or ``tflite`` (what the device's runtime runs).
        settings: timing settings.
        known: entries measured before (same keys), reused and not measured again.
        progress: called with (done, total) after each measurement.

    Returns:
        ``{(spec key, precision): {"median_ms", "p10_ms", "p90_ms", "n"}}``.
    """
    from hwnas.runs.models import precision_model

    table = dict(known or {})
    specs = {layer_spec(graph, layer).key(): layer_spec(graph, layer) for layer in graph.layers}
    todo = [(k, p) for k in specs for p in precisions if (k, p) not in table]
    for i, (key, precision) in enumerate(todo):
        m = measure_model(client, precision_model(specs[key], precision, fmt), settings)
        table[(key, precision)] = {
            "median_ms": m.stats.median_ms,
            "p10_ms": m.stats.p10_ms,
            "p90_ms": m.stats.p90_ms,
            "n": m.stats.n,
        }
        logger.debug("%s at %s: %.4f ms", key, precision, m.stats.median_ms)
        if progress is not None:
            progress(i + 1, len(todo))
    return table


def probe_int8_weight_bits(client: AgentClient, fmt: str) -> int:
    """8 if the device's int8 convolution is exact with full 8-bit weights, else 7.

    Runs a 1x1 conv whose exact int32 accumulator (``16 * 255 * 127``) overflows int16 pair sums;
    a saturating kernel returns far less. TFLite kernels accumulate in int32 and are exact.
    """
    if fmt != "onnx":
        return 8
    data = _saturation_probe_onnx()
    x = np.full((1, PROBE_CHANNELS, 1, 1), 255.0, np.float32)
    _, (y,) = client.infer(data, [x])
    exact = PROBE_CHANNELS * 255.0 * 127.0
    ok = abs(float(y.ravel()[0]) - exact) <= 0.01 * exact
    logger.info(
        "int8 saturation probe: got %.0f, exact %.0f -> %s",
        float(y.ravel()[0]),
        exact,
        "exact" if ok else "saturating (7-bit weights)",
    )
    return 8 if ok else 7


def _saturation_probe_onnx() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    c = PROBE_CHANNELS
    exact = c * 255 * 127
    out_scale = float(np.float32(2 * exact / 255))  # the exact result lands mid-grid
    inits = [
        numpy_helper.from_array(np.array(1.0, np.float32), "s_in"),
        numpy_helper.from_array(np.array(0, np.uint8), "z_in"),
        numpy_helper.from_array(np.full((1, c, 1, 1), 127, np.int8), "wq"),
        numpy_helper.from_array(np.array([1.0], np.float32), "s_w"),
        numpy_helper.from_array(np.array([0], np.int8), "z_w"),
        numpy_helper.from_array(np.array(out_scale, np.float32), "s_out"),
        numpy_helper.from_array(np.array(0, np.uint8), "z_out"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "s_w", "z_w"], ["w"], axis=0),
        helper.make_node("Conv", ["xd", "w"], ["y"], kernel_shape=[1, 1]),
        helper.make_node("QuantizeLinear", ["y", "s_out", "z_out"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "s_out", "z_out"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "int8_saturation_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 1, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, 1, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def measure_network(
    client: AgentClient,
    graph: Graph,
    state: QuantState | None,
    fmt: str,
    settings: MeasureSettings,
) -> Measurement:
    """Time the whole network (float, or quantized as ``state``) on the device."""
    data = network_bytes(graph, state, fmt)
    return measure_model(client, data, settings, runtime_options(fmt, state is not None))
