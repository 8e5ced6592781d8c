"""Search peak memory: single-path DSNAS vs all-ops DARTS on the same fbnet supernet.

Each method runs ``--steps`` search steps (no weight-only warm-up: every step has its
architecture update) in a fresh subprocess on the same supernet (``--width``), images
(``--resolution``, random: memory does not depend on their content), batch and Pi 4 LUT budget.
A child reports the peak resident set size (``getrusage`` ``ru_maxrss``, the high-water mark the
kernel keeps for the process: ``tracemalloc`` does not see torch's allocations) before the
search (imports, data, cost models) and after it; the figure is the difference, the memory the
search itself added. It also counts the op forward calls per step (hooks on the 22 x 9 ops).
DSNAS computes one op per layer, ProxylessNAS one for the weight step and two for the
architecture step, DARTS and FBNet all nine in both steps; activations kept for the backward
pass dominate, so the ratio tracks the ops computed.

    python bench/single_path_memory.py --width 0.25 --resolution 32 --batch 32 --steps 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result

METHODS = ("darts", "dsnas", "proxyless", "fbnet-gumbel")
SETTINGS = {"proxyless": {"arch_every": 1}}  # an architecture step every step, like the others


def _maxrss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> dict:
    """One method's search; its peak memory and op calls."""
    import gc

    import torch

    from hwnas.costs.latency import load_latency_predictor
    from hwnas.costs.models import make_constraints, make_cost_models
    from hwnas.search.api import (
        Hooks,
        SearchBudget,
        SearchData,
        SearchProblem,
        get_method,
        method_config,
    )
    from hwnas.spaces.base import SpaceConfig, create_space

    torch.set_num_threads(1)
    torch.manual_seed(0)
    n, r = 2 * args.batch, args.resolution
    data = SearchData(
        torch.randn(n, 3, r, r), torch.randint(0, 10, (n,)),
        torch.randn(n, 3, r, r), torch.randint(0, 10, (n,)),
    )  # fmt: skip
    space = create_space("fbnet", SpaceConfig(32, 10, args.width))
    costs = make_cost_models(space, load_latency_predictor("pi4", "fbnet"))
    low, high = costs["latency_ms"].bounds()
    constraints = make_constraints(costs, {"latency_ms": low + 0.4 * (high - low)})
    budget = SearchBudget(
        steps=args.steps, warmup_steps=0, batch_size=args.batch, eval_every=0,
        eval_images=args.batch, checkpoint_every=0,
    )  # fmt: skip
    problem = SearchProblem(space, data, constraints, budget, costs)
    calls = [0]
    build = space.build_supernet

    def counted(seed: int = 0):
        net = build(seed)
        for ops in net.layers:
            for op in ops:
                op.register_forward_hook(lambda *a: calls.__setitem__(0, calls[0] + 1))
        return net

    space.build_supernet = counted  # type: ignore[method-assign]
    spec = get_method(args.child)
    config = method_config(spec, SETTINGS.get(args.child, {}))
    _warm_up(torch)  # torch's one-time allocations (kernels, autograd) are not the search's
    gc.collect()
    before = _maxrss_mb()
    steps_done = []
    spec.run(problem, config, Hooks(lambda done, total, status: steps_done.append(calls[0])))
    after = _maxrss_mb()
    return {
        "method": args.child,
        "settings": SETTINGS.get(args.child, {}),
        "rss_before_mb": before,
        "rss_peak_mb": after,
        "search_mb": after - before,
        # up to the last step: the evaluation of the derived architecture after it is not counted
        "op_calls_per_step": steps_done[-2] / (args.steps - 1),
    }


def _warm_up(torch) -> None:
    """One forward and backward of a small conv net (then freed)."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.Flatten()
    )
    net(torch.randn(2, 3, 8, 8)).sum().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25, help="supernet width (0.25/0.5/1)")
    parser.add_argument("--resolution", type=int, default=32, help="image size in pixels")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--name", default="single_path_memory")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.child:
        print(json.dumps(child(args)))
        return
    runs = {}
    for method in args.methods:
        command = [sys.executable, __file__, "--child", method, "--width", str(args.width),
                   "--resolution", str(args.resolution), "--batch", str(args.batch),
                   "--steps", str(args.steps)]  # fmt: skip
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs[method] = json.loads(out.strip().splitlines()[-1])
        run = runs[method]
        print(f"{method:14s} search {run['search_mb']:8.1f} MB (peak {run['rss_peak_mb']:.0f} MB)"
              f"  op calls/step {run['op_calls_per_step']:.0f}", flush=True)  # fmt: skip
    base = runs.get("darts")
    ratios = {}
    if base:
        ratios = {m: r["search_mb"] / base["search_mb"] for m, r in runs.items() if m != "darts"}
        for m, ratio in ratios.items():
            print(f"{m} / darts search memory: {ratio:.3f}")
    figures = {
        "space": "fbnet",
        "width": args.width,
        "resolution": args.resolution,
        "batch": args.batch,
        "steps": args.steps,
        "runs": runs,
        "search_memory_ratio_vs_darts": ratios,
    }
    write_result(args.name, figures, " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
