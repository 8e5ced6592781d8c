"""How well does the dso cost model (sum of surviving edges' LUT entries + fixed parts) predict
whole dso networks measured on the same device?

Draws ``--archs`` random architectures of the ``dso`` space (plus the empty and the full one),
builds each full-width network at 32 x 32, exports it to ONNX and times it on ``--device`` with the
LUT build's timing procedure (rounds spread over passes, robust statistics), then compares the
measured latency with the LUT sum the search uses. The dso LUT has no end-to-end calibration (its
blocks are DAGs), so this is the plain sum's error.

Run (after ``hwnas build-lut --device local --space dso``):
``PYTHONPATH=. python bench/dso_lut_sum.py --device local --archs 24``; writes
``bench/results/dso_lut_sum.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="local")
    parser.add_argument("--lut", default=None, help="LUT file (default: the device's dso LUT)")
    parser.add_argument("--archs", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--name", default="dso_lut_sum")
    args = parser.parse_args()

    import torch
    from scipy.stats import kendalltau

    from hwnas.blocks.export import export_onnx
    from hwnas.costs.latency import load_latency_source
    from hwnas.costs.models import make_cost_models
    from hwnas.devices.connect import open_device
    from hwnas.devices.registry import get_device
    from hwnas.lut.build import BLOCK_MIN_TIME_MS
    from hwnas.lut.timing import TimingSettings, robust_stats, time_models
    from hwnas.spaces.base import SpaceConfig, create_space

    torch.set_num_threads(1)
    space = create_space("dso", SpaceConfig(32, 10, 1.0))
    cost = make_cost_models(space, load_latency_source(args.lut or args.device, space))
    latency = cost["latency_ms"]
    rng = np.random.default_rng(args.seed)
    archs = [space.arch_from_vector(np.zeros((3, 18))), space.arch_from_vector(np.ones((3, 18)))]
    archs += [space.sample_arch(rng) for _ in range(args.archs)]
    models = []
    for arch in archs:
        net = space.build_net(arch, seed=args.seed).eval()
        models.append(export_onnx(net, (1, 3, 32, 32)))
    timing = TimingSettings(repeats=15, min_time_ms=BLOCK_MIN_TIME_MS)
    device = get_device(args.device)
    rounds: list[list[list[float]]] = [[] for _ in models]
    with open_device(device) as client:
        for _ in range(args.rounds):  # passes over all networks, as build-lut times them
            result = time_models(client, models, timing)
            for kept, samples in zip(rounds, result.samples):
                kept.append(samples)
    stats = [robust_stats(r) for r in rounds]
    predicted = np.array([latency.discrete(a) for a in archs])
    rows, figures = [], {}
    for statistic in ("min_ms", "median_ms"):
        measured = np.array([s[statistic] for s in stats])
        ratio = measured / predicted
        error = np.abs(ratio - 1)
        slope, offset = np.polyfit(predicted, measured, 1)
        figures[statistic] = {
            "ratio_median": float(np.median(ratio)),
            "ratio_p10": float(np.percentile(ratio, 10)),
            "ratio_p90": float(np.percentile(ratio, 90)),
            "within_10pct": float(np.mean(error <= 0.10)),
            "within_20pct": float(np.mean(error <= 0.20)),
            "kendall_tau": float(kendalltau(predicted, measured).statistic),
            "affine_fit": {"slope": float(slope), "offset_ms": float(offset)},
        }
    for arch, p, s in zip(archs, predicted, stats):
        rows.append(
            {
                "arch": space.format_arch(arch),
                "edges": sum(map(len, arch)),
                "predicted_ms": float(p),
                "min_ms": s["min_ms"],
                "median_ms": s["median_ms"],
            }
        )
    figures.update(networks=len(archs), lut=latency.source, rows=rows)
    command = " ".join(["python", *sys.argv])
    path = write_result(args.name, figures, command)
    for statistic in ("min_ms", "median_ms"):
        f = figures[statistic]
        print(
            f"{statistic}: measured / LUT sum median {f['ratio_median']:.3f} "
            f"(p10 {f['ratio_p10']:.3f}, p90 {f['ratio_p90']:.3f}), within 10 % "
            f"{f['within_10pct']:.2f}, within 20 % {f['within_20pct']:.2f}, "
            f"Kendall tau {f['kendall_tau']:.3f}, measured = {f['affine_fit']['slope']:.3f} x "
            f"sum + {f['affine_fit']['offset_ms']:.4f} ms"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
