"""A device's precision profile for one network: per-layer LUT, uniform networks, weight bits.

Measured once per run directory and device and kept as a LUT file (``quant_lut.json``, the
:mod:`hwnas.lut.schema` format with ``settings.precision = "mixed"`` and one entry per layer spec
and precision); a later ``hwnas quantize`` on the same device reuses its entries and re-times only
the whole networks (whose latency drifts between sessions on a shared machine, ENVIRONMENT.md).
:func:`hwnas.quant.profile.cost_from_lut` reads the file back as a cost model.
The whole networks are timed in interleaved rounds (fp32, int8, fp32, int8, ...) and the median
of the round medians is kept, so a burst of load does not decide which precision is faster.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwnas.blocks.specs import parse_key
from hwnas.devices.client import AgentClient
from hwnas.errors import UserError
from hwnas.graph.blocks import layer_spec
from hwnas.graph.nodes import Graph
from hwnas.lut.schema import LUT, LUTEntry, load_lut, save_lut
from hwnas.quant.calibrate import int8_state
from hwnas.quant.costs import PrecisionCost, calibrated_cost
from hwnas.quant.profile import MODEL_NAME
from hwnas.runs.measure import (
    MeasureSettings,
    measure_layer_table,
    measure_network,
    probe_int8_weight_bits,
)

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
    """Probe, time and calibrate; writes/updates the LUT file at ``lut_path``."""
    w_max = probe_int8_weight_bits(client, fmt)
    states = {"fp32": None}
    if "int8" in precisions:
        states["int8"] = int8_state(graph, w_bits=w_max)
    rounds: dict[str, list[float]] = {p: [] for p in states}
    for _ in range(NETWORK_ROUNDS):  # interleaved, so load changes hit both precisions
        for precision, state in states.items():
            float_m = measure_network(client, graph, state, fmt, settings)
            rounds[precision].append(float_m.stats.median_ms)
    runtime = dict(float_m.runtime)
    network_ms = {p: float(np.median(r)) for p, r in rounds.items()}
    known = _known_entries(lut_path, device, runtime)
    table = measure_layer_table(client, graph, precisions, fmt, settings, known, progress)
    keys = [layer_spec(graph, layer).key() for layer in graph.layers]
    rows = [{p: table[(k, p)]["median_ms"] for p in precisions} for k in keys]
    cost = calibrated_cost([layer.name for layer in graph.layers], rows, network_ms)
    lut = _as_lut(device, runtime, float_m.fingerprint, settings, table, cost, w_max)
    save_lut(lut, lut_path)
    logger.info(
        "device %s: fp32 network %.3f ms, int8 %s ms, int8 weights %d bits",
        device,
        network_ms["fp32"],
        network_ms.get("int8"),
        w_max,
    )
    return DeviceProfile(device, fmt, runtime, dict(float_m.fingerprint), w_max, cost, lut)


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
