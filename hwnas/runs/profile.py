"""A device's precision profile for one network: per-layer LUT, uniform networks, weight bits.

Measured once per run directory and device and kept as a LUT file (``quant_lut.json``, the
:mod:`hwnas.lut.schema` format with ``settings.precision = "mixed"`` and one entry per layer spec
and precision); a later ``hwnas quantize`` on the same device reuses its entries and re-times only
the whole networks (whose latency drifts between sessions on a shared machine, ENVIRONMENT.md).
:func:`hwnas.quant.profile.cost_from_lut` reads the file back as a cost model.
The whole networks are timed in interleaved rounds (fp32, int8, fp32, int8, ...) and the median
of the round medians is kept, so a burst of load does not decide which precision is faster.

:func:`measure_precisions` is the general form: any list of the precisions a format can be
written at (:data:`hwnas.export.precisions.PRECISIONS`: fp32, fp16, int8, dynamic-range int8,
16x8), every layer as a model of its own (the network's weights and grids,
:func:`hwnas.export.precisions.layer_model`) and the whole network at each uniform precision,
both in interleaved rounds; :func:`profile_device` is its fp32/int8 (or any list) use for HAQ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.blocks.specs import parse_key
from hwnas.devices.client import AgentClient
from hwnas.errors import UserError
from hwnas.export.precisions import CALIBRATED, layer_model, model_bytes, runtime_options
from hwnas.graph.blocks import layer_spec
from hwnas.graph.nodes import Graph
from hwnas.graph.qparams import QuantState
from hwnas.lut.schema import LUT, LUTEntry, load_lut, save_lut
from hwnas.quant.calibrate import int8_state
from hwnas.quant.costs import PrecisionCost, calibrated_cost
from hwnas.quant.profile import MODEL_NAME
from hwnas.runs.measure import MeasureSettings, measure_model, probe_int8_weight_bits

logger = logging.getLogger(__name__)

NETWORK_ROUNDS = 3


@dataclass(frozen=True)
class DeviceProfile:
    """What HAQ knows about the device for this network."""

    device: str
    fmt: str
    runtime: dict
    fingerprint: dict
    int8_weight_bits: int
    cost: PrecisionCost
    lut: LUT


def _known_entries(path: Path, device: str, runtime: dict) -> dict:
    if not path.is_file():
        return {}
    try:
        lut = load_lut(path)
    except UserError as exc:
        logger.warning("ignoring unreadable %s: %s", path, exc)
        return {}
    if lut.device_name != device or dict(lut.runtime) != runtime:
        return {}
    return {
        (e.key, e.precision): {
            "median_ms": e.median_ms,
            "p10_ms": e.p10_ms,
            "p90_ms": e.p90_ms,
            "n": e.n,
        }
        for e in lut.entries
    }


@dataclass(frozen=True)
class PrecisionProfile:
    """Per-layer and whole-network latency of one network at several precisions on a device.

    Attributes:
        fmt: ``onnx`` or ``tflite``.
        precisions: the precisions measured.
        layer_names: conv/linear layers in network order.
        keys: the block-spec key of each layer (layers with equal keys share one entry).
        table: ``{(key, precision): {"median_ms", "p10_ms", "p90_ms", "n", "rounds_ms"}}``;
            ``median_ms`` is the median of the per-round medians.
        network_ms: precision -> median over rounds of the uniform network's median (ms).
        network_rounds_ms: precision -> the per-round medians of the uniform network.
        runtime: the runtime (name, version) that ran the models.
        fingerprint: the device's fingerprint.
    """

    fmt: str
    precisions: tuple[str, ...]
    layer_names: tuple[str, ...]
    keys: tuple[str, ...]
    table: dict
    network_ms: dict
    network_rounds_ms: dict
    runtime: dict
    fingerprint: dict

    def layer_ms(self, precision: str) -> list[float]:
        """Median latency of every layer (network order) at ``precision``."""
        return [self.table[(k, precision)]["median_ms"] for k in self.keys]

    def rows(self) -> list[dict[str, float]]:
        """Per layer, precision -> median (the form :func:`calibrated_cost` takes)."""
        return [{p: self.table[(k, p)]["median_ms"] for p in self.precisions} for k in self.keys]


def _stats(medians: list[float], p10s: list[float], p90s: list[float], n: int) -> dict:
    return {
        "median_ms": float(np.median(medians)),
        "p10_ms": float(np.median(p10s)),
        "p90_ms": float(np.median(p90s)),
        "n": n,
        "rounds_ms": [float(v) for v in medians],
    }


def measure_precisions(
    client: AgentClient,
    graph: Graph,
    fmt: str,
    precisions: Sequence[str],
    settings: MeasureSettings,
    state: QuantState | None = None,
    network_rounds: int = NETWORK_ROUNDS,
    layer_rounds: int = 1,
    known: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    only: Collection[str] | None = None,
) -> PrecisionProfile:
    """Time every distinct layer and the whole network of ``graph`` at each of ``precisions``.

    Layers and networks are timed in interleaved rounds (every precision of a layer, then the
    next layer; all networks once per round), so a change of load hits all precisions alike.

    Args:
        client: the device's agent.
        graph: the folded network.
        fmt: ``onnx`` or ``tflite``.
        precisions: e.g. ``("fp32", "fp16", "int8", "dyn_int8", "int16x8")``.
        settings: warm-up, repeats, threads, core of each timed model.
        state: a calibrated uniform int8 state (needed for ``int8`` / ``int16x8``; calibrated
            on noise with the device's int8 weight bits when None).
        network_rounds: rounds of whole-network timings (0: layers only).
        layer_rounds: rounds of per-layer timings.
        known: entries measured before (same keys, e.g. from a LUT file), not measured again.
        progress: called with (done, total) after each layer measurement.
        only: time only the layers whose spec key is in it (None: all; the profile's
            :meth:`~PrecisionProfile.layer_ms` then needs ``known`` to hold the others).
    """
    if state is None and any(p in CALIBRATED for p in precisions):
        state = int8_state(graph, w_bits=probe_int8_weight_bits(client, fmt))
    keys = [layer_spec(graph, layer).key() for layer in graph.layers]
    table = dict(known or {})
    if layer_rounds > 0:
        table.update(
            _time_layers(
                client,
                graph,
                [k for k in keys if only is None or k in only],
                fmt,
                precisions,
                settings,
                state,
                layer_rounds,
                table,
                progress,
            )
        )
    rounds: dict[str, list[float]] = {p: [] for p in precisions}
    runtime, fingerprint = {}, {}
    if network_rounds > 0:
        networks = {p: model_bytes(graph, p, fmt, state) for p in precisions}
        for _ in range(network_rounds):
            for precision, data in networks.items():
                m = measure_model(client, data, settings, runtime_options(precision, fmt))
                rounds[precision].append(m.stats.median_ms)
                runtime, fingerprint = dict(m.runtime), dict(m.fingerprint)
    return PrecisionProfile(
        fmt=fmt,
        precisions=tuple(precisions),
        layer_names=tuple(layer.name for layer in graph.layers),
        keys=tuple(keys),
        table=table,
        network_ms={p: float(np.median(r)) for p, r in rounds.items() if r},
        network_rounds_ms=rounds,
        runtime=runtime,
        fingerprint=fingerprint,
    )


def _time_layers(
    client: AgentClient,
    graph: Graph,
    keys: list[str],
    fmt: str,
    precisions: Sequence[str],
    settings: MeasureSettings,
    state: QuantState | None,
    layer_rounds: int,
    known: dict,
    progress: Callable[[int, int], None] | None,
) -> dict:
    """Entries of the layers with spec key in ``keys`` not in ``known``, one per distinct spec."""
    first: dict[str, object] = {}
    for layer in graph.layers:
        key = layer_spec(graph, layer).key()
        if key in keys:
            first.setdefault(key, layer)
    todo = [(k, p) for k in first for p in precisions if (k, p) not in known]
    models = {(k, p): layer_model(graph, first[k], p, fmt, state) for k, p in todo}
    timed: dict[tuple[str, str], list] = {kp: [] for kp in todo}
    total = len(todo) * layer_rounds
    for r in range(layer_rounds):
        for i, (key, precision) in enumerate(todo):
            options = runtime_options(precision, fmt)
            m = measure_model(client, models[(key, precision)], settings, options)
            timed[(key, precision)].append(m.stats)
            logger.debug("%s at %s: %.4f ms", key, precision, m.stats.median_ms)
            if progress is not None:
                progress(r * len(todo) + i + 1, total)
    return {
        kp: _stats(
            [s.median_ms for s in stats],
            [s.p10_ms for s in stats],
            [s.p90_ms for s in stats],
            int(sum(s.n for s in stats)),
        )
        for kp, stats in timed.items()
    }


def profile_device(
    client: AgentClient,
    device: str,
    graph: Graph,
    fmt: str,
    settings: MeasureSettings,
    lut_path: Path,
    precisions: Sequence[str] = ("fp32", "int8"),
    progress: Callable[[int, int], None] | None = None,
) -> DeviceProfile:
    """Probe, time and calibrate; writes/updates the LUT file at ``lut_path``.

    ``precisions`` may be any of :data:`hwnas.export.precisions.PRECISIONS`; the cost model
    gets one calibration scale per precision (each uniform network is timed).
    """
    w_max = probe_int8_weight_bits(client, fmt)
    state = int8_state(graph, w_bits=w_max) if any(p in CALIBRATED for p in precisions) else None
    # the networks first: their runtime names the LUT file whose layer entries can be reused
    networks = measure_precisions(client, graph, fmt, precisions, settings, state, layer_rounds=0)
    runtime = networks.runtime
    layers = measure_precisions(
        client,
        graph,
        fmt,
        precisions,
        settings,
        state,
        network_rounds=0,
        known=_known_entries(lut_path, device, runtime),
        progress=progress,
    )
    table = layers.table
    cost = calibrated_cost(list(layers.layer_names), layers.rows(), networks.network_ms)
    lut = _as_lut(device, runtime, networks.fingerprint, settings, table, cost, w_max)
    save_lut(lut, lut_path)
    logger.info(
        "device %s: uniform networks %s ms, int8 weights %d bits",
        device,
        {p: round(v, 3) for p, v in networks.network_ms.items()},
        w_max,
    )
    return DeviceProfile(device, fmt, runtime, dict(networks.fingerprint), w_max, cost, lut)


def _as_lut(
    device: str,
    runtime: dict,
    fingerprint: dict,
    settings: MeasureSettings,
    table: dict,
    cost: PrecisionCost,
    w_max: int,
) -> LUT:
    entries = [
        LUTEntry(parse_key(key), precision, v["median_ms"], v["p10_ms"], v["p90_ms"], int(v["n"]))
        for (key, precision), v in sorted(table.items())
    ]
    return LUT(
        device={"name": device, "fingerprint": fingerprint},
        runtime=runtime,
        settings={"precision": "mixed", **settings.to_dict(), "method": "haq per-layer models"},
        entries=tuple(entries),
        provenance={"what": "per-layer latency of one network at each precision (hwnas quantize)"},
        models={
            MODEL_NAME: {
                "kind": "hwnas-precision-calibration",
                "scale": dict(cost.scale),
                "network_ms": dict(cost.network_ms),
                "int8_weight_bits": w_max,
            }
        },
    )
