"""Quality at equal latency: Greedy-ADMM against random search and a hand-designed baseline.

Runs the whole ``hwnas search`` pipeline (search, final training from scratch, test accuracy) for
each (method, space) and seed at one latency budget on the Pi 4 reference LUT, with the default
budgets (or a recipe), and prints mean +- std of the test accuracy and of the predicted latency.

    python bench/search_quality.py --latency-ms 20 --seeds 0 1 2 \
        --runs greedy-admm:fbnet random:fbnet uniform:ib-channel
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result

RUNS = ("greedy-admm:fbnet", "random:fbnet", "uniform:ib-channel", "greedy-admm:ib-channel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--device", default="pi4")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), help="method:space pairs")
    parser.add_argument("--recipe", help="recipe for the budgets (default: built-in defaults)")
    parser.add_argument("--out", help="keep the run directories here (default: a temp dir)")
    parser.add_argument("--name", default="search_quality")
    args = parser.parse_args()

    from hwnas.search.config import read_recipe, resolve_config
    from hwnas.search.pipeline import run_search

    recipe = read_recipe(args.recipe) if args.recipe else None
    root = Path(args.out or tempfile.mkdtemp(prefix="hwnas-quality-"))
    results: dict[str, list[dict]] = {}
    for seed in args.seeds:  # seed-major: an interrupted benchmark still compares like with like
        for pair in args.runs:
            method, space = pair.split(":")
            config = resolve_config(
                recipe,
                {
                    "method": method,
                    "space": space,
                    "seed": seed,
                    "latency_ms": args.latency_ms,
                    "device": args.device,
                },
            )
            settings = _method_settings(method, config)
            config = dataclasses.replace(config, method_settings=settings)
            report = run_search(config, root / f"{method}_{space}_s{seed}")
            row = {
                "seed": seed,
                "test_accuracy": report["accuracy"]["test"],
                "val_accuracy": report["accuracy"]["val"],
                "latency_ms": report["latency_ms"],
                "params": report["params"],
                "flops": report["flops"],
                "arch": report["arch_text"],
                "search_seconds": report["search_seconds"],
                "total_seconds": report["total_seconds"],
            }
            results.setdefault(pair, []).append(row)
            print(
                f"{pair} seed {seed}: test {row['test_accuracy']:.4f} at "
                f"{row['latency_ms']:.3f} ms ({row['total_seconds']:.0f} s)",
                flush=True,
            )
            _write(args, results, root)
    for pair, s in _write(args, results, root).items():
        print(
            f"{pair:24s} test accuracy {s['test_mean']:.4f} +- {s['test_std']:.4f}, "
            f"latency {s['latency_mean']:.3f} ms (n={s['n']})"
        )


def _write(args: argparse.Namespace, results: dict, root: Path) -> dict:
    """Write the figures so far (called after every run: partial results survive)."""
    summary = {pair: _summary(rows) for pair, rows in results.items()}
    complete = len(results) == len(args.runs) and all(
        len(rows) == len(args.seeds) for rows in results.values()
    )
    figures = {
        "latency_ms": args.latency_ms,
        "device": args.device,
        "complete": complete,
        "summary": summary,
        "runs": results,
        "run_dirs": str(root),
    }
    write_result(args.name, figures, " ".join(["python", *sys.argv]))
    return summary


def _method_settings(method: str, config) -> dict:
    return dict(config.method_settings) if method == config.method else {}


def _summary(rows: list[dict]) -> dict:
    acc = [r["test_accuracy"] for r in rows]
    lat = [r["latency_ms"] for r in rows]
    return {
        "n": len(rows),
        "test_mean": statistics.mean(acc),
        "test_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
        "latency_mean": statistics.mean(lat),
        "seconds_mean": statistics.mean(r["total_seconds"] for r in rows),
    }


if __name__ == "__main__":
    main()
