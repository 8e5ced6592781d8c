"""``hwnas quantize --run DIR --device D --latency-ms X [--method haq]``: HAQ mixed precision.

Times every layer of the run's network at fp32 and int8 on the device, searches per-layer
bitwidths with HAQ's DDPG agent under the latency budget (each policy fine-tuned briefly on real
data), fine-tunes the chosen policy and writes the policy, the model, a report and plots into the
run directory. A budget below the cheapest achievable latency exits 2 and names that latency.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli._common import add_json_flag, emit, status_line


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quantize", help="HAQ mixed-precision quantization under a latency budget")
    p.add_argument("--run", required=True, help="run directory of a search")
    p.add_argument("--device", required=True, help="device to measure on (must have an agent)")
    p.add_argument("--latency-ms", type=float, required=True, help="latency budget (ms)")
    p.add_argument("--method", default="haq", choices=("haq",), help="quantization method")
    p.add_argument("--episodes", type=int, default=20, help="HAQ episodes (default 20)")
    p.add_argument(
        "--search-steps", type=int, default=30, help="fine-tune SGD steps per episode (default 30)"
    )
    p.add_argument(
        "--final-steps",
        type=int,
        default=300,
        help="fine-tune SGD steps of the chosen policy (default 300)",
    )
    p.add_argument(
        "--train-images",
        type=int,
        default=4096,
        help="train images for calibration and fine-tuning (default 4096)",
    )
    p.add_argument(
        "--val-images",
        type=int,
        default=1000,
        help="validation images that score a policy (default 1000)",
    )
    p.add_argument(
        "--simulate-bits",
        action="store_true",
        help="also offer 2-7 bit integer layers (accuracy simulation: they run and "
        "cost as int8 on the device)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for fine-tuning (default 1; more oversubscribes shared CPUs)",
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per model (default 10)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per model (default 30)")
    p.add_argument(
        "--torch-device",
        default="cpu",
        help="torch device for fine-tuning (default cpu; e.g. cuda)",
    )
    add_json_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from hwnas.runs.measure import MeasureSettings
    from hwnas.runs.quantize import QuantizeConfig, quantize_run

    config = QuantizeConfig(
        run_dir=Path(args.run),
        device=args.device,
        latency_ms=args.latency_ms,
        method=args.method,
        episodes=args.episodes,
        search_steps=args.search_steps,
        final_steps=args.final_steps,
        train_images=args.train_images,
        val_images=args.val_images,
        simulate_bits=args.simulate_bits,
        seed=args.seed,
        threads=args.threads,
        torch_device=args.torch_device,
        measure=MeasureSettings(warmup=args.warmup, repeats=args.repeats),
    )
    report = quantize_run(config, progress=status_line)
    status_line()
    emit(report, args.json, _render)
    return 0


def _render(r: dict) -> str:
    c = r["constraints"][0]
    p = r["policy"]
    lines = [
        f"HAQ on {r['device']} ({r['runtime'].get('name')} {r['runtime'].get('version')}): "
        f"{p['int8_layers']}/{p['layers']} layers int8 "
        f"(int8 weights {r['precisions']['int8_weight_bits']} bits)",
        f"  latency: measured {c['measured']:.3f} ms, predicted {c['predicted']:.3f} ms, "
        f"budget {c['limit']:g} ms -> {'met' if c['satisfied'] else 'MISSED'}",
        f"  accuracy: val {r['accuracy']['val']:.2f} %, test {r['accuracy']['test']:.2f} % "
        f"(float val {r['float_accuracy']['val']:.2f} %)",
        "  uniform networks: "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in r["latency"]["network_ms"].items()),
        f"  files: {r['files']['policy']}, {r['files']['report']}, {r['files']['bits_plot']}",
    ]
    return "\n".join(lines)
