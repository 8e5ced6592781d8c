"""``hwnas export``: a run directory's network as ONNX or TFLite at fp32, int8, mixed or packed.

* ``fp32``: the BN-folded float network.
* ``int8``: every layer int8; post-training quantization of the trained float weights, with
  activation ranges calibrated on real train images (min/max, 8 bits) and per-channel weights at
  the device's int8 weight bits (7 where its kernels saturate, see
  :func:`hwnas.runs.measure.probe_int8_weight_bits`).
* ``mixed``: the policy and fine-tuned weights ``hwnas quantize`` wrote (``quant_model.*``).
* ``packed``: the low-bit weights ``hwnas quantize --size-kb`` wrote (``quant_size_codes.*``,
  ``quant_size_model.*``), stored packed (:func:`hwnas.export.api.write_packed`: ONNX
  bit-planes decoded at session creation; TFLite INT4/INT8 + DEQUANTIZE), activations float.

Each file is checked (``onnx.checker`` for ONNX; loading and running in the interpreter for
TFLite), verified against the PyTorch model on the test split, and timed on the device; the
result is ``<out>.json`` and an ``exports`` entry in the run's ``report.json``.

This is the command; the writers it calls (:mod:`hwnas.export`) only turn a graph and its
quantization parameters into bytes, and the parameters come from :mod:`hwnas.quant`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from hwnas.errors import UserError
from hwnas.export.api import runtime_options, write_model
from hwnas.runs.measure import MeasureSettings

logger = logging.getLogger(__name__)

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "int8", "mixed", "packed")


@dataclass(frozen=True)
class ExportConfig:
    """What to export and how to verify it.

    Attributes:
        run_dir: the run directory.
        fmt: ``onnx`` or ``tflite``.
        precision: ``fp32``, ``int8``, ``mixed`` or ``packed``.
        out: output file.
        device: device to time the file on (None: the one ``hwnas quantize`` used, else
            ``local``); ``""`` skips timing.
        int8_weight_bits: weight bits of int8 layers (None: probe the device; 8 for TFLite).
        calibration_images: train images that calibrate int8 activation ranges.
        test_images: test images to verify on (None: the whole test split).
        seed: seeds the calibration subset.
        measure: timing settings.
    """

    run_dir: Path
    fmt: str
    precision: str
    out: Path
    device: str | None = None
    int8_weight_bits: int | None = None
    calibration_images: int = 512
    test_images: int | None = None
    seed: int = 0
    measure: MeasureSettings = field(default_factory=MeasureSettings)

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise UserError(f"unknown format {self.fmt!r}; known: {', '.join(FORMATS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}")
        if self.int8_weight_bits not in (None, 7, 8):
            raise UserError("--int8-weight-bits must be 7 or 8")


def _device_name(config: ExportConfig, run_report: dict) -> str:
    if config.device is not None:
        return config.device
    quant = run_report.get("quantization") or {}
    return str(quant.get("device") or "local")


def _load_data(run, config: ExportConfig):
    from hwnas.data import DataConfig, load_dataset

    splits = load_dataset(DataConfig(**run.data))
    tx, _ = splits.train.tensors
    gen = torch.Generator().manual_seed(config.seed)
    calib = tx[torch.randperm(len(tx), generator=gen)[: config.calibration_images]]
    sx, sy = splits.test.tensors
    if config.test_images is not None:
        sx, sy = sx[: config.test_images], sy[: config.test_images]
    return calib.contiguous(), sx.contiguous().numpy(), sy.numpy()


def _weight_bits(config: ExportConfig, client) -> int:
    if config.int8_weight_bits is not None:
        return config.int8_weight_bits
    if config.fmt == "tflite":
        return 8
    if client is None:
        logger.warning("no device to probe: int8 weights at 7 bits (safe on every CPU)")
        return 7
    from hwnas.runs.measure import probe_int8_weight_bits

    return probe_int8_weight_bits(client, "onnx")


def _quant_state(run, graph, config: ExportConfig, calib: torch.Tensor, client):
    """(state or None, PyTorch reference module) for the requested precision."""
    from hwnas.graph.qparams import LayerBits
    from hwnas.quant.calibrate import calibrate
    from hwnas.quant.policy import load_state
    from hwnas.quant.qnet import QuantNet

    if config.precision == "fp32":
        return None, run.module
    if config.precision in ("mixed", "packed"):
        prefix = config.run_dir / (
            "quant_model" if config.precision == "mixed" else "quant_size_model"
        )
        if not prefix.with_suffix(".json").is_file():
            flag = "--latency-ms" if config.precision == "mixed" else "--size-kb"
            raise UserError(
                f"{config.run_dir} has no {config.precision} model; run 'hwnas quantize "
                f"--run {config.run_dir} {flag} ...' before exporting --precision {config.precision}"
            )
        state = load_state(prefix)
        return state, QuantNet.from_state(state).eval()
    bits = _weight_bits(config, client)
    net = QuantNet(graph, {layer.name: LayerBits(bits, 8) for layer in graph.layers})
    calibrate(net, [calib[i : i + 128] for i in range(0, len(calib), 128)], seed=config.seed)
    return net.to_state(), net.eval()


def export_run(config: ExportConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Export, verify and time; writes ``config.out`` and ``<out>.json``; returns the report."""
    from hwnas.quant.qat import torch_threads

    with torch_threads(1):
        return _export_run(config, progress)


