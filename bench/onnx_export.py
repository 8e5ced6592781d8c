"""Benchmark: ONNX export time of the FBNet block specs and of whole FBNet networks.

Measures, on this machine: build + export of the 108 distinct FBNet block specs (CIFAR-100
geometry, 22 slots x 9 ops), the same through ``spec_to_onnx`` with a cold and then a warm cache,
and build + export of whole random networks (stem + 22 blocks + head + GAP + FC). Also reports the
worst PyTorch/onnxruntime parity over the 108 blocks.

Run: ``PYTHONPATH=. python bench/onnx_export.py [--networks 5]``; writes
``bench/results/onnx_export.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnxruntime
import torch

from hwnas.blocks.export import check_onnx_parity, export_onnx, spec_to_onnx
from hwnas.blocks.torch_blocks import build_module, build_sequential
from hwnas.spaces.fbnet_geometry import (
    NUM_LAYERS,
    OPS,
    arch_specs,
    fixed_specs,
    layer_slots,
    op_spec,
)


def _machine() -> dict[str, object]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", type=int, default=5, help="random whole networks to export")
    args = parser.parse_args()

    specs = list(dict.fromkeys(op_spec(s, o) for s in layer_slots() for o in range(len(OPS))))
    per_spec_s, worst_parity = [], 0.0
    t0 = time.perf_counter()
    for spec in specs:
        t = time.perf_counter()
        module = build_module(spec)
        data = export_onnx(module, spec.in_shape)
        per_spec_s.append(time.perf_counter() - t)
        worst_parity = max(worst_parity, check_onnx_parity(module, data, spec.in_shape))
    total_blocks_s = sum(per_spec_s)
    loop_s = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as cache:
        os.environ["XDG_CACHE_HOME"] = cache
        t = time.perf_counter()
        for spec in specs:
            spec_to_onnx(spec)
        cold_s = time.perf_counter() - t
        t = time.perf_counter()
        for spec in specs:
            spec_to_onnx(spec)
        warm_s = time.perf_counter() - t

    rng = random.Random(0)
    stem, *head = fixed_specs()
    network_s = []
    for _ in range(args.networks):
        arch = tuple(rng.randrange(len(OPS)) for _ in range(NUM_LAYERS))
        net_specs = [stem, *arch_specs(arch), *head]
        t = time.perf_counter()
        export_onnx(build_sequential(net_specs), stem.in_shape)
        network_s.append(time.perf_counter() - t)

    figures = {
        "fbnet_distinct_block_specs": len(specs),
        "blocks_build_export_total_s": round(total_blocks_s, 3),
        "blocks_build_export_median_s": round(statistics.median(per_spec_s), 4),
        "blocks_build_export_max_s": round(max(per_spec_s), 4),
        "blocks_loop_with_parity_checks_s": round(loop_s, 3),
        "blocks_worst_parity_abs": worst_parity,
        "spec_to_onnx_cold_cache_s": round(cold_s, 3),
        "spec_to_onnx_warm_cache_s": round(warm_s, 4),
        "network_build_export_median_s": round(statistics.median(network_s), 3),
        "network_build_export_max_s": round(max(network_s), 3),
        "networks_exported": len(network_s),
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    result = {
        "name": "onnx_export",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "figures": figures,
    }
    out = Path(__file__).resolve().parent / "results" / "onnx_export.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
