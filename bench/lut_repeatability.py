"""Benchmark: do two LUT builds on the same device agree?

Builds the LUT of ``--space`` on ``--device`` twice from scratch (or once, next to an existing
``--first`` LUT built with the same settings) and compares entry by entry: relative difference
|a - b| / mean(a, b) of the overhead-removed medians (the LUT entries), of the standalone medians
and of the fastest samples; and, for 200 random networks, of the calibrated predictions.
Target from the issue: median over entries within 3 %.

Run: ``PYTHONPATH=. python bench/lut_repeatability.py [--device local] [--first LUT]``; writes
``bench/results/lut_repeatability.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result
from hwnas.lut.build import BuildConfig, build_lut
from hwnas.lut.calibration import Pricer, predict_ms
from hwnas.lut.journal import journal_path
from hwnas.lut.plan import get_plan
from hwnas.lut.schema import LUT, load_lut

TARGET = 0.03
SCRATCH = Path(tempfile.gettempdir()) / "hwnas-bench"


def _fresh(device: str, space: str, out: Path, archs: int, quick: bool) -> tuple[LUT, float]:
    out.unlink(missing_ok=True)
    journal_path(out).unlink(missing_ok=True)
    result = build_lut(BuildConfig(device=device, space=space, out=out, n_archs=archs, quick=quick))
    return result.lut, result.wall_seconds / 60


def _differences(a: LUT, b: LUT, field: str) -> dict:
    values = []
    for entry in a.entries:
        other = b.get(entry.key)
        if other is None:
            continue
        x = entry.median_ms if field == "median_ms" else float(entry.extra[field])
        y = other.median_ms if field == "median_ms" else float(other.extra[field])
        if x + y > 0:
            values.append(abs(x - y) / ((x + y) / 2))
    rel = np.asarray(values)
    return {
        "median": float(np.median(rel)),
        "p90": float(np.percentile(rel, 90)),
        "share_within_3pct": float(np.mean(rel <= 0.03)),
        "n": int(rel.size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="local")
    parser.add_argument("--space", default="fbnet")
    parser.add_argument("--archs", type=int, default=200, help="calibration networks per build")
    parser.add_argument("--first", default=None, help="an existing LUT to compare with")
    parser.add_argument("--quick", action="store_true", help="small plan (smoke test only)")
    parser.add_argument("--name", default="lut_repeatability", help="result file stem")
    args = parser.parse_args()

    minutes = []
    if args.first:
        first = load_lut(args.first)
    else:
        first, wall = _fresh(
            args.device, args.space, SCRATCH / "lut_repeat_a.json", args.archs, args.quick
        )
        minutes.append(wall)
    second, wall = _fresh(
        args.device, args.space, SCRATCH / "lut_repeat_b.json", args.archs, args.quick
    )
    minutes.append(wall)
    plan = get_plan(args.space, first.resolution, first.num_classes, args.quick)
    networks = [plan.network(a) for a in plan.sample_archs(200, seed=4242)]
    predictions = []
    for lut in (first, second):
        pricer, calibration = Pricer.of(lut), lut.models.get("calibration")
        predictions.append(np.array([predict_ms(pricer, calibration, s) for s in networks]))
    rel = np.abs(predictions[0] - predictions[1]) / ((predictions[0] + predictions[1]) / 2)
    entries = _differences(first, second, "median_ms")
    figures = {
        "device": args.device,
        "cpu": second.device["fingerprint"].get("cpu_model"),
        "space": args.space,
        "first": args.first or "built by this run",
        "build_wall_minutes": minutes,
        "entries_overhead_removed": entries,
        "entries_standalone_median": _differences(first, second, "standalone_median_ms"),
        "entries_min": _differences(first, second, "min_ms"),
        "calibrated_network_predictions": {
            "median": float(np.median(rel)),
            "p90": float(np.percentile(rel, 90)),
            "max": float(rel.max()),
            "n": int(rel.size),
        },
        "target_median": TARGET,
        "met": entries["median"] <= TARGET,
    }
    path = write_result(args.name, figures)
    for key in (
        "entries_overhead_removed",
        "entries_standalone_median",
        "entries_min",
        "calibrated_network_predictions",
    ):
        f = figures[key]
        print(f"{key:32s} median |diff| {f['median']:.2%}  p90 {f['p90']:.2%}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
