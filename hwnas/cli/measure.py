"""``hwnas measure MODEL --device NAME``: time one model file on a device."""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli._common import add_json_flag, emit
from hwnas.errors import UserError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="time an ONNX or TFLite model on a device")
    p.add_argument("model", help="model file (.onnx or .tflite)")
    p.add_argument("--device", default="local", help="device name (default: local)")
    p.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    p.add_argument("--repeats", type=int, default=50, help="timed runs (default 50)")
    p.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    p.add_argument("--core", type=int, default=None, help="core to pin to (default: the device's)")
    p.add_argument("--runtime", choices=("onnxruntime", "tflite"), default=None)
    p.add_argument("--samples", action="store_true", help="with --json: include the raw samples")
    add_json_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from hwnas.runs.devices import measure_file

    path = Path(args.model)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist")
    if args.warmup < 0 or args.repeats < 1 or args.threads < 1:
        raise UserError("--warmup must be >= 0, --repeats and --threads >= 1")
    result = measure_file(
        path,
        args.device,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        core=args.core,
        runtime=args.runtime,
        samples=args.samples,
    )
    emit(result, args.json, _render)
    return 0


def _render(r: dict) -> str:
    fp = r["fingerprint"]
    s = r["settings"]
    return (
        f"{r['model']} on {r['device']}: median {r['median_ms']:.4f} ms "
        f"(p10 {r['p10_ms']:.4f}, p90 {r['p90_ms']:.4f}, n {r['n']})\n"
        f"  {r['runtime']['name']} {r['runtime']['version']}, {s['threads']} thread(s), core {s['core']}, "
        f"warm-up {s['warmup']}{' (TRUNCATED by time budget)' if r['truncated'] else ''}\n"
        f"  {fp.get('cpu_model')} ({fp.get('machine')}), {fp.get('os_release', fp.get('os'))}, "
        f"governor {fp.get('governor', 'n/a')}, temperature {fp.get('temperature_c', 'n/a')}"
    )
