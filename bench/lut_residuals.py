"""Is what the LUT calibration leaves unexplained structure or noise? (FBNet LUTs built on a device)

For each LUT, the calibration networks' relative residuals ``measured / fitted - 1`` are
regressed (ridge, 10-fold cross-validation, alpha chosen inside each fold) on features of the
architecture that an additive LUT cannot express:

* ``op_counts``: how many layers use each of the 9 ops;
* ``position_op``: one-hot (layer, op), 22 x 9;
* ``skip_pairs``: for every boundary between layers, which of (op, skip) x (op, skip) it is.

If a feature set explained part of the residual, its cross-validated prediction would shrink the
residual RMS; if the residual is measurement noise (the machine's speed moving while the
networks were timed), the prediction only adds variance. Figures per LUT and feature set: RMS of
the residual before and after, share within 5 % before and after.

Run: ``PYTHONPATH=. python bench/lut_residuals.py --luts A.json B.json ...`` (LUTs built with
``hwnas build-lut --space fbnet``, e.g. by ``bench/lut_accuracy.py``); writes
``bench/results/lut_residuals.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result
from hwnas.lut.plan import get_plan

LAYERS, OPS, SKIP = 22, 9, 8  # FBNet: op 8 is the skip


def features(archs: list[tuple[int, ...]]) -> dict[str, np.ndarray]:
    n = len(archs)
    counts = np.zeros((n, OPS))
    position = np.zeros((n, LAYERS * OPS))
    pairs = np.zeros((n, (LAYERS - 1) * 4))
    for i, arch in enumerate(archs):
        for layer, op in enumerate(arch):
            counts[i, op] += 1
            position[i, layer * OPS + op] = 1
        for layer in range(LAYERS - 1):
            kind = 2 * (arch[layer] == SKIP) + (arch[layer + 1] == SKIP)
            pairs[i, layer * 4 + kind] = 1
    return {"op_counts": counts, "position_op": position, "skip_pairs": pairs}


def main() -> None:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold, cross_val_predict

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--luts", nargs="+", required=True)
    parser.add_argument("--name", default="lut_residuals")
    args = parser.parse_args()
    plan = get_plan("fbnet")
    out = []
    for path in args.luts:
        document = json.loads(Path(path).read_text())
        rows = document["models"]["calibration"]["data"]
        measured = np.array([r["latency_ms"] for r in rows])
        fitted = np.array([r["fitted_ms"] for r in rows])
        residual = measured / fitted - 1
        archs = [tuple(plan.parse_arch(r["arch"])) for r in rows]
        entry = {
            "lut": path,
            "built": document.get("provenance", {}).get("created"),
            "networks": len(rows),
            "residual_rms": float(np.sqrt(np.mean(residual**2))),
            "within_5pct": float(np.mean(np.abs(residual) < 0.05)),
            "features": {},
        }
        for name, x in features(archs).items():
            model = RidgeCV(alphas=np.logspace(-3, 3, 13))
            folds = KFold(10, shuffle=True, random_state=0)
            left = residual - cross_val_predict(model, x, residual, cv=folds)
            entry["features"][name] = {
                "residual_rms_after": float(np.sqrt(np.mean(left**2))),
                "within_5pct_after": float(np.mean(np.abs(left) < 0.05)),
            }
            print(
                f"{path}: {name:12s} residual RMS {entry['residual_rms']:.2%} -> "
                f"{entry['features'][name]['residual_rms_after']:.2%}, within 5 % "
                f"{entry['within_5pct']:.0%} -> {entry['features'][name]['within_5pct_after']:.0%}"
            )
        out.append(entry)
    path = write_result(args.name, {"luts": out}, command=" ".join(["python", *sys.argv]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
