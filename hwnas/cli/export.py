"""``hwnas export --run DIR --format onnx|tflite --precision fp32|int8|mixed|packed --out F``.

Writes the run's network as ONNX (float, or QDQ int8 / mixed) or ``.tflite`` (float, or full
integer / mixed) without TensorFlow, or with ``packed`` the low-bit weights of ``hwnas quantize
--size-kb`` stored at their bit widths (activations float), then verifies it: predictions against the PyTorch model on
the test split, and latency on a device through its agent. The verification lands in
``F.json`` and in the run's ``report.json`` under ``exports``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli._common import add_json_flag, emit, status_line


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a run's network (ONNX, TFLite; fp32, int8, mixed, packed)"
    )
    p.add_argument("--run", required=True, help="run directory")
    p.add_argument("--format", required=True, choices=("onnx", "tflite"), dest="fmt")
    p.add_argument("--precision", required=True, choices=("fp32", "int8", "mixed", "packed"))
    p.add_argument("--out", required=True, help="output file (.onnx / .tflite)")
    p.add_argument(
        "--device",
        default=None,
        help="device to time the file on (default: the one 'hwnas quantize' used, "
        "else local); '' skips timing",
    )
    p.add_argument(
        "--int8-weight-bits",
        type=int,
        choices=(7, 8),
        default=None,
        help="weight bits of int8 layers (default: probe the device)",
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=512,
        help="train images calibrating int8 ranges (default 512)",
    )
    p.add_argument(
        "--test-images",
        type=int,
        default=None,
        help="verify on the first N test images (default: all)",
    )
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--repeats", type=int, default=50)
    add_json_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from hwnas.errors import UserError
    from hwnas.runs.export import ExportConfig, export_run
    from hwnas.runs.measure import MeasureSettings

    if args.calibration_images < 1 or (args.test_images is not None and args.test_images < 1):
        raise UserError("--calibration-images and --test-images must be positive")
    config = ExportConfig(
        run_dir=Path(args.run),
        fmt=args.fmt,
        precision=args.precision,
        out=Path(args.out),
        device=args.device,
        int8_weight_bits=args.int8_weight_bits,
        calibration_images=args.calibration_images,
        test_images=args.test_images,
        measure=MeasureSettings(warmup=args.warmup, repeats=args.repeats),
    )
    report = export_run(config, progress=status_line)
    status_line()
    emit(report, args.json, _render)
    return 0


def _render(r: dict) -> str:
    v = r["verification"]
    lines = [
        f"{r['out']}: {r['format']} {r['precision']}, {r['bytes']} bytes "
        f"({r['int8_layers']} int8 layers), checked by {r['checked']}",
        f"  test split ({v['n']} images): agreement with PyTorch {100 * v['agreement']:.2f} %, "
        f"accuracy {v['export_accuracy']:.2f} % (PyTorch {v['reference_accuracy']:.2f} %)",
    ]
    if "latency" in r:
        lat = r["latency"]
        lines.append(
            f"  latency on {r['device']}: median {lat['median_ms']:.4f} ms "
            f"(p10 {lat['p10_ms']:.4f}, p90 {lat['p90_ms']:.4f})"
        )
    lines.append(f"  report: {r['report_file']}")
    return "\n".join(lines)
