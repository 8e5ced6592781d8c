"""Mixed precision under a model-size budget: HAQ, DFQ, random, greedy sensitivity, uniform.

On one trained network (a run directory, e.g. from ``bench/haq.py train``), for every seed and
every size budget, each method searches per-layer weight bit widths (2..8, activations float) on
the same precomputed codes and validation set (:mod:`hwnas.quant.size`); then the same final
fine-tune, the packed ONNX export (:func:`hwnas.export.api.write_packed`), the file's bytes, its
outputs against the fine-tuned PyTorch model, its test accuracy in onnxruntime and its latency
on ``local`` against the fp32 file of the same network::

    python bench/quant_methods.py --run R --fractions 0.1 0.3 0.5 --seeds 0 1 2 \\
        --episodes 300 --final-steps 300 --jobs 2 --name quant_size

A budget at fraction f is ``all-2-bit size + f * (all-8-bit size - all-2-bit size)``. HAQ and
random get the same number of episodes (policies scored through the same memoised evaluator);
greedy scores each layer alone at every width; DFQ trains its relaxation for ``--dfq-steps``.
The method's own policy (before any shared step) is reported with its priced size; only DFQ can
miss the budget by itself, and then its repaired policy is what is fine-tuned (``repaired``).
Rows go to ``bench/results/<name>.jsonl`` as they finish (a rerun skips the cells it has);
the summary (mean, std, paired differences against random and greedy) to ``<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, write_result  # noqa: E402

METHODS = ("haq", "dfq", "random", "greedy", "uniform")
LATENCY_REPEATS = 30


def _problem(args: argparse.Namespace, seed: int):
    """(graph, size problem at the first budget, budgets in bytes by fraction) of one seed."""
    from hwnas.graph.lower import graph_from_module
    from hwnas.graph.wcodes import weight_bytes
    from hwnas.quant.quantize import load_data
    from hwnas.quant.size import size_problem
    from hwnas.runs.rundir import load_run

    run = load_run(args.run)
    graph = graph_from_module(run.module, run.input_shape)
    data = load_data(run.data, args.train_images, args.val_images, seed, args.select_images)
    sizes = [(int(layer.weight.size), int(layer.weight.shape[0])) for layer in graph.layers]
    lo = sum(weight_bytes(n, c, 2, args.coding) for n, c in sizes)
    hi = sum(weight_bytes(n, c, 8, args.coding) for n, c in sizes)
    budgets = {f: lo + f * (hi - lo) for f in args.fractions}
    return graph, size_problem(graph, data, args.coding, max(budgets.values())), budgets


def _search(args: argparse.Namespace, problem, method: str, seed: int, memo: dict) -> dict:
    """The method's own policy on ``problem`` (before the shared fine-tune)."""
    from hwnas.quant.dfq import DFQConfig
    from hwnas.quant.size import search_size

    dfq = DFQConfig(steps=args.dfq_steps, seed=seed)
    found = search_size(problem, method, args.episodes, seed, dfq=dfq, dfq_memo=memo)
    row = found.to_dict()
    details = row.pop("details", {})
    own = details.get("own_policy", row["policy"])  # DFQ alone may have been repaired
    row["own_policy"] = list(own)
    row["own_size_bytes"] = problem.size_bytes(own)
    row["own_val_accuracy"] = problem.evaluate(list(own))
    row["repaired"] = bool(details.get("repaired", False))
    if method == "dfq":
        row["dfq"] = {"delta": details["delta"], "probes": details["probes"]}
    if "reselected" in details:
        row["reselected"] = details["reselected"]
        row["reward_best_episode"] = details["reward_best_episode"]
    return row


def _export_checks(graph, fine, data, client, fp32_bytes: bytes) -> dict:
    """Packed ONNX file: bytes, agreement with the fine-tuned model, ORT test accuracy, latency."""
    import torch

    from hwnas.export.api import write_packed
    from hwnas.export.verify import run_onnx
    from hwnas.runs.measure import MeasureSettings, measure_model

    coded_graph = fine.net.coded_graph()
    model = write_packed(coded_graph, fine.codes, "onnx")
    x = data.test_x.numpy()
    logits = np.concatenate([run_onnx(model, x[i : i + 500]) for i in range(0, len(x), 500)])
    with torch.no_grad():
        ref = fine.net(data.test_x[:500]).numpy()
    settings = MeasureSettings(warmup=10, repeats=LATENCY_REPEATS)
    packed_ms, fp32_ms = [], []
    for _ in range(3):  # interleaved: the machine is shared
        packed_ms.append(measure_model(client, model, settings).stats.median_ms)
        fp32_ms.append(measure_model(client, fp32_bytes, settings).stats.median_ms)
    return {
        "file_bytes": len(model),
        "fp32_file_bytes": len(fp32_bytes),
        "max_abs_diff_vs_torch": float(np.abs(logits[:500] - ref).max()),
        "onnx_test_accuracy": float(100.0 * (logits.argmax(1) == data.test_y.numpy()).mean()),
        "latency_ms": float(np.median(packed_ms)),
        "fp32_latency_ms": float(np.median(fp32_ms)),
        "latency_ratio_vs_fp32": float(np.median(np.array(packed_ms) / np.array(fp32_ms))),
    }


