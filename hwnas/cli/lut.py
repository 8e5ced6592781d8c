"""``hwnas build-lut`` and ``hwnas lut show|plot|validate``: per-device latency lookup tables.

* ``build-lut --device D [--space S] [--out F] [--resume] [--budget-minutes M]``: measure the
  space's blocks and random whole networks on D, write the LUT (``hwnas.lut.build``).
* ``lut show [LUT] [--device D --space S]``: what a LUT holds (device, runtime, settings,
  calibration, how linear latency is in middle channels).
* ``lut plot [LUT] --out DIR``: PNGs of latency vs middle channels with the fitted lines, and of
  the calibration networks' fitted vs measured latency.
* ``lut validate [LUT] --device D [--space S] [--archs N]``: time N random networks on D and print
  predicted-vs-measured figures (share within +-5/10 %, RMSPE, Kendall tau).

A LUT argument is a file or a device name (the user's LUT for it, else the shipped reference).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hwnas.cli._common import add_json_flag, emit
from hwnas.errors import UserError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    b = sub.add_parser("build-lut", help="measure a latency LUT on a device")
    b.add_argument("--device", required=True, help="device to measure on (e.g. local)")
    b.add_argument("--space", default="fbnet", help="fbnet (default), ib-channel, darts or dso")
    b.add_argument("--resolution", type=int, default=None, help="input size (space default)")
    b.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "int8", "fp16"),
        help="precision of every timed model (default fp32; int8: QDQ ONNX / integer TFLite)",
    )
    b.add_argument(
        "--format",
        dest="fmt",
        default="onnx",
        choices=("onnx", "tflite"),
        help="model format, i.e. the runtime on the device (default onnx)",
    )
    b.add_argument("--num-classes", type=int, default=None, help="classes (space default)")
    b.add_argument("--out", default=None, help="LUT file (default: <user LUT dir>/D_S.json)")
    b.add_argument("--resume", action="store_true", help="continue an unfinished build")
    b.add_argument(
        "--name",
        default=None,
        help="device name to file the LUT under (default: --device); --name pi4 makes "
        "'--device pi4' use your own Pi's LUT instead of the shipped reference",
    )
    b.add_argument(
        "--budget-minutes",
        type=float,
        default=20.0,
        help="device time this run may spend (default 20)",
    )
    b.add_argument(
        "--archs",
        type=int,
        default=200,
        help="whole networks timed for the calibration (default 200, 0: none)",
    )
    b.add_argument(
        "--rounds", type=int, default=3, help="rounds per model, a pass over all models apart (3)"
    )
    b.add_argument("--repeats", type=int, default=20, help="timed runs per round for blocks (20)")
    b.add_argument(
        "--min-time-ms",
        type=float,
        default=None,
        help="fast models get more timed runs until a round takes this long (default 25, 0: off)",
    )
    b.add_argument("--seed", type=int, default=0, help="seed of the calibration networks (0)")
    b.add_argument(
        "--statistic",
        choices=("min", "median"),
        default="min",
        help="network figure the calibration predicts (default min: robust on shared machines)",
    )
    b.add_argument(
        "--quick", action="store_true", help="small plan (a few ops per position) for smoke tests"
    )
    add_json_flag(b)
    b.set_defaults(handler=_build)

    lut = sub.add_parser("lut", help="inspect, plot or validate a LUT")
    verbs = lut.add_subparsers(dest="lut_command", metavar="VERB", required=True)
    show = verbs.add_parser("show", help="summarise a LUT")
    _lut_ref(show)
    add_json_flag(show)
    show.set_defaults(handler=_show)
    plot = verbs.add_parser("plot", help="PNG plots of a LUT")
    _lut_ref(plot)
    plot.add_argument("--out", default=".", help="folder for the PNG files (default .)")
    add_json_flag(plot)
    plot.set_defaults(handler=_plot)
    val = verbs.add_parser("validate", help="compare predictions with measured networks")
    _lut_ref(val)
    val.add_argument("--archs", type=int, default=100, help="random networks to time (100)")
    val.add_argument("--seed", type=int, default=None, help="seed of the networks")
    val.add_argument("--plot", default=None, help="write predicted vs measured to this PNG")
    val.add_argument("--save", default=None, help="write every row to this JSON file")
    add_json_flag(val)
    val.set_defaults(handler=_validate)


def _lut_ref(p: argparse.ArgumentParser) -> None:
    p.add_argument("lut", nargs="?", default=None, help="LUT file or device name")
    p.add_argument("--device", default=None, help="device (its LUT, and where validate measures)")
    p.add_argument("--space", default=None, help="space of the LUT (default fbnet)")


def _resolve(args: argparse.Namespace) -> Path:
    from hwnas.lut.resolve import lut_argument

    ref = args.lut or args.device
    if not ref:
        raise UserError("name a LUT file or pass --device")
    return lut_argument(ref, args.space or ("fbnet" if not args.lut else None))


# -- build-lut -----------------------------------------------------------------------------------
def _build(args: argparse.Namespace) -> int:
    from hwnas.lut.build import BLOCK_MIN_TIME_MS, BuildConfig
    from hwnas.lut.timing import TimingSettings
    from hwnas.runs.lut import build_lut_on_device

    min_time = BLOCK_MIN_TIME_MS if args.min_time_ms is None else args.min_time_ms
    if args.rounds < 1 or args.repeats < 1 or args.archs < 0 or min_time < 0:
        raise UserError("--rounds and --repeats must be >= 1, --archs and --min-time-ms >= 0")
    config = BuildConfig(
        device=args.device,
        space=args.space,
        resolution=args.resolution,
        num_classes=args.num_classes,
        out=Path(args.out) if args.out else None,
        resume=args.resume,
        quick=args.quick,
        lut_name=args.name,
        precision=args.precision,
        fmt=args.fmt,
        n_archs=args.archs,
        seed=args.seed,
        budget_minutes=args.budget_minutes,
        statistic=args.statistic,
        block_timing=TimingSettings(repeats=args.repeats, min_time_ms=min_time, rounds=args.rounds),
        arch_timing=TimingSettings(
            repeats=max(1, (3 * args.repeats) // 4), min_time_ms=min_time, rounds=args.rounds
        ),
    )
    result = build_lut_on_device(config)
    summary = {
        "path": str(result.path),
        "complete": result.complete,
        "jobs": {
            "total": result.total_jobs,
            "rounds_total": result.rounds_total,
            "kept_before": result.kept_jobs,
            "measured": result.measured_jobs,
        },
        "device_minutes": result.device_seconds / 60,
        "device_minutes_total": result.device_seconds_total / 60,
        "wall_minutes": result.wall_seconds / 60,
        "journal": str(result.journal) if result.journal else None,
        **_lut_summary(result.lut),
    }
    emit(summary, args.json, _render_build)
    return 0


def _render_build(r: dict) -> str:
    state = "complete" if r["complete"] else f"INCOMPLETE (resume with --resume; {r['journal']})"
    lines = [
        f"wrote {r['path']}: {r['entries']} entries, {state}",
        f"  measured {r['jobs']['measured']} models this run ({r['jobs']['kept_before']} kept "
        f"from before), device time {r['device_minutes']:.1f} min, wall {r['wall_minutes']:.1f} min",
    ]
    return "\n".join(lines + _render_models(r))


# -- lut show / plot ----------------------------------------------------------------------------
def _lut_summary(lut: Any) -> dict:
    from hwnas.lut.linear import fits_from_lut, summarize

    calibration = lut.models.get("calibration") or {}
    return {
        "device": lut.device_name,
        "cpu": lut.device.get("fingerprint", {}).get("cpu_model")
        or lut.device.get("fingerprint", {}).get("published_name"),
        "runtime": dict(lut.runtime),
        "space": lut.space,
        "entries": len(lut.entries),
        "statistic": lut.settings.get("statistic"),
        "threads": lut.settings.get("threads"),
        "calibration": {
            k: calibration.get(k)
            for k in ("statistic", "scale", "offset_ms", "n", "in_sample")
            if k in calibration
        },
        "linear": summarize(fits_from_lut(lut)),
        "provenance": {
            k: lut.provenance.get(k)
            for k in ("complete", "device_seconds", "written")
            if k in lut.provenance
        },
    }


def _render_models(r: dict) -> list[str]:
    lines = []
    cal = r.get("calibration") or {}
    if cal.get("n"):
        fit = cal.get("in_sample", {})
        lines.append(
            f"  calibration on {cal['n']} networks ({cal.get('statistic')}): scale "
            f"{cal['scale']:.3f}, offset {cal['offset_ms']:+.4f} ms; in-sample within 5 %: "
            f"{fit.get('within_5pct', float('nan')):.0%}, within 10 %: "
            f"{fit.get('within_10pct', float('nan')):.0%}"
        )
    lin = r.get("linear") or {}
    if lin.get("families_with_r2"):
        lines.append(
            f"  latency vs middle channels: {lin['families']} families, R² median "
            f"{lin['r2_median']:.4f} (min {lin['r2_min']:.4f}); R² >= 0.99 for "
            f"{lin['share_r2_ge_0_99']:.0%}"
        )
    return lines


def _show(args: argparse.Namespace) -> int:
    from hwnas.lut.schema import load_lut

    path = _resolve(args)
    summary = {"path": str(path), **_lut_summary(load_lut(path))}
    emit(summary, args.json, _render_show)
    return 0


def _render_show(r: dict) -> str:
    runtime = r["runtime"]
    head = [
        f"{r['path']}",
        f"  device {r['device']} ({r['cpu']}), {runtime.get('name')} {runtime.get('version')}, "
        f"{r['threads']} thread(s); space {r['space']}, {r['entries']} entries",
    ]
    return "\n".join(head + _render_models(r))


def _plot(args: argparse.Namespace) -> int:
    from hwnas.lut.linear import fits_from_lut
    from hwnas.lut.plots import plot_linear, plot_predicted_vs_measured
    from hwnas.lut.schema import load_lut

    path = _resolve(args)
    lut = load_lut(path)
    out = Path(args.out)
    stem = path.stem
    written = [
        str(
            plot_linear(
                fits_from_lut(lut),
                out / f"{stem}_linear.png",
                f"{lut.device_name}: latency vs middle channels",
            )
        )
    ]
    data = (lut.models.get("calibration") or {}).get("data") or []
    if data:
        measured = [row["latency_ms"] for row in data]
        predicted = {
            "calibrated (in-sample)": [row["fitted_ms"] for row in data],
            "plain LUT sum": [row["lut_sum_ms"] for row in data],
        }
        written.append(
            str(
                plot_predicted_vs_measured(
                    measured,
                    predicted,
                    out / f"{stem}_calibration.png",
                    f"{lut.device_name}: calibration networks",
                )
            )
        )
    emit({"written": written}, args.json, lambda r: "\n".join(f"wrote {p}" for p in r["written"]))
    return 0


# -- lut validate ----------------------------------------------------------------------------------
def _validate(args: argparse.Namespace) -> int:
    from hwnas.lut.plan import get_plan
    from hwnas.lut.schema import load_lut
    from hwnas.runs.lut import validate_on_device

    path = _resolve(args)
    lut = load_lut(path)
    measured_on = str(lut.device.get("measured_on") or lut.device_name)
    # --device names the LUT when no LUT file is given; measure where the LUT was measured
    device = measured_on if args.lut is None else (args.device or measured_on)
    quick = bool((lut.provenance.get("plan") or {}).get("quick", False))
    plan = get_plan(args.space or lut.space or "fbnet", lut.resolution, lut.num_classes, quick)
    result = validate_on_device(lut, plan, device, args.archs, args.seed)
    document = result.to_dict()
    if args.save:
        Path(args.save).write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    if args.plot:
        from hwnas.lut.plots import plot_predicted_vs_measured

        plot_predicted_vs_measured(
            result.measured_ms,
            result.predicted_ms,
            Path(args.plot),
            f"{lut.device_name}/{plan.space}: {len(result.archs)} networks",
        )
    summary = {k: v for k, v in document.items() if k != "rows"}
    summary["lut"] = str(path)
    emit(summary, args.json, _render_validate)
    return 0


def _render_validate(r: dict) -> str:
    lines = [
        f"{r['lut']} on {r['device']}: {r['n']} random {r['space']} networks "
        f"({r['statistic']} latency), device time {r['device_seconds'] / 60:.1f} min"
    ]
    for name, f in r["figures"].items():
        lines.append(
            f"  {name:26s} within 5 %: {f['within_5pct']:6.1%}  within 10 %: "
            f"{f['within_10pct']:6.1%}  RMSPE {f['rmspe']:6.2%}  Kendall tau {f['kendall_tau']:.3f}"
        )
    drift = r.get("drift")
    if drift:
        lines.append(
            f"  drift: {drift['anchors']} calibration networks now take "
            f"{drift['now_over_build']:.3f}x their build-time latency"
            + (
                " (the device's speed moved since the build; rebuild the LUT if it persists)"
                if abs(drift["now_over_build"] - 1) > 0.03
                else ""
            )
        )
    return "\n".join(lines)
