"""Greedy-ADMM vs its null-alpha control: does the searched alpha earn the budget?

The control (``train_alpha=False``) keeps alpha at its initial noise while the weights, the
beta-steps and the dual steps run as usual. For each (variant, seed) the method's OWN derived
architecture (before the shared repair/fill) is priced against every budget and trained from
scratch at the search width on the final images; figures: own cost / budget, the gated
supernet's validation accuracy at the end of the search (for the control that is the whole
supernet with gates ~1, not comparable), and the trained architecture's validation accuracy
(test accuracy reported, never used to choose anything).

    python bench/greedy_admm_null_alpha.py --space ib-channel [--seeds 0 1 2] [--steps 200]
        [--fraction 0.3] [--metrics latency_ms flops params] [--train-steps 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import budgets_at, write_result


def one_run(args: argparse.Namespace, seed: int, train_alpha: bool) -> dict:
    import numpy as np
    import torch

    from hwnas.search.api import Hooks
    from hwnas.search.config import resolve_config
    from hwnas.search.finalize import finalize
    from hwnas.search.greedy_admm import GreedyADMMConfig, run
    from hwnas.search.pipeline import build_problem
    from hwnas.search.trainer import TrainConfig, evaluate, train_model

    torch.set_num_threads(1)
    base = resolve_config(None, {"device": "pi4", "space": args.space, "seed": seed})
    config = dataclasses.replace(
        base,
        latency_ms=None,
        data=dataclasses.replace(
            base.data, search_train_limit=args.images, final_train_limit=args.images,
            test_limit=args.test_images,
        ),
        search=dataclasses.replace(
            base.search, steps=args.steps, warmup_steps=args.steps // 5, eval_every=0,
            eval_images=1000, seed=seed,
        ),
    )  # fmt: skip
    unconstrained, final, _ = build_problem(config)
    problem = budgets_at(unconstrained, args.metrics, args.fraction)
    t0 = time.perf_counter()
    result = run(problem, GreedyADMMConfig(train_alpha=train_alpha), Hooks())
    seconds = time.perf_counter() - t0
    own = problem.space.parse_arch(result.info["own_arch"])
    net = problem.space.build_net(own, width=problem.space.config.search_width, seed=seed)
    x, y = final.train.tensors
    train_model(net, x, y, TrainConfig(steps=args.train_steps, batch_size=64, lr=0.05, seed=seed))
    return {
        "train_alpha": train_alpha,
        "seed": seed,
        "own_arch": result.info["own_arch"],
        "own_vector": np.asarray(problem.space.arch_vector(own)).tolist(),
        "own_over_budget": {c.metric: c.value(own) / c.limit for c in problem.constraints},
        "repaired_over_budget": {
            c.metric: c.value(finalize(problem, own, result.values, True).arch) / c.limit
            for c in problem.constraints
        },
        "supernet_val_accuracy": result.tried[-1].val_accuracy,
        "val_accuracy": evaluate(net, *final.val.tensors),
        "test_accuracy": evaluate(net, *final.test.tensors),
        "search_seconds": seconds,
    }


def summarize(rows: list[dict]) -> dict:
    import numpy as np

    stat = lambda v: {"mean": float(np.mean(v)), "std": float(np.std(v))}  # noqa: E731
    out = {}
    for name, flag in (("searched", True), ("null_alpha", False)):
        mine = [r for r in rows if r["train_alpha"] == flag]
        if not mine:
            continue
        metrics = mine[0]["own_over_budget"]
        out[name] = {
            "runs": len(mine),
            "own_over_budget": {m: stat([r["own_over_budget"][m] for r in mine]) for m in metrics},
            "own_feasible_rate": float(
                np.mean([all(v <= 1 + 1e-9 for v in r["own_over_budget"].values()) for r in mine])
            ),
            **{
                k: stat([r[k] for r in mine])
                for k in ("supernet_val_accuracy", "val_accuracy", "test_accuracy")
            },
            "search_seconds": stat([r["search_seconds"] for r in mine]),
        }
    by_seed = {(r["seed"], r["train_alpha"]): np.ravel(r["own_vector"]) for r in rows}
    corr = [
        float(np.corrcoef(by_seed[(s, True)], by_seed[(s, False)])[0, 1])
        for s in sorted({r["seed"] for r in rows})
        if (s, True) in by_seed and (s, False) in by_seed
    ]
    out["own_arch_corr_searched_vs_control"] = corr
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="ib-channel")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--fraction", type=float, default=0.3)
    parser.add_argument("--metrics", nargs="+", default=["latency_ms"])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--train-steps", type=int, default=300)
    parser.add_argument("--variants", nargs="+", default=["searched", "null_alpha"])
    parser.add_argument("--rows", help="append each run's row to this JSON-lines file")
    parser.add_argument("--summarize", help="only summarise this JSON-lines file")
    args = parser.parse_args()
    if args.summarize:
        rows = [json.loads(line) for line in Path(args.summarize).read_text().splitlines()]
    else:
        rows = []
        for seed in args.seeds:
            for variant in args.variants:
                row = one_run(args, seed, variant == "searched")
                print(json.dumps(row), flush=True)
                rows.append(row)
                if args.rows:
                    with open(args.rows, "a") as handle:
                        handle.write(json.dumps(row) + "\n")
    figures = {"space": args.space, "args": vars(args), "summary": summarize(rows), "rows": rows}
    print(json.dumps(figures["summary"], indent=1))
    write_result(f"greedy_admm_null_alpha_{args.space}", figures, " ".join(sys.argv))


if __name__ == "__main__":
    main()
