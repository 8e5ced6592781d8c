"""Which precision is faster where, and what quantized exports cost in accuracy, on ``local``.

Two parts::

    python bench/quant_export.py blocks [--formats onnx tflite] [--name precision_blocks]
    python bench/quant_export.py run --run R [--test-images N]

* ``blocks``: FBNet blocks (every op at the five stage geometries of the 32 px CIFAR net, plus
  the stem, head and classifier) timed on the local device at fp32, fp16 and int8 in onnxruntime
  and in TFLite (LiteRT), fp32 and int8 interleaved in the same session; writes
  ``bench/results/<name>.json`` (default ``precision_blocks``): per-block medians and the
  int8/fp32 and fp16/fp32 ratios (median, and how many blocks got faster).
* ``run``: the run's network exported by ``hwnas export`` as ONNX and TFLite at fp32 and int8,
  each verified on the test split in its runtime; latency re-measured in interleaved rounds
  (fp32, int8, fp32, int8...); the ratio is the median of the per-round ratios, so load changes
  between rounds (this machine is shared) cancel. Writes
  ``bench/results/quant_export.json``: int8/fp32 latency ratio (target <= 0.5) and accuracy
  drop in points (target <= 1) per format.
* ``variants``: is the int8 ratio hwnas's exporter or the hardware? The run's fp32 ONNX is
  also quantized by onnxruntime's own ``quantize_static`` in six configurations (QDQ and
  QOperator, per-channel and per-tensor, u8s8 and u8u8, reduce_range, depthwise left in fp32)
  and every model is timed on ``local`` in interleaved rounds with fp32 and hwnas's int8
  export; the CPU's int8 dot-product extensions (VNNI) are recorded beside the ratios. Writes
  ``bench/results/quant_ort_variants.json``. Calibration uses random inputs: only speed is
  compared here, never accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRECISIONS = ("fp32", "fp16", "int8")


def block_specs() -> list:
    """One block per op at the first layer of each stage, plus the fixed parts (32 px geometry)."""
    from hwnas.spaces.fbnet_geometry import OPS, fixed_specs, layer_slots, op_spec

    slots = layer_slots(32)
    firsts = [slots[i] for i in (1, 2, 6, 10, 14, 18)]  # one per stage after the first
    specs = [op_spec(s, k) for s in firsts for k in range(len(OPS) - 1)]
    stem, head, _, fc = fixed_specs(32, 10)
    return [stem, *specs, head, fc]


def blocks(args: argparse.Namespace) -> None:
    from bench._common import write_result
    from hwnas.devices.connect import open_device
    from hwnas.runs.measure import MeasureSettings, measure_model
    from hwnas.runs.models import precision_model

    settings = MeasureSettings(warmup=10, repeats=args.repeats)
    rows = []
    with open_device("local") as client:
        runtimes = client.fingerprint().get("runtimes", {})
        for spec in block_specs():
            row = {"block": spec.key(), "mmacs": spec.flops() / 1e6}
            for fmt in args.formats:
                for precision in PRECISIONS:
                    data = precision_model(spec, precision, fmt)
                    m = measure_model(client, data, settings)
                    row[f"{fmt}_{precision}_ms"] = m.stats.median_ms
            rows.append(row)
            print(json.dumps(row))
    summary = {}
    for fmt in args.formats:
        for precision in ("fp16", "int8"):
            ratios = np.array([r[f"{fmt}_{precision}_ms"] / r[f"{fmt}_fp32_ms"] for r in rows])
            summary[f"{fmt}_{precision}_over_fp32"] = {
                "median": float(np.median(ratios)),
                "min": float(ratios.min()),
                "max": float(ratios.max()),
                "faster_blocks": int((ratios < 0.95).sum()),
                "blocks": len(rows),
            }
    figures = {
        "runtimes": runtimes,
        "summary": summary,
        "blocks": rows,
        "settings": settings.to_dict(),
    }
    path = write_result(args.name, figures, command=" ".join(["python", *sys.argv]))
    print(json.dumps(summary, indent=1))
    print(f"written {path}")


def run(args: argparse.Namespace) -> None:
    from bench._common import write_result
    from hwnas.devices.connect import open_device
    from hwnas.export.api import runtime_options
    from hwnas.runs.export import ExportConfig, export_run
    from hwnas.runs.measure import MeasureSettings, measure_model

    run_dir = Path(args.run)
    out = run_dir / "bench_export"
    reports = {}
    for fmt in ("onnx", "tflite"):
        for precision in ("fp32", "int8"):
            config = ExportConfig(
                run_dir,
                fmt,
                precision,
                out / f"model_{precision}.{fmt}",
                device="",
                test_images=args.test_images,
            )
            reports[(fmt, precision)] = export_run(config)
    rounds = {key: [] for key in reports}
    with open_device("local") as client:
        for _ in range(args.rounds):
            for key, report in reports.items():
                data = Path(report["out"]).read_bytes()
                options = runtime_options(key[0], key[1] != "fp32")
                m = measure_model(client, data, MeasureSettings(10, args.repeats), options)
                rounds[key].append(m.stats.median_ms)
    figures = {"run": str(run_dir), "arch": json.loads((run_dir / "arch.json").read_text())}
    for fmt in ("onnx", "tflite"):
        fp32, int8 = reports[(fmt, "fp32")], reports[(fmt, "int8")]
        ms = {p: float(np.median(rounds[(fmt, p)])) for p in ("fp32", "int8")}
        paired = [i / f for i, f in zip(rounds[(fmt, "int8")], rounds[(fmt, "fp32")])]
        figures[fmt] = {
            "fp32_ms": ms["fp32"],
            "int8_ms": ms["int8"],
            "int8_over_fp32": float(np.median(paired)),  # median of per-round ratios
            "int8_over_fp32_per_round": paired,
            "round_medians_ms": {p: rounds[(fmt, p)] for p in ("fp32", "int8")},
            "fp32_test_accuracy": fp32["verification"]["export_accuracy"],
            "int8_test_accuracy": int8["verification"]["export_accuracy"],
            "accuracy_drop_points": fp32["verification"]["export_accuracy"]
            - int8["verification"]["export_accuracy"],
            "int8_agreement_with_fake_quant": int8["verification"]["agreement"],
            "fp32_agreement_with_pytorch": fp32["verification"]["agreement"],
            "test_images": int8["verification"]["n"],
            "bytes": {"fp32": fp32["bytes"], "int8": int8["bytes"]},
            "targets_met": {
                "ratio_le_0.5": float(np.median(paired)) <= 0.5,
                "drop_le_1_point": fp32["verification"]["export_accuracy"]
                - int8["verification"]["export_accuracy"]
                <= 1.0,
            },
        }
        print(fmt, json.dumps({k: v for k, v in figures[fmt].items() if k != "round_medians_ms"}))
    path = write_result("quant_export", figures, command=" ".join(["python", *sys.argv]))
    print(f"written {path}")


def cpu_int8_features() -> dict:
    """Which int8 dot-product instructions this CPU has (x86 VNNI, Arm dotprod/i8mm)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("flags", "features")):
                flags.update(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
    return {name: name in flags for name in wanted}


def variants(args: argparse.Namespace) -> None:
    import tempfile

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from bench._common import write_result
    from hwnas.devices.connect import open_device
    from hwnas.export.api import runtime_options
    from hwnas.runs.measure import MeasureSettings, measure_model

    export = Path(args.run) / "bench_export"
    fp32_path, ours_path = export / "model_fp32.onnx", export / "model_int8.onnx"
    if not fp32_path.exists() or not ours_path.exists():
        raise SystemExit(f"run 'python bench/quant_export.py run --run {args.run}' first")
    tmp = Path(tempfile.mkdtemp(prefix="hwnas-quant-variants-"))
    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
    graph = onnx.load(str(pre)).graph
    name = graph.input[0].name
    shape = [d.dim_value or 1 for d in graph.input[0].type.tensor_type.shape.dim]
    depthwise = [
        n.name
        for n in graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]

    class RandomInputs(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self.items = iter(
                [{name: rng.standard_normal(shape, dtype=np.float32)} for _ in range(16)]
            )

        def get_next(self):
            return next(self.items, None)

    qdq, qop = QuantFormat.QDQ, QuantFormat.QOperator
    u8, s8 = QuantType.QUInt8, QuantType.QInt8
    configs = {
        "ort_qdq_perchannel_u8s8_reducerange": dict(
            quant_format=qdq, per_channel=True, weight_type=s8, reduce_range=True
        ),
        "ort_qdq_perchannel_u8s8": dict(quant_format=qdq, per_channel=True, weight_type=s8),
        "ort_qdq_pertensor_u8s8": dict(quant_format=qdq, per_channel=False, weight_type=s8),
        "ort_qdq_perchannel_u8u8": dict(quant_format=qdq, per_channel=True, weight_type=u8),
        "ort_qoperator_perchannel_u8s8": dict(quant_format=qop, per_channel=True, weight_type=s8),
        "ort_qoperator_perchannel_u8u8": dict(quant_format=qop, per_channel=True, weight_type=u8),
        "ort_qdq_perchannel_u8s8_depthwise_fp32": dict(
            quant_format=qdq, per_channel=True, weight_type=s8, nodes_to_exclude=depthwise
        ),
    }
    models = {
        "fp32": (fp32_path.read_bytes(), None),
        "hwnas_int8": (ours_path.read_bytes(), runtime_options("onnx", True)),
    }
    for key, config in configs.items():
        out = tmp / f"{key}.onnx"
        quantize_static(str(pre), str(out), RandomInputs(), activation_type=u8, **config)
        models[key] = (out.read_bytes(), None)
    rounds: dict[str, list[float]] = {key: [] for key in models}
    settings = MeasureSettings(10, args.repeats)
    with open_device("local") as client:
        fingerprint = client.fingerprint()
        for _ in range(args.rounds):
            for key, (data, options) in models.items():
                rounds[key].append(measure_model(client, data, settings, options).stats.median_ms)
    fp32 = np.array(rounds["fp32"])
    ratios = {}
    for key, values in rounds.items():
        per_round = np.array(values) / fp32
        ratios[key] = {
            "median_ms": float(np.median(values)),
            "over_fp32": float(np.median(per_round)),
            "over_fp32_min": float(per_round.min()),
            "over_fp32_max": float(per_round.max()),
        }
        print(
            f"{key:42s} {np.median(values):.3f} ms  x{np.median(per_round):.3f} "
            f"[{per_round.min():.2f}, {per_round.max():.2f}]"
        )
    best = min((k for k in ratios if k != "fp32"), key=lambda k: ratios[k]["over_fp32"])
    figures = {
        "run": args.run,
        "cpu": fingerprint.get("cpu", {}),
        "cpu_int8_features": cpu_int8_features(),
        "runtimes": fingerprint.get("runtimes", {}),
        "depthwise_convs": len(depthwise),
        "settings": settings.to_dict(),
        "rounds": args.rounds,
        "ratios": ratios,
        "round_medians_ms": rounds,
        "best_int8": best,
        "target_ratio": 0.5,
    }
    path = write_result("quant_ort_variants", figures, command=" ".join(["python", *sys.argv]))
    print(f"best int8: {best} x{ratios[best]['over_fp32']:.3f}; written {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=("blocks", "run", "variants"))
    parser.add_argument("--run", help="run directory (part 'run')")
    parser.add_argument("--formats", nargs="+", default=["onnx", "tflite"])
    parser.add_argument("--name", default="precision_blocks")
    parser.add_argument("--test-images", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    os.chdir(ROOT)
    from hwnas.quant.qat import torch_threads

    with torch_threads(1):
        {"blocks": blocks, "run": run, "variants": variants}[args.part](args)


if __name__ == "__main__":
    main()
