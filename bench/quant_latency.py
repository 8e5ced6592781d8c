"""Mixed precision under a latency budget on ``local``: HAQ, DFQ, random, greedy, uniform.

On one trained network (a run directory, e.g. from ``bench/haq.py train``; only read), the
device ``local`` is profiled once at every precision its runtime executes (per layer and whole
network; the LUT is kept in ``bench/results/<name>_lut.json`` and its entries reused on a
rerun), the cheapest policy (every layer at its faster precision) and all-fp32 are timed end to
end, and a budget at fraction f is ``cheapest + f * (fp32 - cheapest)`` (measured ms). Then for
every seed and budget each method searches per-layer fp32/int8 on the same problem
(:mod:`hwnas.quant.latency`: same evaluator, HAQ and random the same number of episodes), and
every method's policy gets the same end-to-end hardware check, the same final fine-tune, and
is timed on ``local`` interleaved with the fp32 and the uniform int8 network::

    python bench/quant_latency.py --run R --fractions 0.25 0.5 0.75 --seeds 0 1 2 \\
        --episodes 600 --final-steps 300 --dfq-steps 150 --name quant_latency

Rows: the method's own policy and predicted latency, its validation accuracy before the final
fine-tune, the checked policy, test accuracy after, measured latency and ratios, the exported
file's bytes; to ``bench/results/<name>.jsonl`` as they finish (a rerun skips the cells it
has; budgets are re-measured per process unless ``--reference`` gives them, so otherwise
start a new name rather than mixing), the summary
(mean, std, paired differences against random and greedy) to ``<name>.json``. Methods whose
checked policies are identical share one final fine-tune (same policy, seed and data give the
same network; the row names the method it was shared with); each row is still timed itself.
One process per core: timings must not overlap. To split seeds over two cores, pin the second
process to the other core (``taskset -c 0``; its ``local`` agent times on the cores it may use)
and give it the first process's reference line (``--reference FILE``) so both use the same
budgets; a last run over all seeds with ``--reference`` skips the cells done and writes the
summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS_DIR, write_result  # noqa: E402
from quant_methods import _stats  # noqa: E402

METHODS = ("haq", "dfq", "random", "greedy", "uniform")
ROUNDS = 3


def _settings(args: argparse.Namespace, budget_ms: float, seed: int):
    from hwnas.runs.measure import MeasureSettings
    from hwnas.runs.quantize import QuantizeConfig

    return QuantizeConfig(
        Path(args.run),
        "local",
        latency_ms=budget_ms,
        episodes=args.episodes,
        search_steps=args.search_steps,
        final_steps=args.final_steps,
        dfq_steps=args.dfq_steps,
        train_images=args.train_images,
        val_images=args.val_images,
        seed=seed,
        measure=MeasureSettings(warmup=args.warmup, repeats=args.repeats),
    )


def _interleaved(client, models: dict, settings) -> dict:
    """Median over ``ROUNDS`` interleaved rounds of each model's median (ms)."""
    from hwnas.runs.measure import measure_model

    rounds: dict[str, list[float]] = {k: [] for k in models}
    for _ in range(ROUNDS):
        for key, (data, options) in models.items():
            rounds[key].append(measure_model(client, data, settings, options).stats.median_ms)
    return {k: float(np.median(v)) for k, v in rounds.items()}


def _references(client, graph, profile, settings) -> dict:
    """(bytes, runtime options) of the fp32 and uniform int8 networks (profile's grids)."""
    from hwnas.export.precisions import model_bytes, runtime_options
    from hwnas.quant.calibrate import int8_state

    state = int8_state(graph, w_bits=profile.int8_weight_bits)
    return {
        "fp32": (model_bytes(graph, "fp32", "onnx"), runtime_options("fp32", "onnx")),
        "int8": (model_bytes(graph, "int8", "onnx", state), runtime_options("int8", "onnx")),
    }


def _mixed(graph, policy, data, steps: int, config) -> tuple:
    from hwnas.export.api import network_bytes, runtime_options
    from hwnas.quant.quantize import quantized_net

    names = [layer.name for layer in graph.layers]
    net = quantized_net(graph, dict(zip(names, policy)), data, steps, config)
    return net, (network_bytes(graph, net.to_state(), "onnx"), runtime_options("onnx", True))


