"""Wall time of the default command ``hwnas search --latency-ms 20`` on this machine.

Runs the CLI exactly as a user would (a fresh process, default settings) and records its wall
time, the stages' seconds from its report, and the load average around it (the machine may be
shared: a load above the core count slows every stage).

    python bench/search_wall_time.py [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more CLI flags")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="hwnas-wall-")) / "run"
    cmd = [
        sys.executable,
        "-m",
        "hwnas",
        "search",
        "--latency-ms",
        str(args.latency_ms),
        "--out",
        str(out),
        "--json",
        *args.extra,
    ]
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    done = subprocess.run(
        cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"hwnas search failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    figures = {
        "wall_seconds": wall,
        "target_seconds": 600,
        "within_target": wall <= 600,
        "search_seconds": report["search_seconds"],
        "final_train_seconds": report["final_train"]["seconds"],
        "total_seconds_in_report": report["total_seconds"],
        "test_accuracy": report["accuracy"]["test"],
        "latency_ms": report["latency_ms"],
        "arch": report["arch_text"],
        "budget": report["budget"],
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "run_dir": str(out),
    }
    print(
        f"default search: {wall:.0f} s wall (search {figures['search_seconds']:.0f} s, final "
        f"training {figures['final_train_seconds']:.0f} s), test accuracy "
        f"{figures['test_accuracy']:.4f} at {figures['latency_ms']:.3f} ms; load "
        f"{load_before[0]:.1f} -> {figures['load_average_after'][0]:.1f}"
    )
    write_result("search_wall_time", figures, " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
