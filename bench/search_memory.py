"""Search peak memory per method on one space: the single-path and sparse methods against DARTS.

Two claims are checked with one measurement:

* ``--space fbnet`` (default methods ``darts dsnas proxyless fbnet-gumbel``): a single-path
  method (DSNAS one op per layer, ProxylessNAS one for the weight step and two for the
  architecture step) should need about 1/n of DARTS' memory on the same supernet (n = 9 ops);
  the budget is 40 % into the Pi 4 LUT's latency range. Op forward calls per step are counted
  (hooks on the 22 x 9 ops).
* ``--space darts`` (default methods ``darts ista``): the ISTA-NAS slides report 1.9 GB vs
  9.1 GB on a GPU at batch 64 (about 1/5); the budget is half-way into the params range.

Each method searches ``--steps`` steps (no weight-only warm-up; ProxylessNAS takes an
architecture step every step, DARTS is first order) in a fresh subprocess, one torch thread, on
random images of the space's resolution (memory does not depend on their content). After the
setup (imports, data, cost models, one small forward and backward so torch's one-time
allocations are not counted) the child resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``, Linux >= 4.0) and notes its RSS; the figure is the peak RSS during
the search minus that baseline: weights, optimizer state and, above all, activations kept for
the backward pass. Where the mark cannot be reset, ``ru_maxrss`` after minus before is used (a
lower bound when the setup peaked higher) and the result says so. On a CPU this is host RSS,
not GPU memory, and includes the allocator's slack; the ratio to DARTS is the figure.

    python bench/search_memory.py --space fbnet --width 0.25 --resolution 32 --batch 32
    python bench/search_memory.py --space darts --width 0.5 --resolution 16 --batch 32
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result

SPACES = {
    "fbnet": ("darts", "dsnas", "proxyless", "fbnet-gumbel"),
    "darts": ("darts", "ista"),
}
SETTINGS = {
    "darts": {"order": 1},
    "ista": {"mode": "two-stage"},
    "proxyless": {"arch_every": 1},  # an architecture step every step, like the others
}


def _status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text(encoding="utf-8")
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1))


def _problem(args: argparse.Namespace):
    """The space, random data, cost models and budget every method of ``args.space`` shares."""
    import torch

    from hwnas.costs.models import make_constraints, make_cost_models
    from hwnas.search.api import SearchBudget, SearchData, SearchProblem
    from hwnas.spaces.base import SpaceConfig, create_space

    g = torch.Generator().manual_seed(0)
    n, r = 2 * args.batch, args.resolution
    images = lambda: torch.randn(n, 3, r, r, generator=g)  # noqa: E731
    labels = lambda: torch.randint(0, 10, (n,), generator=g)  # noqa: E731
    data = SearchData(images(), labels(), images(), labels())
    config = SpaceConfig(r, 10, args.width)
    if args.space == "fbnet":
        from hwnas.costs.latency import load_latency_predictor

        space = create_space("fbnet", config)
        costs = make_cost_models(space, load_latency_predictor("pi4", "fbnet"))
        metric, fraction = "latency_ms", 0.4
    else:
        from hwnas.spaces.darts import DartsSpace

        space = DartsSpace(config, cells=args.cells)
        costs = make_cost_models(space)
        metric, fraction = "params", 0.5
    low, high = costs[metric].bounds()
    constraints = make_constraints(costs, {metric: low + fraction * (high - low)})
    budget = SearchBudget(
        steps=args.steps, warmup_steps=0, batch_size=args.batch, eval_every=0,
        eval_images=args.batch, checkpoint_every=0,
    )  # fmt: skip
    return SearchProblem(space, data, constraints, budget, costs)


def _count_op_calls(space, calls: list[int]) -> None:
    """Count forward calls of the supernet's candidate ops (spaces whose supernet has
    ``layers``, a list of op lists: fbnet)."""
    build = space.build_supernet

    def counted(*a, **k):
        net = build(*a, **k)
        for ops in getattr(net, "layers", []):
            for op in ops:
                op.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        return net

    space.build_supernet = counted


def child(args: argparse.Namespace) -> dict:
    """One method's search; its peak memory above the setup's, and op calls per step."""
    import resource
    import time

    import torch

    from hwnas.search.api import Hooks, get_method, method_config

    torch.set_num_threads(1)
    torch.manual_seed(0)
    problem = _problem(args)
    calls = [0]
    if args.space == "fbnet":
        _count_op_calls(problem.space, calls)
    spec = get_method(args.child)
    config = method_config(spec, SETTINGS.get(args.child, {}))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
    net(torch.randn(2, 3, 8, 8)).sum().backward()  # torch's one-time allocations
    del net
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
        baseline_kb, how = _status_kb("VmRSS"), "VmHWM after clear_refs, minus VmRSS before"
    except OSError:
        baseline_kb, how = before_kb, "ru_maxrss delta (peak mark not resettable)"
    per_step: list[int] = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    spec.run(problem, config, Hooks(lambda done, total, status: per_step.append(calls[0])))
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak_kb = _status_kb("VmHWM") if how.startswith("VmHWM") else None
    after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    search_kb = (peak_kb if peak_kb is not None else after_kb) - baseline_kb
    out = {
        "method": args.child,
        "settings": SETTINGS.get(args.child, {}),
        "search_peak_mb": search_kb / 1024,
        "process_peak_mb": max(after_kb, peak_kb or 0) / 1024,
        "setup_rss_mb": baseline_kb / 1024,
        "how": how,
        "seconds_per_step": seconds / args.steps,  # wall: meaningless on a busy machine
        "cpu_seconds_per_step": cpu / args.steps,
    }
    if args.space == "fbnet" and len(per_step) >= 2:
        # up to the last step: the evaluation of the derived architecture after it is not counted
        out["op_calls_per_step"] = per_step[-2] / (args.steps - 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", choices=sorted(SPACES), default="fbnet")
    parser.add_argument("--methods", nargs="+", help="default: the space's (see above)")
    parser.add_argument("--width", type=float, default=0.25, help="supernet width")
    parser.add_argument("--resolution", type=int, default=32, help="image size in pixels")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--cells", type=int, default=8, help="darts space: cells")
    parser.add_argument("--name", help="default search_memory_<space>")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2")
    if args.child:
        print(json.dumps(child(args)))
        return
    methods = args.methods or list(SPACES[args.space])
    runs = {}
    for method in methods:
        command = [sys.executable, __file__, *sys.argv[1:], "--child", method]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs[method] = run = json.loads(out.strip().splitlines()[-1])
        calls = (
            f"  op calls/step {run['op_calls_per_step']:.0f}" if "op_calls_per_step" in run else ""
        )
        print(f"{method:14s} search peak {run['search_peak_mb']:8.1f} MB  "
              f"{run['cpu_seconds_per_step']:.2f} CPU s/step{calls}", flush=True)  # fmt: skip
    ratios = {}
    if "darts" in runs:
        base = runs["darts"]["search_peak_mb"]
        ratios = {m: r["search_peak_mb"] / base for m, r in runs.items() if m != "darts"}
        for m, ratio in ratios.items():
            print(f"{m} / darts search peak memory: {ratio:.3f}")
    figures = {
        "space": args.space, "width": args.width, "resolution": args.resolution,
        "batch": args.batch, "steps": args.steps, "runs": runs,
        "search_memory_ratio_vs_darts": ratios,
    }  # fmt: skip
    if args.space == "darts":
        figures.update(cells=args.cells, paper_ratio_ista={"ratio": 1.9 / 9.1, "source": "slides"})
    write_result(
        args.name or f"search_memory_{args.space}", figures, " ".join(["python", *sys.argv])
    )


if __name__ == "__main__":
    main()
