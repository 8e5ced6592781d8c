"""``hwnas fit-latency`` and ``hwnas predict-latency``: end-to-end latency predictors.

* ``fit-latency --space S --measurements CSV --out P.json [--method hier|additive]``: fit a
  predictor on measured architectures (CSV ``arch,latency_ms``) and save it as JSON.
* ``predict-latency --predictor P --archs CSV``: predict each architecture's latency with a fitted
  predictor, a LUT file or a device name (``pi4``, ``pixel3``: the shipped LUTs); when the CSV
  has measured latencies, also report how well the prediction agrees.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from hwnas.cli._common import add_json_flag, emit
from hwnas.errors import UserError


def add_parsers(sub: argparse._SubParsersAction) -> None:
    fit = sub.add_parser("fit-latency", help="fit a latency predictor on measured architectures")
    fit.add_argument("--space", default="fbnet", help="search space (default fbnet)")
    fit.add_argument("--measurements", required=True, help="CSV with columns arch,latency_ms")
    fit.add_argument("--out", required=True, help="where to write the predictor (.json)")
    fit.add_argument(
        "--method",
        default="hier",
        choices=("hier", "additive"),
        help="hier: shared block features + per-slot deviations (default); "
        "additive: one ridge coefficient per (slot, op)",
    )
    fit.add_argument(
        "--prior",
        default=None,
        help="LUT file or device name whose latencies become a feature (hier only)",
    )
    fit.add_argument(
        "--seed",
        type=int,
        default=0,
        help="recorded in the predictor (both methods are deterministic)",
    )
    fit.add_argument("--resolution", type=int, default=None, help="input size (space default)")
    fit.add_argument("--num-classes", type=int, default=None, help="classes (space default)")
    add_json_flag(fit)
    fit.set_defaults(handler=_fit)

    pred = sub.add_parser("predict-latency", help="predict end-to-end latency of architectures")
    pred.add_argument(
        "--predictor",
        required=True,
        help="fitted predictor (.json), LUT file, or device name (pi4, pixel3)",
    )
    pred.add_argument("--archs", required=True, help="CSV with column arch (and latency_ms)")
    pred.add_argument("--space", default=None, help="space (default: the predictor's)")
    add_json_flag(pred)
    pred.set_defaults(handler=_predict)


def _fit(args: argparse.Namespace) -> int:
    from hwnas.lut.fit import fit_latency
    from hwnas.lut.loading import load_predictor
    from hwnas.lut.measurements import read_arch_csv
    from hwnas.lut.metrics import accuracy
    from hwnas.lut.spaces import get_space

    if args.prior and args.method != "hier":
        raise UserError("--prior works with --method hier only")
    space = get_space(args.space, args.resolution, args.num_classes)
    table = read_arch_csv(args.measurements, space, require_latency=True)
    prior = load_predictor(args.prior, space.name) if args.prior else None
    info = {
        "measurements": {"file": Path(args.measurements).name, "sha256": table.sha256},
        "seed": args.seed,
    }
    predictor = fit_latency(space, table.archs, table.latency_ms, args.method, prior, info=info)
    out = predictor.save(args.out)
    train = accuracy(predictor.predict_ms(table.archs), table.latency_ms)
    result = {
        "predictor": str(out),
        "space": space.name,
        "method": predictor.method,
        "n_train": len(table.archs),
        "loo_rmspe": predictor.info["loo_rmspe"],
        "train": _clean(train.to_dict()),
    }
    emit(result, args.json, _render_fit)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from hwnas.lut.loading import load_predictor
    from hwnas.lut.measurements import read_arch_csv
    from hwnas.lut.metrics import accuracy

    predictor = load_predictor(args.predictor, args.space)
    table = read_arch_csv(args.archs, predictor.space)
    predicted = predictor.predict_ms(table.archs)
    result = {
        "predictor": predictor.name,
        "source": args.predictor,
        "space": predictor.space.name,
        "n": len(table.archs),
        "latency_ms": [float(v) for v in predicted],
    }
    if table.latency_ms is not None:
        result["measured_ms"] = [float(v) for v in table.latency_ms]
        result["accuracy"] = _clean(accuracy(predicted, table.latency_ms).to_dict())
    if args.json:
        emit(result, True, str)
    else:
        fmt = predictor.space.format_arch
        print(_render_predict(result, [fmt(a) for a in table.archs]))
    return 0


def _clean(figures: dict) -> dict:
    """NaN (e.g. a rank correlation of one row) becomes null: strict JSON."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()}


def _render_fit(r: dict) -> str:
    t = r["train"]
    return (
        f"wrote {r['predictor']} ({r['method']}, {r['space']}, {r['n_train']} architectures)\n"
        f"  leave-one-out RMSPE {100 * r['loo_rmspe']:.2f} %; on the training rows: "
        f"{100 * t['within_10pct']:.1f} % within +-10 %, RMSPE {100 * t['rmspe']:.2f} %"
    )


def _render_predict(r: dict, archs: list[str]) -> str:
    measured = r.get("measured_ms")
    lines = ["arch,predicted_ms" + (",latency_ms" if measured else "")]
    for i, (arch, value) in enumerate(zip(archs, r["latency_ms"])):
        lines.append(f"{arch},{value:.6f}" + (f",{measured[i]:.6f}" if measured else ""))
    if "accuracy" in r:
        a = r["accuracy"]

        def pct(v: object) -> str:
            return "n/a" if v is None else f"{100 * v:.1f} %"  # type: ignore[operator]

        def num(v: object) -> str:
            return "n/a" if v is None else f"{v:.4f}"

        lines.append(
            f"# {r['predictor']} vs measured ({a['n']} architectures): within +-5 % "
            f"{pct(a['within_5pct'])}, within +-10 % {pct(a['within_10pct'])}, RMSPE "
            f"{pct(a['rmspe'])}, Kendall tau {num(a['kendall_tau'])}, Spearman {num(a['spearman'])}"
        )
    return "\n".join(lines)
