"""Second- vs first-order DARTS on the darts cell space: time per step and final accuracy.

Same data, budget and seeds for both orders; each search derives a genotype (no budget: the
derived genotype is not repaired), which is trained from scratch at the search width and
evaluated on the test split. Time per step is the search wall time over its steps (no warm-up:
every step takes an alpha step), measured alternately in the same process.

    python bench/darts_order.py [--cells 5] [--steps 40] [--seeds 0 1] [--train-steps 200]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=5)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--arch-lr", type=float, default=0.01)
    parser.add_argument("--train-steps", type=int, default=200)
    args = parser.parse_args()

    import numpy as np
    import torch

    from hwnas.costs.models import make_cost_models
    from hwnas.data import DataConfig, load_dataset
    from hwnas.search.api import Hooks, SearchBudget, SearchData, SearchProblem
    from hwnas.search.darts import DartsConfig, run
    from hwnas.search.trainer import TrainConfig, evaluate, train_model
    from hwnas.spaces.base import SpaceConfig
    from hwnas.spaces.darts import DartsSpace

    torch.set_num_threads(1)
    common = {"name": "fashion-mnist", "seed": 0, "train_limit": args.images, "test_limit": 2000}
    search = load_dataset(DataConfig(resolution=16, **common))
    final = load_dataset(DataConfig(resolution=32, **common))
    data = SearchData(*search.train.tensors, *search.val.tensors)
    space = DartsSpace(SpaceConfig(32, search.num_classes, args.width), cells=args.cells)
    rows = []
    for seed in args.seeds:
        budget = SearchBudget(steps=args.steps, warmup_steps=0, batch_size=32, lr=0.025,
                              eval_every=0, eval_images=200, seed=seed)  # fmt: skip
        problem = SearchProblem(space, data, (), budget, make_cost_models(space))
        for order in (1, 2):
            t0 = time.perf_counter()
            result = run(problem, DartsConfig(order=order, arch_lr=args.arch_lr), Hooks())
            seconds = time.perf_counter() - t0
            net = space.build_net(result.arch, width=args.width, seed=seed)
            train = TrainConfig(steps=args.train_steps, batch_size=64, lr=0.05, seed=seed)
            train_model(net, *final.train.tensors, train)
            row = {
                "seed": seed,
                "order": order,
                "seconds_per_step": seconds / args.steps,
                "search_seconds": seconds,
                "genotype": space.format_arch(result.arch),
                "skip_connects": sum(op == 3 for _, op in result.arch),
                "supernet_val_accuracy": result.tried[-1].val_accuracy,
                "test_accuracy": evaluate(net, *final.test.tensors),
            }
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "genotype"}), flush=True)
    summary = {}
    for order in (1, 2):
        mine = [r for r in rows if r["order"] == order]
        summary[f"order_{order}"] = {
            key: {"mean": float(np.mean([r[key] for r in mine])),
                  "std": float(np.std([r[key] for r in mine]))}
            for key in ("seconds_per_step", "test_accuracy", "supernet_val_accuracy")
        }  # fmt: skip
    summary["time_ratio_2nd_over_1st"] = (
        summary["order_2"]["seconds_per_step"]["mean"]
        / summary["order_1"]["seconds_per_step"]["mean"]
    )
    figures = {
        "space": f"darts, {args.cells} cells, search C = {space.search_channels}",
        "data": f"fashion-mnist {args.images} images (10 % val), search 16 px, final 32 px",
        "search_steps": args.steps, "arch_lr": args.arch_lr, "seeds": args.seeds,
        "final_train_steps": args.train_steps, "summary": summary, "runs": rows,
    }  # fmt: skip
    print(json.dumps(summary, indent=1))
    write_result("darts_order", figures, " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
