"""A device's precision profile as a LUT file, read back as a HAQ cost model.

``hwnas quantize`` measures a network's layers at each precision on the device
(:mod:`hwnas.runs.profile`) and keeps them as a LUT file (``quant_lut.json``, the
:mod:`hwnas.lut.schema` format with ``settings.precision = "mixed"``) whose ``models`` hold the
end-to-end calibration under :data:`MODEL_NAME`. :func:`cost_from_lut` turns such a file into the
cost model HAQ searches with, so quantization sees a cost model, never a device.
"""

from __future__ import annotations

from hwnas.errors import UserError
from hwnas.graph.blocks import layer_spec
from hwnas.graph.nodes import Graph
from hwnas.lut.schema import LUT
from hwnas.quant.costs import PrecisionCost, calibrated_cost

MODEL_NAME = "haq-calibration"


def cost_from_lut(lut: LUT, graph: Graph) -> tuple[PrecisionCost, int]:
    """(cost model, int8 weight bits) of ``graph`` from a LUT written by :func:`profile_device`.

    Lets a search run where the device is not reachable (the search sees only the cost model).
    """
    calibration = lut.models.get(MODEL_NAME)
    if not isinstance(calibration, dict):
        raise UserError(f"LUT of {lut.device_name!r} has no {MODEL_NAME} model (not from quantize)")
    network_ms = {k: float(v) for k, v in calibration["network_ms"].items()}
    rows = []
    for layer in graph.layers:
        key = layer_spec(graph, layer).key()
        rows.append({p: lut.latency_ms(key, p) for p in network_ms})
    cost = calibrated_cost([layer.name for layer in graph.layers], rows, network_ms)
    return cost, int(calibration["int8_weight_bits"])
