"""Benchmark: how well a freshly built LUT predicts whole networks on the device, and its cost.

Builds the LUT of ``--space`` on ``--device`` from scratch with build-lut's defaults (every block
beside its null model, ``--build-archs`` random networks for the calibration), then times
``--archs`` other random networks on the same device and compares them with the calibrated LUT,
the LUT with only the global affine part of the calibration, and the plain block sum; and with
the calibrated LUT scaled by the drift since the build (calibration networks re-timed beside the
validation networks, :mod:`hwnas.lut.validation`). The first
``--repeat-archs`` of those networks are then timed once more: how well two measurements of the
same networks agree is the noise floor no predictor can beat on that machine at that time.

Figures: share of networks within +-10 % and +-5 % of measured, RMSPE, Kendall tau, Spearman;
the device minutes and wall minutes the build took; how linear latency is in middle channels
(R^2 per family). Targets from the issue: >= 99 % within 10 %, >= 90 % within 5 %, <= 15 min.

Run: ``PYTHONPATH=. python bench/lut_accuracy.py [--device local] [--archs 100]``; writes
``bench/results/lut_accuracy.json`` and two PNGs beside it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result
from hwnas.devices.connect import open_device
from hwnas.lut.build import BuildConfig, build_lut
from hwnas.lut.journal import journal_path
from hwnas.lut.linear import fits_from_lut, summarize
from hwnas.lut.metrics import accuracy
from hwnas.lut.plan import get_plan
from hwnas.lut.plots import plot_linear, plot_predicted_vs_measured
from hwnas.lut.schema import load_lut
from hwnas.lut.validation import ValidationResult, validate_lut

TARGETS = {"within_10pct": 0.99, "within_5pct": 0.90, "build_minutes": 15.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="local")
    parser.add_argument("--space", default="fbnet")
    parser.add_argument("--archs", type=int, default=100, help="validation networks")
    parser.add_argument("--build-archs", type=int, default=200, help="calibration networks")
    parser.add_argument(
        "--repeat-archs",
        type=int,
        default=50,
        help="validation networks timed a second time: the noise floor of the measurement",
    )
    parser.add_argument(
        "--lut",
        default=str(Path(tempfile.gettempdir()) / "hwnas-bench" / "lut_accuracy_lut.json"),
        help="where the built LUT goes",
    )
    parser.add_argument("--name", default="lut_accuracy", help="result file stem")
    parser.add_argument(
        "--reuse", action="store_true", help="validate the LUT at --lut instead of building one"
    )
    parser.add_argument("--quick", action="store_true", help="small plan (smoke test only)")
    args = parser.parse_args()

    out = Path(args.lut)
    if args.reuse:
        lut = load_lut(out)
        build_figures = {
            "device_minutes": lut.provenance.get("device_seconds", 0) / 60,
            "wall_minutes": None,
            "reused": str(out),
        }
    else:
        out.unlink(missing_ok=True)
        journal_path(out).unlink(missing_ok=True)
        built = build_lut(
            BuildConfig(
                device=args.device,
                space=args.space,
                out=out,
                n_archs=args.build_archs,
                quick=args.quick,
            )
        )
        lut = built.lut
        build_figures = {
            "device_minutes": built.device_seconds / 60,
            "wall_minutes": built.wall_seconds / 60,
        }
    plan = get_plan(args.space, lut.resolution, lut.num_classes, args.quick)
    with open_device(args.device) as client:
        result = validate_lut(lut, plan, client, args.archs)
        again = (
            validate_lut(lut, plan, client, args.repeat_archs, anchors=0)
            if args.repeat_archs
            else None
        )
    noise = None
    if again is not None:  # the same networks (same seed), timed again: measured vs measured
        assert again.archs == result.archs[: len(again.archs)]
        first = result.measured_ms[: len(again.archs)]
        noise = accuracy(np.asarray(again.measured_ms), np.asarray(first)).to_dict()
    calibration = lut.models.get("calibration", {})
    calibrated = result.figures["calibrated"]
    figures = {
        "device": args.device,
        "cpu": lut.device["fingerprint"].get("cpu_model"),
        "runtime": dict(lut.runtime),
        "space": args.space,
        "statistic": result.statistic,
        "validation_archs": len(result.archs),
        "validation": result.figures,
        "validation_bias": _bias(result),
        "drift_since_build": result.extra.get("drift"),
        "validation_device_minutes": result.device_seconds / 60,
        "noise_floor_remeasured_vs_measured": noise,
        "build": {
            **build_figures,
            "entries": len(lut.entries),
            "calibration_archs": calibration.get("n"),
            "calibration_lambda": calibration.get("lambda"),
            "calibration_loo_rmspe": calibration.get("loo_rmspe"),
        },
        "linear_in_mid": summarize(fits_from_lut(lut)),
        "targets": TARGETS,
        "met": {
            "within_10pct": calibrated["within_10pct"] >= TARGETS["within_10pct"],
            "within_5pct": calibrated["within_5pct"] >= TARGETS["within_5pct"],
            "build_minutes": (build_figures["wall_minutes"] or build_figures["device_minutes"])
            <= TARGETS["build_minutes"],
        },
    }
    path = write_result(args.name, figures)
    plot_predicted_vs_measured(
        result.measured_ms,
        result.predicted_ms,
        path.with_name(f"{args.name}_pred_vs_meas.png"),
        f"{args.device}/{args.space}: {len(result.archs)} networks",
    )
    plot_linear(
        fits_from_lut(lut),
        path.with_name(f"{args.name}_linear.png"),
        f"{args.device}: latency vs middle channels",
    )
    for name, f in result.figures.items():
        print(
            f"{name:10s} within 10 %: {f['within_10pct']:.1%}  within 5 %: "
            f"{f['within_5pct']:.1%}  RMSPE {f['rmspe']:.2%}  Kendall {f['kendall_tau']:.3f}"
        )
    if noise:
        print(
            f"noise floor (same networks timed twice): within 10 %: {noise['within_10pct']:.1%}  "
            f"within 5 %: {noise['within_5pct']:.1%}  RMSPE {noise['rmspe']:.2%}"
        )
    print(
        f"build: {build_figures['device_minutes']:.1f} device min, wall "
        f"{build_figures['wall_minutes']} min; linear R² median "
        f"{figures['linear_in_mid'].get('r2_median')}"
    )
    drift = result.extra.get("drift") or {}
    print(
        f"bias (median pred/meas - 1): {figures['validation_bias']['calibrated']:+.1%}; drift "
        f"since the build ({drift.get('anchors', 0)} calibration networks re-timed): "
        f"{drift.get('now_over_build', float('nan')):.3f}x"
    )
    print(f"wrote {path}")


def _bias(result: ValidationResult) -> dict:
    """Per predictor, the median of predicted / measured - 1 (a machine that drifted since the
    build shows up here as a common offset)."""
    y = np.asarray(result.measured_ms)
    return {k: float(np.median(np.asarray(p) / y - 1)) for k, p in result.predicted_ms.items()}


if __name__ == "__main__":
    main()