def _export_run(config: ExportConfig, progress: Callable[[str], None] | None) -> dict:
    from hwnas.graph.lower import graph_from_module
    from hwnas.runs.rundir import load_run

    say = progress or (lambda message: None)
    run = load_run(config.run_dir)
    graph = graph_from_module(run.module, run.input_shape)
    device = _device_name(config, run.report)
    say("loading data")
    calib, test_x, test_y = _load_data(run, config)
    with _maybe_device(device) as client:
        state, reference = _quant_state(run, graph, config, calib, client)
        data = _model_bytes(config, graph, state)
        config.out.parent.mkdir(parents=True, exist_ok=True)
        config.out.write_bytes(data)
        say(f"verifying on {len(test_y)} test images")
        report = _verify(config, data, state, reference, test_x, test_y)
        if client is not None:
            say(f"timing on {device}")
            report["latency"] = _time(client, data, config, _quantized(config))
            report["device"] = device
    _write_report(config, report)
    return report


def _model_bytes(config: ExportConfig, graph, state) -> bytes:
    if config.precision != "packed":
        return write_model(graph, state, config.fmt, config.precision)
    from hwnas.export.api import write_packed
    from hwnas.quant.policy import load_codes

    codes = load_codes(config.run_dir / "quant_size_codes")
    return write_packed(state.graph, codes, config.fmt)


def _verify(config, data, state, reference, test_x, test_y) -> dict:
    from hwnas.export.verify import agreement, run_export

    options = runtime_options(config.fmt, _quantized(config))
    got = run_export(data, config.fmt, test_x, options)
    with torch.no_grad():
        ref = torch.cat(
            [reference(torch.from_numpy(test_x[i : i + 256])) for i in range(0, len(test_x), 256)]
        ).numpy()
    check = agreement(got, ref, test_y)
    return {
        "schema_version": 1,
        "kind": "hwnas-export-report",
        "run": str(config.run_dir),
        "format": config.fmt,
        "precision": config.precision,
        "out": str(config.out),
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "checked": "onnx.checker (full_check)" if config.fmt == "onnx" else "LiteRT interpreter",
        "runtime_options": options or {},
        "int8_layers": 0 if state is None else sum(not b.is_float for b in state.policy.values()),
        **({"weight_bits": _packed_bits(config)} if config.precision == "packed" else {}),
        "verification": check.to_dict(),
    }


def _quantized(config: ExportConfig) -> bool:
    """Integer activations (QDQ): the ONNX session must keep its float islands float."""
    return config.precision in ("int8", "mixed")


def _packed_bits(config: ExportConfig) -> dict:
    from hwnas.quant.policy import load_codes

    return {
        name: code.bits for name, code in load_codes(config.run_dir / "quant_size_codes").items()
    }


def _time(client, data: bytes, config: ExportConfig, quantized: bool) -> dict:
    from hwnas.runs.measure import measure_model

    m = measure_model(client, data, config.measure, runtime_options(config.fmt, quantized))
    return m.to_dict(with_samples=False)


class _NoDevice:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _maybe_device(name: str):
    if not name:
        return _NoDevice()
    from hwnas.devices.connect import open_device

    return open_device(name)


def _write_report(config: ExportConfig, report: dict) -> None:
    from hwnas.runs.rundir import update_run_report

    side = config.out.with_name(config.out.name + ".json")
    side.write_text(json.dumps(report, indent=2, allow_nan=False), encoding="utf-8")
    report["report_file"] = str(side)
    path = config.run_dir / "report.json"
    exports = {}
    if path.is_file():
        exports = json.loads(path.read_text(encoding="utf-8")).get("exports") or {}
    keep = ("out", "bytes", "sha256", "verification", "latency", "device")
    exports[f"{config.fmt}-{config.precision}"] = {k: report[k] for k in keep if k in report}
    update_run_report(config.run_dir, "exports", exports)
