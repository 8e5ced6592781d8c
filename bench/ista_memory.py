"""Search peak memory of ISTA-NAS vs first-order DARTS on the same cells (ISTA-NAS slides: 1.9 GB
vs 9.1 GB on a GPU at batch 64, about 1/5).

Each method searches in a fresh subprocess (so neither inherits the other's allocator state) on
the same ``darts`` space, random images and search budget, one torch thread. After the setup
(imports, data, nothing of the search yet) the child resets the kernel's peak-RSS mark
(``/proc/self/clear_refs``, Linux >= 4.0) and notes its RSS; the figure is the peak RSS during
the search minus that baseline: weights, optimizer state and, above all, activations. Where the
mark cannot be reset, ``ru_maxrss`` after minus before the search is used (a lower bound when the
setup peaked higher) and the result says so. On a CPU this is host RSS, not GPU memory, and
includes the allocator's slack; the ratio is the figure to compare.

    python bench/ista_memory.py                       # DARTS' CIFAR search net: C 16, 8 cells,
                                                      # 32 x 32, batch 64 (minutes, GBs for DARTS)
    python bench/ista_memory.py --width 0.5 --resolution 16 --batch 32 --name ista_memory_small
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

METHODS = {"darts": {"order": 1}, "ista": {"mode": "two-stage"}}


def _status_kb(key: str) -> int:
    text = Path("/proc/self/status").read_text(encoding="utf-8")
    return int(re.search(rf"{key}:\s+(\d+)", text).group(1))


def child(args: argparse.Namespace) -> dict:
    """One search; its peak memory above the setup's."""
    import resource
    import time

    import torch

    from hwnas.costs.models import make_constraints, make_cost_models
    from hwnas.search.api import (
        Hooks,
        SearchBudget,
        SearchData,
        SearchProblem,
        get_method,
        method_config,
    )
    from hwnas.spaces.base import SpaceConfig
    from hwnas.spaces.darts import DartsSpace

    torch.set_num_threads(1)
    space = DartsSpace(SpaceConfig(32, 10, args.width), cells=args.cells)
    g = torch.Generator().manual_seed(0)
    n = args.batch * 4
    images = lambda: torch.randn(n, 3, args.resolution, args.resolution, generator=g)  # noqa: E731
    labels = lambda: torch.randint(0, 10, (n,), generator=g)  # noqa: E731
    data = SearchData(images(), labels(), images(), labels())
    costs = make_cost_models(space)
    low, high = costs["params"].bounds()
    budget = SearchBudget(steps=args.steps, warmup_steps=0, batch_size=args.batch, eval_every=0,
                          eval_images=args.batch, checkpoint_every=0)  # fmt: skip
    constraints = make_constraints(costs, {"params": low + 0.5 * (high - low)})
    problem = SearchProblem(space, data, constraints, budget, costs)
    spec = get_method(args.child)
    config = method_config(spec, METHODS[args.child])
    before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        Path("/proc/self/clear_refs").write_text("5", encoding="utf-8")
        baseline_kb, how = _status_kb("VmRSS"), "VmHWM after clear_refs, minus VmRSS before"
    except OSError:
        baseline_kb, how = before_kb, "ru_maxrss delta (peak mark not resettable)"
    t0, cpu0 = time.perf_counter(), time.process_time()
    spec.run(problem, config, Hooks())
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    peak_kb = _status_kb("VmHWM") if how.startswith("VmHWM") else None
    after_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    search_kb = (peak_kb if peak_kb is not None else after_kb) - baseline_kb
    return {
        "method": args.child,
        "settings": METHODS[args.child],
        "search_peak_mb": search_kb / 1024,
        "process_peak_mb": max(after_kb, peak_kb or 0) / 1024,
        "setup_rss_mb": baseline_kb / 1024,
        "how": how,
        "seconds_per_step": seconds / args.steps,  # wall: meaningless on a busy machine
        "cpu_seconds_per_step": cpu / args.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--width", type=float, default=1.0, help="of C = 16")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--name", default="ista_memory")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    runs = {}
    for method in METHODS:
        command = [sys.executable, __file__, *sys.argv[1:], "--child", method]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        runs[method] = json.loads(out.strip().splitlines()[-1])
        print(f"{method:6s} search peak {runs[method]['search_peak_mb']:8.1f} MB  "
              f"{runs[method]['cpu_seconds_per_step']:.2f} CPU s/step", flush=True)  # fmt: skip
    ratio = runs["ista"]["search_peak_mb"] / runs["darts"]["search_peak_mb"]
    print(f"ISTA-NAS / DARTS search peak memory: {ratio:.3f} (slides: 1.9 / 9.1 = 0.209 on a GPU)")
    figures = {
        "cells": args.cells, "channels": round(16 * args.width), "resolution": args.resolution,
        "batch": args.batch, "steps": args.steps, "runs": runs,
        "ista_over_darts": ratio, "paper_ratio": 1.9 / 9.1,
    }  # fmt: skip
    write_result(args.name, figures, " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