def _budgets(args, client, graph, profile, choices, data, refs) -> dict:
    """Measured cheapest policy and fp32; budgets by fraction (ms)."""
    from hwnas.quant.haq_env import min_cost

    predicted, cheapest = min_cost(choices, profile.cost.layer_ms, len(graph.layers))
    config = _settings(args, 1.0, 0)
    _, cheap = _mixed(graph, cheapest, data, 0, config)
    ms = _interleaved(client, {"cheapest": cheap, "fp32": refs["fp32"]}, config.measure)
    budgets = {f: ms["cheapest"] + f * (ms["fp32"] - ms["cheapest"]) for f in args.fractions}
    return {
        "cheapest_predicted_ms": predicted,
        "cheapest_measured_ms": ms["cheapest"],
        "fp32_measured_ms": ms["fp32"],
        "cheapest_int8_layers": sum(not b.is_float for b in cheapest),
        "budgets_ms": {f"{f:g}": b for f, b in budgets.items()},
    }, budgets


def run_cell(
    args, client, shared, method: str, seed: int, fraction: float, budget: float, refs,
    finetuned: dict,
):  # fmt: skip
    """One (seed, budget, method): search, hardware check, final fine-tune, timing, bytes.

    ``finetuned`` maps (seed, checked policy) to (model bytes and options, accuracy, first
    row) and is filled here.
    """
    from hwnas.errors import UserError
    from hwnas.quant.dfq import DFQConfig
    from hwnas.quant.latency import search_latency
    from hwnas.quant.qat import accuracy
    from hwnas.runs.quantize_latency import hardware_check

    row = {"seed": seed, "fraction": fraction, "budget_ms": budget, "method": method}
    config = _settings(args, budget, seed)
    if budget < shared.cheapest_ms:
        row["infeasible"] = f"budget below the predicted cheapest {shared.cheapest_ms:.4f} ms"
        return row
    problem = dataclasses.replace(shared, budget_ms=budget)
    try:
        dfq = DFQConfig(steps=args.dfq_steps, seed=seed)
        found = search_latency(problem, method, args.episodes, seed, dfq_config=dfq)
    except UserError as exc:
        row["infeasible"] = str(exc)
        return row
    row.update(found.to_dict())
    row["details"] = {k: v for k, v in found.details.items() if k not in ("history", "sensitivity")}
    row["own_predicted_ms"] = row.pop("latency_ms")
    row["own_val_accuracy"] = row.pop("val_accuracy")
    policy, checked, used = hardware_check(
        client, problem.graph, problem.cost, problem.choices, list(found.policy),
        problem.data, config, "onnx",
    )  # fmt: skip
    row["checked_int8_layers"] = sum(not b.is_float for b in policy)
    row["checked_predicted_ms"] = problem.latency_ms(policy)
    row["search_policy_measured_ms"] = checked.stats.median_ms
    row["budget_used_ms"] = used
    key = (seed, tuple(policy))
    if key in finetuned:
        mixed, row["accuracy"], shared_with = finetuned[key]
        row["finetune_shared_with"] = shared_with
    else:
        start = time.perf_counter()
        net, mixed = _mixed(problem.graph, policy, problem.data, args.final_steps, config)
        row["finetune_seconds"] = time.perf_counter() - start
        data = problem.data
        row["accuracy"] = {
            "val": accuracy(net, data.val_x, data.val_y),
            "test": accuracy(net, data.test_x, data.test_y),
        }
        finetuned[key] = (mixed, row["accuracy"], f"{method} f={fraction:g}")
    ms = _interleaved(client, {"policy": mixed, **refs}, config.measure)
    row["measured_ms"] = ms["policy"]
    row["fp32_ms"], row["int8_ms"] = ms["fp32"], ms["int8"]
    row["ratio_vs_fp32"] = ms["policy"] / ms["fp32"]
    row["satisfied"] = ms["policy"] <= budget
    row["file_bytes"] = len(mixed[0])
    return row


