"""Greedy-ADMM vs DCA-NAS vs DARTS (with and without a latency penalty) vs random search.

Same space, budget, data and seeds for every method. Each (method, seed) runs in a fresh
subprocess (so its peak resident memory is its own), which searches, then trains the returned
architecture at the search width on the final images and evaluates it on the test split. Figures
per method: hit rate of the *derived* architecture before repair (cost <= budget, and within
[0.9 T, T]), the final architecture after repair, expected vs derived cost, test accuracy, search
wall time (the DCA lookup graph's searches included, counted in the run that built it; later
seeds read it from the cache) and peak RSS.

    python bench/search_methods.py [--space fbnet] [--device pi4] [--fraction 0.25]
        [--seeds 0 1 2] [--steps 60] [--arch-lr 0.01] [--train-steps 150]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result

METHODS = ("greedy-admm", "dca", "dca-nolug", "darts", "darts+penalty", "random")


def settings(name: str, args: argparse.Namespace) -> tuple[str, dict]:
    """Registry method and its settings for a benchmark entry."""
    lr = {"arch_lr": args.arch_lr}
    table = {
        "greedy-admm": ("greedy-admm", {}),
        "dca": ("dca", {**lr, "lookup_steps": args.steps}),
        "dca-nolug": ("dca", {**lr, "lookup_graph": False}),
        "darts": ("darts", lr),
        "darts+penalty": ("darts", {**lr, "penalty_weight": args.penalty_weight}),
        "random": ("random", {}),
    }
    return table[name]


def child(args: argparse.Namespace) -> dict:
    """One (method, seed) run; returns its figures."""
    import dataclasses

    import torch

    from hwnas.costs.models import make_constraints
    from hwnas.search.api import Hooks, get_method, method_config
    from hwnas.search.config import resolve_config
    from hwnas.search.pipeline import build_problem
    from hwnas.search.trainer import TrainConfig, evaluate, train_model

    torch.set_num_threads(1)
    method, method_settings = settings(args.child, args)
    base = resolve_config(
        None, {"device": args.device, "space": args.space, "method": method, "seed": args.seed}
    )
    config = dataclasses.replace(
        base,
        data=dataclasses.replace(
            base.data, search_train_limit=args.images, final_train_limit=args.images,
            test_limit=args.test_images,
        ),
        search=dataclasses.replace(
            base.search, steps=args.steps, warmup_steps=args.steps // 5, batch_size=32,
            eval_every=0,
        ),
        method_settings=method_settings,
    )  # fmt: skip
    unconstrained, final, _ = build_problem(config)
    low, high = unconstrained.costs[args.metric].bounds()
    limit = low + args.fraction * (high - low)
    constraints = make_constraints(unconstrained.costs, {args.metric: limit})
    problem = dataclasses.replace(unconstrained, constraints=constraints)
    spec = get_method(method)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = spec.run(problem, method_config(spec, method_settings), Hooks())
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    (constraint,) = problem.constraints
    info = result.info
    derived = info.get("derived_costs", {}).get(args.metric)
    net = problem.space.build_net(result.arch, width=problem.space.config.search_width, seed=0)
    x, y = final.train.tensors
    train = TrainConfig(steps=args.train_steps, batch_size=64, lr=0.05, seed=args.seed)
    train_model(net, x, y, train)
    return {
        "method": args.child,
        "seed": args.seed,
        "limit": limit,
        "final_cost": constraint.value(result.arch),
        "final_satisfied": constraint.satisfied(result.arch),
        "derived_cost": derived,
        "expected_cost": info.get("expected_costs", {}).get(args.metric),
        "search_bound": info.get("search_bounds", {}).get(args.metric),
        "arch": problem.space.format_arch(result.arch),
        "test_accuracy": evaluate(net, *final.test.tensors),
        "search_seconds": seconds,
        "peak_rss_mb": peak / 1024,
        "rss_before_search_mb": rss_before / 1024,
    }


def summarize(rows: list[dict]) -> dict:
    import numpy as np

    out = {}
    for name in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == name]
        ratio = [r["derived_cost"] / r["limit"] for r in mine if r["derived_cost"] is not None]
        final = [r["final_cost"] / r["limit"] for r in mine]
        stat = lambda v: {"mean": float(np.mean(v)), "std": float(np.std(v))} if v else None  # noqa: E731
        out[name] = {
            "runs": len(mine),
            "derived_over_budget": stat(ratio),
            "derived_hit_rate": float(np.mean([v <= 1 + 1e-9 for v in ratio])) if ratio else None,
            "derived_in_band_rate": float(np.mean([0.9 <= v <= 1 + 1e-9 for v in ratio]))
            if ratio
            else None,
            "final_over_budget": stat(final),
            "final_in_band_rate": float(np.mean([0.9 <= v <= 1 + 1e-9 for v in final])),
            "test_accuracy": stat([r["test_accuracy"] for r in mine]),
            "search_seconds": stat([r["search_seconds"] for r in mine]),
            "peak_rss_mb": stat([r["peak_rss_mb"] for r in mine]),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="fbnet")
    parser.add_argument("--device", default="pi4")
    parser.add_argument("--metric", default="latency_ms", choices=("latency_ms", "flops", "params"))
    parser.add_argument("--fraction", type=float, default=0.25, help="budget in the cost range")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--arch-lr", type=float, default=0.01)
    parser.add_argument("--penalty-weight", type=float, default=1.0)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--train-steps", type=int, default=150)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--cache", default=None, help="XDG cache dir (lookup graphs)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        Path(args.result).write_text(json.dumps(child(args)), encoding="utf-8")
        return
    cache = args.cache or tempfile.mkdtemp(prefix="hwnas-bench-cache-")
    env = {**os.environ, "XDG_CACHE_HOME": cache}
    rows = []
    passthrough = sys.argv[1:]
    for seed in args.seeds:
        for name in args.methods:
            with tempfile.NamedTemporaryFile(suffix=".json") as handle:
                command = [sys.executable, __file__, *passthrough, "--child", name,
                           "--seed", str(seed), "--result", handle.name]  # fmt: skip
                subprocess.run(command, check=True, env=env)
                row = json.loads(Path(handle.name).read_text(encoding="utf-8"))
            rows.append(row)
            print(
                f"seed {seed} {name:14s} derived/T {row['derived_cost'] / row['limit']:.3f} "
                if row["derived_cost"] is not None
                else f"seed {seed} {name:14s} derived/T   -   ",
                f"final/T {row['final_cost'] / row['limit']:.3f} acc {row['test_accuracy']:.4f} "
                f"search {row['search_seconds']:.0f} s peak {row['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    figures = {
        "space": args.space, "device": args.device, "metric": args.metric,
        "budget_fraction_of_range": args.fraction, "search_steps": args.steps,
        "arch_lr": args.arch_lr, "penalty_weight": args.penalty_weight, "images": args.images,
        "final_train_steps": args.train_steps, "seeds": args.seeds,
        "summary": summarize(rows), "runs": rows,
    }  # fmt: skip
    name = args.name or f"search_methods_{args.space}_{args.metric}"
    print(json.dumps(figures["summary"], indent=1))
    write_result(name, figures, " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