def run_job(args: argparse.Namespace, seed: int, method: str, fractions: list[float]) -> list:
    """One seed and method at every budget: search, shared fine-tune, export and checks.

    The budgets share one problem (codes and the memoised evaluator: a policy scores the same
    under any budget, so greedy's single-layer sensitivities are measured once per seed).
    """
    import dataclasses

    import torch

    from hwnas.devices.connect import open_device
    from hwnas.export.onnx_writer import graph_to_onnx
    from hwnas.quant.qat import FinetuneConfig
    from hwnas.quant.size import finetune_size

    torch.set_num_threads(1)
    graph, shared, budgets = _problem(args, seed)
    fp32_bytes = graph_to_onnx(graph)
    memo: dict = {}  # DFQ's searches, shared by the budgets (fixed grid of loss increases)
    rows = []
    for fraction in fractions:
        torch.manual_seed(seed)
        problem = dataclasses.replace(shared, budget_bytes=budgets[fraction])
        row = {"seed": seed, "fraction": fraction, "budget_bytes": problem.budget_bytes}
        row["float_val_accuracy"] = problem.float_accuracy
        row.update(_search(args, problem, method, seed, memo))
        row["own_fits"] = row["own_size_bytes"] <= problem.budget_bytes
        config = FinetuneConfig(steps=args.final_steps, seed=seed)
        start = time.perf_counter()
        fine = finetune_size(problem, row["policy"], config)
        row["finetune_seconds"] = time.perf_counter() - start
        row["size_bytes"] = fine.size_bytes
        row["accuracy"] = fine.accuracy
        with open_device("local") as client:
            row["export"] = _export_checks(graph, fine, problem.data, client, fp32_bytes)
        rows.append(row)
    return rows


def _print_row(row: dict) -> None:
    print(
        f"seed {row['seed']} f={row['fraction']:g} {row['method']:8s} "
        f"own {row['own_size_bytes'] / row['budget_bytes']:.3f} of budget, "
        f"val before {row['own_val_accuracy']:.2f} %, "
        f"test after {row['accuracy']['test']['after']:.2f} %, "
        f"file {row['export']['file_bytes'] / 1000:.1f} kB, {row['seconds']:.0f} s search",
        flush=True,
    )


def _key(row: dict) -> tuple:
    return (row["seed"], round(row["fraction"], 6), row["method"])


def summarize(rows: list[dict], methods: list[str]) -> dict:
    """Per budget and method: mean/std, and paired test-accuracy differences (points)."""
    out: dict = {}
    for fraction in sorted({r["fraction"] for r in rows}):
        cell = {
            m: {r["seed"]: r for r in rows if r["fraction"] == fraction and r["method"] == m}
            for m in methods
        }
        entry = {}
        for m in methods:
            got = cell[m]
            if not got:
                continue
            test = [r["accuracy"]["test"]["after"] for r in got.values()]
            entry[m] = {
                "seeds": sorted(got),
                "test_accuracy": _stats(test),
                "val_before_finetune": _stats([r["own_val_accuracy"] for r in got.values()]),
                "own_size_of_budget": _stats(
                    [r["own_size_bytes"] / r["budget_bytes"] for r in got.values()]
                ),
                "own_fits": sum(bool(r["own_fits"]) for r in got.values()),
                "file_kb": _stats([r["export"]["file_bytes"] / 1000 for r in got.values()]),
                "latency_ratio_vs_fp32": _stats(
                    [r["export"]["latency_ratio_vs_fp32"] for r in got.values()]
                ),
                "search_seconds": _stats([r["seconds"] for r in got.values()]),
                "evaluated_policies": _stats([r["evaluated_policies"] for r in got.values()]),
            }
            for base in ("random", "greedy"):
                shared = sorted(set(got) & set(cell.get(base, {})))
                if m != base and shared:
                    diff = [
                        got[s]["accuracy"]["test"]["after"]
                        - cell[base][s]["accuracy"]["test"]["after"]
                        for s in shared
                    ]
                    entry[m][f"vs_{base}_points"] = {
                        **_stats(diff),
                        "wins": sum(d > 0 for d in diff),
                        "losses": sum(d < 0 for d in diff),
                    }
        budget = next(r["budget_bytes"] for r in rows if r["fraction"] == fraction)
        out[f"{fraction:g}"] = {"budget_kb": budget / 1000, "methods": entry}
    return out


def _stats(values: list[float]) -> dict:
    a = np.asarray(values, dtype=np.float64)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if a.size > 1 else 0.0,
        "n": int(a.size),
        "values": [float(v) for v in a],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="trained run directory")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.1, 0.3, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--coding", default="linear", choices=("linear", "kmeans"))
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--dfq-steps", type=int, default=150)
    parser.add_argument("--final-steps", type=int, default=300)
    parser.add_argument("--train-images", type=int, default=4096)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument(
        "--select-images", type=int, default=0, help="held-out images re-scoring haq/random"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--name", default="quant_size")
    args = parser.parse_args()
    os.chdir(ROOT)  # the run's data root is relative to the repository
    jsonl = RESULTS_DIR / f"{args.name}.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    done = {_key(r) for r in rows}
    jobs = []
    for s in args.seeds:
        for m in args.methods:
            todo = [f for f in args.fractions if (s, round(f, 6), m) not in done]
            if todo:
                jobs.append((s, m, todo))
    print(f"{len(jobs)} (seed, method) jobs to run ({len(done)} rows kept)", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_job, args, *job) for job in jobs]
        for fut in as_completed(futures):
            for row in fut.result():
                _print_row(row)
                rows.append(row)
                with jsonl.open("a") as handle:
                    handle.write(json.dumps(row) + "\n")
    settings = {k: v for k, v in vars(args).items()}
    summary = summarize(rows, [m for m in METHODS if any(r["method"] == m for r in rows)])
    write_result(args.name, {"settings": settings, "budgets": summary})
    print(json.dumps(summary, indent=1)[:4000])


if __name__ == "__main__":
    main()
