"""Benchmark: end-to-end latency predictors fitted on 100 measured architectures.

On HW-NAS-Bench's non-additive devices (``samsung_a50``: a phone, whole-network latencies rounded
to 1 ms; ``gold_6240``: a Xeon server CPU), each of ``--seeds`` random draws takes 100
architectures for fitting and the other 4,900 for testing. Figures per method (mean, std, min,
max over draws): share within +-10 % and +-5 %, RMSPE, Spearman and Kendall tau on the held-out
rows, and fit time. Methods: ``hier`` (this project's default, ``hwnas.lut.fit``), ``additive``
(per (layer, op) one-hot least squares with a leave-one-out ridge), and ``hier`` with the Pixel 3
reference LUT as a prior feature. Also: a learning-curve point at 1,000 training rows, and how
exactly the shipped reference LUTs reproduce their source CSVs.

Run: ``PYTHONPATH=. python bench/fit_latency.py [--data DIR] [--seeds 10]``; writes
``bench/results/fit_latency.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result
from hwnas.lut.fit import fit_latency
from hwnas.lut.loading import load_predictor
from hwnas.lut.measurements import read_arch_csv
from hwnas.lut.metrics import accuracy
from hwnas.lut.spaces import get_space

DEVICES = ("samsung_a50", "gold_6240")
METRICS = ("within_10pct", "within_5pct", "rmspe", "spearman", "kendall_tau", "fit_s")


def _run(space, archs, y, n_train: int, seed: int, method: str, prior) -> dict:
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[:n_train], order[n_train:]
    start = time.perf_counter()
    predictor = fit_latency(space, archs[train], y[train], method, prior)
    seconds = time.perf_counter() - start
    figures = accuracy(predictor.predict_ms(archs[test]), y[test]).to_dict()
    return {**{k: figures[k] for k in METRICS[:-1]}, "fit_s": seconds}


def _summary(runs: list[dict]) -> dict:
    out = {}
    for key in METRICS:
        values = np.array([r[key] for r in runs])
        out[key] = {
            "mean": round(float(values.mean()), 4),
            "std": round(float(values.std()), 4),
            "min": round(float(values.min()), 4),
            "max": round(float(values.max()), 4),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "data" / "hwnas-bench-fbnet",
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--curve-seeds", type=int, default=3, help="draws at 1,000 rows")
    args = parser.parse_args()
    space = get_space("fbnet")
    prior = load_predictor("pixel3")
    methods = {
        "hier": ("hier", None),
        "additive": ("additive", None),
        "hier+pixel3-prior": ("hier", prior),
    }
    figures: dict = {"n_train": 100, "seeds": args.seeds, "devices": {}}
    for device in DEVICES:
        table = read_arch_csv(args.data / f"{device}.csv", space, require_latency=True)
        archs, y = np.asarray(table.archs), table.latency_ms
        result: dict = {"n_test": len(y) - 100, "sha256": table.sha256}
        for label, (method, pri) in methods.items():
            runs = [_run(space, archs, y, 100, s, method, pri) for s in range(args.seeds)]
            result[label] = _summary(runs)
        curve = {}
        for method in ("hier", "additive"):
            runs = [_run(space, archs, y, 1000, s, method, None) for s in range(args.curve_seeds)]
            curve[method] = _summary(runs)
        result["n_train_1000"] = curve
        figures["devices"][device] = result
        for label in (*methods, "n_train_1000"):
            block = result[label] if label != "n_train_1000" else curve["hier"]
            print(
                f"{device:12s} {label:18s} within10 {block['within_10pct']['mean']:.3f}"
                f" +- {block['within_10pct']['std']:.3f}  spearman {block['spearman']['mean']:.4f}"
                f" +- {block['spearman']['std']:.4f}  rmspe {block['rmspe']['mean']:.4f}"
            )
    figures["reference_luts_max_abs_error_ms"] = _reference_check(space, args.data)
    print("reference LUTs reproduce their CSVs to", figures["reference_luts_max_abs_error_ms"])
    path = write_result("fit_latency", figures, "PYTHONPATH=. python bench/fit_latency.py")
    print("wrote", path)


def _reference_check(space, data: Path) -> dict:
    out = {}
    for device, stem in (("pi4", "raspi4"), ("pixel3", "pixel3")):
        table = read_arch_csv(data / f"{stem}.csv", space, require_latency=True)
        predicted = load_predictor(device).predict_ms(table.archs)
        out[device] = float(np.max(np.abs(predicted - table.latency_ms)))
    return out


if __name__ == "__main__":
    main()