def summarize(rows: list[dict], methods: list[str], fp32_reference_ms: float) -> dict:
    """Per budget and method: mean/std, and paired test-accuracy differences (points).

    ``satisfied`` counts rows measured within the budget in ms; the machine's speed drifts
    between the budgets' measurement and a row's, so ``satisfied_vs_fp32`` counts rows whose
    latency *relative to fp32 measured in the same rounds* is within the budget's share of the
    reference fp32 (``fp32_reference_ms``, measured with the budgets).
    """
    out: dict = {}
    for fraction in sorted({r["fraction"] for r in rows}):
        entry = {}
        cell = {
            m: {
                r["seed"]: r
                for r in rows
                if r["fraction"] == fraction and r["method"] == m and "infeasible" not in r
            }
            for m in methods
        }
        for m in methods:
            got = cell[m]
            infeasible = [r for r in rows if r["fraction"] == fraction and r["method"] == m]
            if not got:
                if infeasible:  # rows that say so; a method with no row was not run here
                    entry[m] = {"infeasible": [r.get("infeasible") for r in infeasible]}
                continue
            entry[m] = {
                "seeds": sorted(got),
                "test_accuracy": _stats([r["accuracy"]["test"] for r in got.values()]),
                "val_before_finetune": _stats([r["own_val_accuracy"] for r in got.values()]),
                "own_predicted_ms": _stats([r["own_predicted_ms"] for r in got.values()]),
                "measured_ms": _stats([r["measured_ms"] for r in got.values()]),
                "ratio_vs_fp32": _stats([r["ratio_vs_fp32"] for r in got.values()]),
                "satisfied": sum(bool(r["satisfied"]) for r in got.values()),
                "satisfied_vs_fp32": sum(
                    r["ratio_vs_fp32"] <= r["budget_ms"] / fp32_reference_ms for r in got.values()
                ),
                "int8_layers": _stats([r["checked_int8_layers"] for r in got.values()]),
                "file_kb": _stats([r["file_bytes"] / 1000 for r in got.values()]),
                "evaluated_policies": _stats([r["evaluated_policies"] for r in got.values()]),
                "search_seconds": _stats([r["seconds"] for r in got.values()]),
            }
            for base in ("random", "greedy"):
                common = sorted(set(got) & set(cell.get(base, {})))
                if m != base and common:
                    diff = [
                        got[s]["accuracy"]["test"] - cell[base][s]["accuracy"]["test"]
                        for s in common
                    ]
                    entry[m][f"vs_{base}_points"] = {
                        **_stats(diff),
                        "wins": sum(d > 0 for d in diff),
                        "losses": sum(d < 0 for d in diff),
                    }
        budget = next(r["budget_ms"] for r in rows if r["fraction"] == fraction)
        out[f"{fraction:g}"] = {"budget_ms": budget, "methods": entry}
    return out


def _methods(rows: list[dict]) -> list[str]:
    return [m for m in METHODS if any(r["method"] == m for r in rows)]


def resummarize(name: str) -> None:
    """Recompute ``<name>.json``'s summary from ``<name>.jsonl`` (the rest of the file kept)."""
    path = RESULTS_DIR / f"{name}.json"
    result = json.loads(path.read_text())
    rows = [json.loads(line) for line in (RESULTS_DIR / f"{name}.jsonl").read_text().splitlines()]
    figures = result["figures"]
    figures["budgets"] = summarize(rows, _methods(rows), figures["reference"]["fp32_measured_ms"])
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(figures["budgets"], indent=1)[:4000])


