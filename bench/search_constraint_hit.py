"""Constraint hit: does the searched architecture land in [0.9 T, T] for targets across the range?

For each latency target T (fractions of the feasible range of the space on the device's LUT),
run the search stage of ``hwnas search`` (Greedy-ADMM by default) on Fashion-MNIST and price
the method's own derived architecture (before the shared repair and fill) with the same LUT
(reference LUT for pi4/pixel3). With ``--verify local``
(needs a LUT built for ``local`` with ``hwnas build-lut --device local``) the derived network is
also exported and measured on this machine's pinned core, next to its prediction.

    python bench/search_constraint_hit.py [--space fbnet] [--device pi4] [--steps 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result

FRACTIONS = (0.05, 0.15, 0.3, 0.5, 0.75)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="fbnet")
    parser.add_argument("--method", default="greedy-admm")
    parser.add_argument("--device", default="pi4")
    parser.add_argument("--steps", type=int, default=100, help="search steps per target")
    parser.add_argument("--fractions", type=float, nargs="+", default=FRACTIONS)
    parser.add_argument("--verify", help="also export and measure on this device (e.g. local)")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()

    import torch

    from hwnas.costs.latency import load_latency_predictor
    from hwnas.costs.models import make_cost_models
    from hwnas.search.api import Hooks, get_method, method_config
    from hwnas.search.config import resolve_config
    from hwnas.search.pipeline import build_problem
    from hwnas.spaces.base import SpaceConfig, create_space

    torch.set_num_threads(1)
    base = resolve_config(
        None, {"device": args.device, "space": args.space, "method": args.method, "latency_ms": 1e9}
    )
    base = dataclasses.replace(
        base,
        search=dataclasses.replace(base.search, steps=args.steps, warmup_steps=args.steps // 5),
    )
    space = create_space(args.space, SpaceConfig(32, 10, base.search_width))
    predictor = load_latency_predictor(args.device, space.lut_space)
    low, high = make_cost_models(space, predictor)["latency_ms"].bounds()
    rows = []
    for fraction in args.fractions:
        target = low + fraction * (high - low)
        config = dataclasses.replace(base, latency_ms=target)
        problem, _, _ = build_problem(config)
        spec = get_method(args.method)
        t0 = time.perf_counter()
        result = spec.run(problem, method_config(spec, config.method_settings), Hooks())
        seconds = time.perf_counter() - t0
        latency = problem.costs["latency_ms"].discrete(result.arch)
        row = {
            "target_ms": target,
            "fraction_of_range": fraction,
            "predicted_ms": latency,
            "ratio": latency / target,
            "in_band": 0.9 * target <= latency <= target,
            "arch": problem.space.format_arch(result.arch),
            "search_seconds": seconds,
        }
        if args.verify:
            row.update(_measure(problem, result.arch, args.verify))
        rows.append(row)
        print(
            f"T {target:7.3f} ms: derived {latency:7.3f} ms (ratio {latency / target:.3f})"
            + (f", measured {row['measured_ms']:.3f} ms on {args.verify}" if args.verify else ""),
            flush=True,
        )
    figures = {
        "space": args.space,
        "method": args.method,
        "device": args.device,
        "search_steps": args.steps,
        "range_ms": [low, high],
        "targets": rows,
        "in_band": sum(r["in_band"] for r in rows),
        "of": len(rows),
    }
    name = args.name or f"search_constraint_hit_{args.space}_{args.device}"
    print(f"{figures['in_band']}/{len(rows)} targets in [0.9 T, T]")
    write_result(name, figures, " ".join(["python", *sys.argv]))


def _measure(problem, arch, device_name: str) -> dict:
    from hwnas.blocks.export import export_onnx
    from hwnas.devices.connect import open_device

    net = problem.space.build_net(arch).eval()
    data = export_onnx(net, (1, 3, 32, 32))
    with open_device(device_name) as client:
        m = client.measure(data, warmup=10, repeats=50)
    return {
        "measured_ms": m.stats.median_ms,
        "measured_p10_ms": m.stats.p10_ms,
        "measured_p90_ms": m.stats.p90_ms,
    }


if __name__ == "__main__":
    main()