def main() -> None:
    from hwnas.devices.connect import open_device
    from hwnas.export.precisions import FORMAT_PRECISIONS
    from hwnas.graph.lower import graph_from_module
    from hwnas.quant.costs import precision_summary
    from hwnas.quant.latency import latency_problem
    from hwnas.quant.qat import torch_threads
    from hwnas.quant.quantize import load_data, offered_choices
    from hwnas.runs.profile import profile_device
    from hwnas.runs.rundir import load_run

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="trained run directory (read only; not for --summarize)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--search-steps", type=int, default=0)
    parser.add_argument("--dfq-steps", type=int, default=150)
    parser.add_argument("--final-steps", type=int, default=300)
    parser.add_argument("--train-images", type=int, default=4096)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--name", default="quant_latency")
    parser.add_argument(
        "--summarize", action="store_true", help="only recompute <name>.json's summary"
    )
    parser.add_argument(
        "--reference",
        help="JSON of an earlier process's reference line (printed first): reuse its budgets "
        "instead of measuring new ones, so two processes (e.g. split by seed) share them",
    )
    args = parser.parse_args()
    if args.summarize:
        resummarize(args.name)
        return
    if args.run is None:
        parser.error("--run is required")
    os.chdir(ROOT)  # the run's data root is relative to the repository
    jsonl = RESULTS_DIR / f"{args.name}.jsonl"
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []
    done = {(r["seed"], round(r["fraction"], 6), r["method"]) for r in rows}
    run = load_run(Path(args.run))
    graph = graph_from_module(run.module, run.input_shape)
    measure = _settings(args, 1.0, 0).measure
    with torch_threads(1), open_device("local") as client:
        start = time.perf_counter()
        profile = profile_device(
            client, "local", graph, "onnx", measure, RESULTS_DIR / f"{args.name}_lut.json",
            precisions=FORMAT_PRECISIONS["onnx"],
        )  # fmt: skip
        profile_seconds = time.perf_counter() - start
        choices, integer = offered_choices(
            profile.cost, len(graph.layers), profile.int8_weight_bits, False
        )
        refs = _references(client, graph, profile, measure)
        data0 = load_data(run.data, args.train_images, args.val_images, 0)
        if args.reference:  # another process's budgets: the rows of both share one set
            reference = json.loads(Path(args.reference).read_text())
            missing = [f for f in args.fractions if f"{f:g}" not in reference["budgets_ms"]]
            if missing:
                parser.error(f"--reference {args.reference} has no budget for {missing}")
            budgets = {f: reference["budgets_ms"][f"{f:g}"] for f in args.fractions}
        else:
            reference, budgets = _budgets(args, client, graph, profile, choices, data0, refs)
        print(json.dumps(reference), flush=True)
        finetuned: dict = {}
        for seed in args.seeds:
            data = (
                data0
                if seed == 0
                else load_data(run.data, args.train_images, args.val_images, seed)
            )
            shared = latency_problem(
                graph,
                profile.cost,
                choices,
                data,
                max(budgets.values()),
                _settings(args, 1.0, seed),
            )  # one evaluator (memo) per seed, shared by the budgets and methods
            for fraction, budget in budgets.items():
                for method in args.methods:
                    if (seed, round(fraction, 6), method) in done:
                        continue
                    row = run_cell(
                        args, client, shared, method, seed, fraction, budget, refs, finetuned
                    )
                    _print_row(row)
                    rows.append(row)
                    with jsonl.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
    figures = {
        "settings": vars(args),
        "device": {"runtime": profile.runtime, "int8_weight_bits": profile.int8_weight_bits},
        "profile_seconds": profile_seconds,
        "precisions": precision_summary(profile.cost, ["fp32", "int8"] if integer else ["fp32"]),
        "network_ms": dict(profile.cost.network_ms),
        "reference": reference,
        "budgets": summarize(rows, _methods(rows), reference["fp32_measured_ms"]),
    }
    write_result(args.name, figures)
    print(json.dumps(figures["budgets"], indent=1)[:4000])


def _print_row(row: dict) -> None:
    head = f"seed {row['seed']} f={row['fraction']:g} {row['method']:8s}"
    if "infeasible" in row:
        print(f"{head} infeasible: {row['infeasible']}", flush=True)
        return
    print(
        f"{head} own {row['own_predicted_ms']:.3f} ms predicted ({row['int8_layers']} int8), "
        f"val before {row['own_val_accuracy']:.2f} %, test after "
        f"{row['accuracy']['test']:.2f} %, measured {row['measured_ms']:.3f} ms "
        f"(budget {row['budget_ms']:.3f}, fp32 {row['fp32_ms']:.3f}, int8 {row['int8_ms']:.3f}),"
        f" file {row['file_bytes'] / 1000:.1f} kB, {row['seconds']:.0f} s search",
        flush=True,
    )


if __name__ == "__main__":
    main()
