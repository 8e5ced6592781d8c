"""Do the methods earn their budget? Methods vs their null-alpha controls vs equal-time random search.

For every budget and seed, each row runs in a fresh subprocess on the same space, LUT, data and
final-training recipe:

* a method (``greedy-admm``, ``dca``, ``darts+penalty``, ``dsnas`` (its hinge),
  ``dsnas+lagrangian`` (DSNAS with ``cost_form = "lagrangian"``), ``proxyless``,
  ``fbnet-gumbel``, ``nao``, ``ista`` on ``darts`` only, ``dso`` on ``dso`` only, and
  ``dso+plain-l1``, DSO-NAS with one L1 weight for every edge, ``latency_aware = false``, the
  ablation of its latency-aware L1): its search,
  then the shared step of :mod:`hwnas.search.finalize` (repair if needed, then fill); the same
  search's architecture without fill is trained too and reported as ``<method>:nofill``;
* its **null-alpha control** (``<method>:null``): the same derivation and the same shared step
  from *untrained* architecture parameters (Greedy-ADMM: ``train_alpha=False``, the beta/dual
  steps still run; the softmax methods: derive from the initial ``1e-3 N(0, 1)`` alpha, which
  every softmax method draws alike from the seed, so ``dca:null`` is the control of all of them,
  ``NULL_ROW``); ISTA-NAS: the support recovered from the untrained initial b, budgets
  enforced as in its search; DSO-NAS: the full network at the initial lambda (1 plus
  ``1e-3 N(0, 1)`` to break ties), so the shared repair alone prunes it to the budget (the
  edges that relieve most cost per unit of lambda go first: latency-greedy pruning without the
  sparse search); NAO: ``optimize=False``, the best of the initial random pool
  under the same supernet training, without the embedding optimisation;
* for ``dsnas``, also the **inherited** network (DSNAS' "no retraining"): the delivered
  architecture with the search-trained supernet's weights (BN recalibrated), its test accuracy
  as is and after the same final training as the from-scratch one; only when the final
  training runs at the search's width and resolution (else it is recorded as skipped);
* ``random``: feasible samples from the same LUT pushed to the budget, each trained briefly,
  for the **same wall-clock** as the slowest method row of that budget and seed;
* ``uniform``: the MobileNetV2-like baseline (no search).

Reported per run: the method's own architecture (cost / budget per constraint, feasible or
not), the repair and fill steps, the delivered cost, search seconds, peak RSS, and the test
accuracy after the same final training (``--final-steps`` SGD steps at ``--final-width`` on the
final images at ``--final-resolution``; the search recipe's final-training settings otherwise;
the whole official train split by default, 10 % held out); trajectories of the constraint (disparity, expected cost, lambda) every 10 steps.
The summary gives mean +- std per row and budget, the own-derivation hit rate in [0.9 T, T],
and paired (same budget and seed) accuracy differences against random and against the control.

Runs are appended to ``bench/results/<name>.jsonl`` as they finish and skipped when the
benchmark is started again with the same ``--name`` (resumable).

    python bench/search_methods.py --space fbnet --device pi4 --fractions 0.15 0.4 0.7 \\
        --seeds 0 1 2 3 4 --jobs 2 --name search_methods_fbnet
    python bench/search_methods.py --space ib-channel --metrics latency_ms flops params \\
        --fractions 0.4 --recipe search/fga_ib_channel.toml --name search_methods_ib3

Each run records the machine that trained it: the same architecture, seed and final training
give different accuracies on different CPUs (their kernels round differently; up to 2.3 points
between an Intel Xeon and an AMD EPYC), so the rows of one cell should train on one machine.
``--retrain`` trains the delivered architectures of the journal runs that ``--rows`` (name
``<row>:nofill`` rows explicitly), ``--fractions`` and ``--seeds`` select again on this machine,
without searching, into ``<name>_retrained.jsonl``, and summarizes the journal with those
accuracies in place (``<name>_retrained.json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS_DIR, budgets_at, write_result

ROWS = (
    "greedy-admm",
    "greedy-admm:null",
    "dca",
    "dca:null",
    "dsnas",
    "dsnas+lagrangian",
    "proxyless",
    "fbnet-gumbel",
    "ista",
    "ista:null",
    "dso",
    "dso:null",
    "dso+plain-l1",
    "nao",
    "nao:null",
    "random",
    "uniform",
)
# random gets the slowest of these
TIMED = (
    "greedy-admm", "dca", "darts+penalty", "dsnas", "dsnas+lagrangian", "proxyless",
    "fbnet-gumbel", "ista", "dso", "dso+plain-l1", "nao",
)  # fmt: skip
NULL_ROW = {  # rows whose null-alpha control is another row's (the same initial alpha)
    "darts+penalty": "dca:null",
    "dsnas": "dca:null",
    "dsnas+lagrangian": "dca:null",
    "proxyless": "dca:null",
    "fbnet-gumbel": "dca:null",
    "dso+plain-l1": "dso:null",
}
VARIANT_ROWS = {  # rows that run a registry method with settings of their own
    "darts+penalty": ("darts", {}),  # penalty_weight: --penalty-weight
    "dsnas+lagrangian": ("dsnas", {"cost_form": "lagrangian"}),
    "dso+plain-l1": ("dso", {"latency_aware": False}),
}


def shipped_settings(method: str, space: str) -> dict:
    """The ``[methods.<method>]`` section of the shipped recipe that runs ``method`` on
    ``space`` (``search/*.toml``; the first by file name if several do), else nothing: the
    settings a user of that recipe gets, scaled to this search length (e.g. DSNAS' arch_lr)."""
    from hwnas.paths import recipes_dir
    from hwnas.search.config import read_recipe

    for path in sorted(recipes_dir().glob("*.toml")):
        recipe = read_recipe(str(path))
        run = recipe.get("run", {})
        if run.get("method") == method and run.get("space") == space:
            return dict(recipe.get("methods", {}).get(method, {}))
    return {}


def row_method(row: str, args: argparse.Namespace) -> tuple[str, dict, bool]:
    """(registry method, settings, null control) of a benchmark row. Settings, later ones
    winning: the method's shipped recipe on this space (:func:`shipped_settings`), then (in the
    child) ``--recipe``'s section for the method, then ``--settings`` and the row's own."""
    name, _, variant = row.partition(":")
    method, own = VARIANT_ROWS.get(name, (name, {}))
    settings = {**own, **json.loads(args.settings).get(name, {})}
    if name == "darts+penalty":
        settings.setdefault("penalty_weight", args.penalty_weight)
    if name == "random" and args.random_seconds is not None:
        settings["seconds"] = args.random_seconds
    null = variant == "null"
    if null and method == "greedy-admm":
        settings["train_alpha"] = False
    if null and method == "nao":
        settings["optimize"] = False
    return method, settings, null


def _setup(args: argparse.Namespace, row: str) -> tuple:
    """(method, settings, null, config, problem, final data) of ``row`` at ``args.fraction``
    and ``args.seed``: the run a child searches and the data its final training uses."""
    import dataclasses

    from hwnas.data import DataConfig, load_dataset
    from hwnas.search.config import read_recipe, resolve_config
    from hwnas.search.pipeline import build_problem

    method, settings, null = row_method(row, args)
    flags = {"device": args.device, "space": args.space, "method": method, "seed": args.seed}
    config = resolve_config(read_recipe(args.recipe) if args.recipe else None, flags)
    data = dataclasses.replace(
        config.data,
        final_train_limit=args.final_images,
        search_train_limit=args.search_images or config.data.search_train_limit,
    )
    search = config.search if args.steps is None else dataclasses.replace(
        config.search, steps=args.steps, warmup_steps=args.steps // 5
    )  # fmt: skip
    settings = {**shipped_settings(method, args.space), **config.method_settings, **settings}
    config = dataclasses.replace(config, data=data, search=search, method_settings=settings)
    unconstrained, _, _ = build_problem(config)
    final = load_dataset(
        DataConfig(
            name=data.dataset, root=data.root, resolution=args.final_resolution, seed=config.seed,
            train_limit=args.final_images, val_fraction=data.val_fraction,
        )
    )  # fmt: skip
    problem = budgets_at(unconstrained, args.metrics, args.fraction)
    return method, settings, null, config, problem, final


def _train_final(args: argparse.Namespace, config, space, final, arch) -> tuple[float, float]:
    """(validation, test) accuracy of ``arch`` after the benchmark's final training."""
    import torch

    from hwnas.search.pipeline import final_train_config
    from hwnas.search.trainer import evaluate, train_model

    torch.manual_seed(config.seed)
    net = space.build_net(arch, width=args.final_width, seed=config.seed)
    train_model(net, *final.train.tensors, final_train_config(config, args.final_steps))
    return evaluate(net, *final.val.tensors), evaluate(net, *final.test.tensors)


def child(args: argparse.Namespace) -> list[dict]:
    """One (row, budget, seed) search; returns the figures of its delivered architecture(s)."""
    import resource

    import numpy as np
    import torch

    from bench._common import machine
    from hwnas.search.api import Hooks, SearchResult, get_method, method_config
    from hwnas.search.finalize import finalize
    from hwnas.search.pipeline import final_train_config
    from hwnas.search.trainer import evaluate, train_model

    torch.set_num_threads(1)
    method, settings, null, config, problem, final = _setup(args, args.child)
    limits = {c.metric: c.limit for c in problem.constraints}
    spec = get_method(method)
    t0 = time.perf_counter()
    supernet = None
    if null and method == "ista":  # the support of the untrained initial b
        from hwnas.search.ista import derive_untrained

        result = derive_untrained(problem, method_config(spec, settings))
    elif null and method == "dso":  # untrained lambda: every edge kept, at lambda_init
        lam = method_config(spec, settings).lambda_init
        noise = np.random.default_rng(config.seed).standard_normal(problem.space.alpha_shape)
        everything = problem.space.arch_from_vector(np.ones(problem.space.alpha_shape))
        result = SearchResult(everything, values=lam + 1e-3 * noise)
    elif null and method not in ("greedy-admm", "nao"):  # softmax methods: the initial alpha
        from hwnas.search.bilevel import derive_arch

        noise = np.random.default_rng(config.seed).standard_normal(problem.space.alpha_shape)
        probs = torch.softmax(torch.from_numpy(1e-3 * noise), dim=-1).numpy()
        result = SearchResult(derive_arch(problem, probs), values=probs)
    elif method == "dsnas":  # keep the search-trained supernet: DSNAS does not retrain
        from hwnas.search.dsnas import search_with_supernet

        result, supernet = search_with_supernet(problem, method_config(spec, settings), Hooks())
    else:
        result = spec.run(problem, method_config(spec, settings), Hooks())
    seconds = time.perf_counter() - t0
    space, train = problem.space, final_train_config(config, args.final_steps)
    search_resolution = config.data.search_resolution or config.resolution
    same_geometry = (args.final_width, args.final_resolution) == (
        space.config.search_width,
        search_resolution,
    )

    def inherited(arch) -> dict:
        """The search-trained child of ``arch``: test accuracy as is, then after the same final
        training the from-scratch network gets."""
        from hwnas.search.dsnas import inherited_child

        if not same_geometry:
            return {"skipped": f"final training at width {args.final_width} and "
                    f"{args.final_resolution} px, search at {space.config.search_width} and "
                    f"{search_resolution} px"}  # fmt: skip
        torch.manual_seed(config.seed)
        x, y = final.train.tensors
        net = inherited_child(supernet, arch, x[:1000])
        untrained = evaluate(net, *final.test.tensors)
        train_model(net, x, y, train)
        return {"test_accuracy_untrained": untrained, "val_accuracy": evaluate(net, *final.val.tensors),
                "test_accuracy": evaluate(net, *final.test.tensors)}  # fmt: skip

    keys = ("step", "disparity_", "expected_", "sampled_", "lambda_", "violation_", "gap_", "ce")
    keys += ("tau", "fixed", "objective")
    common = {
        "method": method,
        "settings": settings,
        "fraction": args.fraction,
        "seed": args.seed,
        "limits": limits,
        "search_seconds": seconds,
        "random_candidates": result.info.get("candidates") if method == "random" else None,
        "search_bounds": result.info.get("search_bounds"),
        "expected_costs": result.info.get("expected_costs"),
        "convergence": result.info.get("convergence"),
        "lookup_seconds": result.info.get("lookup_seconds"),  # DCA: graph searches of this run
        "machine": machine(),  # final training's numerics differ between CPUs (README)
    }
    out = []
    variants = [(args.child, True)]
    if not null and result.values is not None:  # the same search without fill
        variants.append((f"{args.child}:nofill", False))
    accuracy: dict = {}
    for row, fill in variants:
        done = finalize(problem, result.arch, result.values, fill)
        if done.arch not in accuracy:
            accuracy[done.arch] = _train_final(args, config, space, final, done.arch)
        val, test = accuracy[done.arch]
        out.append({"row": row, **common, "derivation": done.record, "val_accuracy": val,
                    "test_accuracy": test})  # fmt: skip
        if supernet is not None:
            out[-1]["inherited"] = inherited(done.arch)
    out[0]["trajectory"] = [
        {k: v for k, v in r.items() if k.startswith(keys)} for r in result.history[::10]
    ]
    for run in out:
        run["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _stat(values: list[float]) -> dict | None:
    import numpy as np

    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values)}


def _paired(runs: list[dict], row: str, other: str) -> dict | None:
    """Accuracy of ``row`` minus ``other`` on the same budget and seed (summary figures)."""
    return _differences(_pair_diffs(runs, row, other))


def _pair_diffs(runs: list[dict], row: str, other: str) -> list[float]:
    """Accuracy of ``row`` minus ``other`` for every budget and seed that has both."""
    by = {(r["row"], r["fraction"], r["seed"]): r["test_accuracy"] for r in runs}
    return [
        by[(row, f, s)] - by[(other, f, s)]
        for (name, f, s) in by
        if name == row and (other, f, s) in by
    ]


def _read_journal(path: Path) -> list[dict]:
    """The runs of a JSON-lines journal (none if it does not exist yet)."""
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _differences(diffs: list[float]) -> dict | None:
    """Mean +- std of paired differences, with how many are positive (wins) and negative."""
    if not diffs:
        return None
    return {**_stat(diffs), "wins": sum(d > 0 for d in diffs), "losses": sum(d < 0 for d in diffs)}


def summarize(runs: list[dict]) -> dict:
    """Per row and budget: own-derivation figures, delivered cost, accuracy; paired deltas."""
    out: dict = {}
    for row in dict.fromkeys(r["row"] for r in runs):
        mine = [r for r in runs if r["row"] == row]
        per_budget = {}
        for fraction in sorted({r["fraction"] for r in mine}):
            rs = [r for r in mine if r["fraction"] == fraction]
            own = [max(r["derivation"]["own"]["of_budget"].values()) for r in rs]
            delivered = [max(r["derivation"]["fill"]["of_budget"].values()) for r in rs]
            per_budget[str(fraction)] = {
                "own_of_budget": _stat(own),
                "own_feasible": sum(r["derivation"]["own"]["feasible"] for r in rs),
                "own_in_band": sum(0.9 <= v <= 1 + 1e-9 for v in own),
                "repair_steps": _stat([len(r["derivation"]["repair"]["steps"]) for r in rs]),
                "fill_steps": _stat([len(r["derivation"]["fill"]["steps"]) for r in rs]),
                "delivered_of_budget": _stat(delivered),
                "test_accuracy": _stat([r["test_accuracy"] for r in rs]),
                "inherited_test_accuracy": _stat(
                    [
                        r["inherited"]["test_accuracy"]
                        for r in rs
                        if "test_accuracy" in (r.get("inherited") or {})
                    ]
                ),
                "search_seconds": _stat([r["search_seconds"] for r in rs]),
                "peak_rss_mb": _stat([r["peak_rss_mb"] for r in rs]),
                **_comparisons([r for r in runs if r["fraction"] == fraction], row),
            }
        out[row] = {"budgets": per_budget, **_comparisons(runs, row)}
    return out


def _comparisons(runs: list[dict], row: str) -> dict:
    """Paired accuracy differences of ``row`` against random, its control and its no-fill
    variant over ``runs`` (None where they do not apply)."""
    name = row.partition(":")[0]
    plain = ":" not in row
    return {
        "vs_random": _paired(runs, row, "random") if row != "random" else None,
        "vs_null": _paired(runs, row, NULL_ROW.get(name, f"{name}:null")) if plain else None,
        "vs_nofill": _paired(runs, row, f"{name}:nofill") if plain else None,
    }


def markdown(summary: dict) -> str:
    """The summary as one Markdown table per budget: own cost, hit rate, accuracy, paired
    differences (points, wins/losses) against random and against the row's control."""

    def pm(stat: dict | None, scale: float = 1.0, digits: int = 2) -> str:
        if not stat:
            return ""
        return f"{stat['mean'] * scale:.{digits}f} +- {stat['std'] * scale:.{digits}f}"

    def paired(stat: dict | None) -> str:
        return "" if not stat else f"{100 * stat['mean']:+.2f} ({stat['wins']}/{stat['losses']})"

    fractions = sorted({f for row in summary.values() for f in row["budgets"]}, key=float)
    out = []
    for f in fractions:
        out += [f"T = {f} of the range", "",
                "| row | seeds | own cost / T | own in [0.9 T, T] | delivered / T | test % "
                "| vs random (w/l) | vs control (w/l) | search s |",
                "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for row, figures in summary.items():
            b = figures["budgets"].get(f)
            if not b:
                continue
            n = b["test_accuracy"]["n"]
            out.append(
                f"| {row} | {n} | {pm(b['own_of_budget'])} | {b['own_in_band']}/{n} "
                f"| {pm(b['delivered_of_budget'])} | {pm(b['test_accuracy'], 100)} "
                f"| {paired(b.get('vs_random'))} | {paired(b.get('vs_null'))} "
                f"| {b['search_seconds']['mean']:.0f} |"
            )
        out.append("")
    return "\n".join(out)


def plot_trajectories(runs: list[dict], path: Path) -> None:
    """Per searched row: the own architecture's disparity (Greedy-ADMM), the expected cost's
    violation of K' and lambda (DCA) over the steps, one line per budget and seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("disparity_", "(cost - T) / T of the arch alpha encodes"),
        ("violation_", "(E[cost] - K') / K' (DCA)"),
        ("lambda_", "lambda (DCA)"),
    ]
    rows = [r for r in runs if r.get("trajectory")]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5))
    for ax, (prefix, title) in zip(axes, panels):
        for r in rows:
            keys = sorted({k for t in r["trajectory"] for k in t if k.startswith(prefix)})
            for k in keys:
                points = [(t["step"], t[k]) for t in r["trajectory"] if k in t]
                if points:
                    label = f"{r['row']} T={r['fraction']} s{r['seed']} {k[len(prefix) :]}"
                    ax.plot(*zip(*points), linewidth=0.8, label=label)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step")
    _, labels = axes[0].get_legend_handles_labels()
    if len(labels) <= 20 and labels:
        axes[0].legend(fontsize=5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _searches(row: str, args: argparse.Namespace) -> bool:
    """Whether the row's method works on ``args.space`` (ista: darts only; dso: dso only;
    uniform: fbnet and ib-channel); says so if not."""
    from hwnas.search.api import get_method
    from hwnas.spaces.base import space_class

    relaxation = space_class(args.space).relaxation
    method = row_method(row, args)[0]
    if relaxation in get_method(method).relaxations:
        return True
    print(f"row {row} left out: {method} does not search space {args.space}", flush=True)
    return False


def retrain(args: argparse.Namespace, runs: list[dict], name: str) -> None:
    """Train again, on this machine, the delivered architecture of every journal run of
    ``--rows`` x ``--fractions`` x ``--seeds`` (same final training, same seed), appending to
    ``<name>_retrained.jsonl`` (resumable); then summarize the journal with the retrained
    accuracies in place. Rows of one cell trained on different CPUs are paired across
    numerics that differ (README): this puts a cell on one machine without searching again."""
    import torch

    from bench._common import machine

    torch.set_num_threads(1)
    out = RESULTS_DIR / f"{name}_retrained.jsonl"
    kept = _read_journal(out)
    done = {(r["row"], r["fraction"], r["seed"]) for r in kept}
    trained: dict = {}
    for run in runs:
        key = (run["row"], run["fraction"], run["seed"])
        if run["row"] not in args.rows or run["fraction"] not in args.fractions:
            continue
        if run["seed"] not in args.seeds or key in done:
            continue
        args.fraction, args.seed = run["fraction"], run["seed"]
        _, _, _, config, problem, final = _setup(args, run["row"])
        text = run["derivation"]["fill"]["arch"]
        if (key[1:], text) not in trained:  # rows of a cell that deliver the same network
            arch = problem.space.parse_arch(text)
            trained[key[1:], text] = _train_final(args, config, problem.space, final, arch)
        val, test = trained[key[1:], text]
        record = {"row": run["row"], "fraction": run["fraction"], "seed": run["seed"],
                  "arch": text, "journal_test_accuracy": run["test_accuracy"],
                  "val_accuracy": val, "test_accuracy": test, "machine": machine()}  # fmt: skip
        with out.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        kept.append(record)
        done.add(key)
        print(f"T={run['fraction']} seed {run['seed']} {run['row']:20s} journal "
              f"{run['test_accuracy']:.4f} retrained {test:.4f}", flush=True)  # fmt: skip
    again = {(r["row"], r["fraction"], r["seed"]): r for r in kept}
    changed = [r["test_accuracy"] - r["journal_test_accuracy"] for r in kept]
    merged = [
        {**run, "test_accuracy": again[key]["test_accuracy"]} if key in again else run
        for run in runs
        for key in [(run["row"], run["fraction"], run["seed"])]
    ]
    figures = {
        "journal": f"{name}.jsonl", "retrained": len(kept),
        "retrained_minus_journal": _stat(changed),
        "identical": sum(abs(d) < 1e-12 for d in changed),
        "summary": summarize(merged),
    }  # fmt: skip
    print(json.dumps({k: v for k, v in figures.items() if k != "summary"}, indent=1))
    print(markdown(summarize([r for r in merged if r["fraction"] in args.fractions])))
    write_result(f"{name}_retrained", figures, " ".join(["python", *sys.argv]))


def fill_gain(names: list[str]) -> dict:
    """Paired accuracy gain of fill over every run of the journals ``names`` that has a
    ``<row>:nofill`` twin (same journal, budget and seed): the figure behind the default of
    ``RunConfig.fill``."""
    diffs: dict[str, list[float]] = {}
    for name in names:
        runs = _read_journal(RESULTS_DIR / f"{name}.jsonl")
        for row, f in dict.fromkeys((r["row"], r["fraction"]) for r in runs if ":" not in r["row"]):
            budget = [r for r in runs if r["fraction"] == f]
            if pairs := _pair_diffs(budget, row, f"{row}:nofill"):
                diffs[f"{name} {row} {f}"] = pairs
    pooled = [d for ds in diffs.values() for d in ds]
    return {
        "journals": names,
        "pairs": _differences(pooled),
        "by_row": {k: _differences(v) for k, v in diffs.items()},
    }


def _run_child(
    argv: list[str], row: str, fraction: float, seed: int, extra: list[str]
) -> list[dict]:
    with tempfile.NamedTemporaryFile(suffix=".json") as handle:
        command = [sys.executable, __file__, *argv, "--child", row, "--fraction", str(fraction),
                   "--seed", str(seed), "--result", handle.name, *extra]  # fmt: skip
        subprocess.run(command, check=True)
        return json.loads(Path(handle.name).read_text(encoding="utf-8"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="fbnet")
    parser.add_argument("--device", default="pi4")
    parser.add_argument("--metrics", nargs="+", default=["latency_ms"])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.15, 0.4, 0.7])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rows", nargs="+", default=list(ROWS))
    parser.add_argument("--recipe", default=None, help="search recipe giving the run settings")
    parser.add_argument("--steps", type=int, default=None, help="search steps (default: recipe)")
    parser.add_argument("--search-images", type=int, default=None)
    parser.add_argument("--final-images", type=int, default=None, help="None: the full set")
    parser.add_argument("--final-steps", type=int, default=400)
    parser.add_argument("--final-width", type=float, default=0.25)
    parser.add_argument("--final-resolution", type=int, default=16)
    parser.add_argument("--penalty-weight", type=float, default=1.0)
    parser.add_argument("--settings", default="{}", help='JSON {"row": {setting: value}}')
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (one core each)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--random-seconds", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument(
        "--markdown", action="store_true", help="print the journal's tables and exit (no runs)"
    )
    parser.add_argument(
        "--fill-report",
        nargs="+",
        metavar="NAME",
        help="pool fill against no fill over these journals (results/fill_gain.json), exit",
    )
    parser.add_argument(
        "--retrain",
        action="store_true",
        help="train the journal's delivered architectures again on this machine (no search)",
    )
    args = parser.parse_args()
    if args.child:
        Path(args.result).write_text(json.dumps(child(args)), encoding="utf-8")
        return
    if args.fill_report:
        figures = fill_gain(args.fill_report)
        pairs = figures["pairs"]
        print(f"fill - no fill over {pairs['n']} pairs: {100 * pairs['mean']:+.2f} +- "
              f"{100 * pairs['std']:.2f} points ({pairs['wins']} wins, "
              f"{pairs['losses']} losses)")  # fmt: skip
        write_result("fill_gain", figures, " ".join(["python", *sys.argv]))
        return
    name = args.name or f"search_methods_{args.space}"
    journal = RESULTS_DIR / f"{name}.jsonl"
    runs = _read_journal(journal)
    if args.markdown:
        if not journal.exists():
            parser.error(f"no journal {journal}")
        print(markdown(summarize([r for r in runs if r["seed"] in args.seeds])))
        return
    if args.retrain:
        retrain(args, runs, name)
        return
    args.rows = [r for r in args.rows if _searches(r, args)]
    done = {(r["row"], r["fraction"], r["seed"]) for r in runs}
    argv = [a for a in sys.argv[1:]]

    def one(row: str, fraction: float, seed: int, extra: list[str]) -> list[dict]:
        out = _run_child(argv, row, fraction, seed, extra)
        with journal.open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(run) + "\n" for run in out)
        for run in out:
            own = run["derivation"]["own"]
            print(f"T={fraction} seed {seed} {run['row']:20s} own "
                  f"{max(own['of_budget'].values()):.3f} ({'ok' if own['feasible'] else 'over'}) "
                  f"delivered {max(run['derivation']['fill']['of_budget'].values()):.3f} "
                  f"acc {run['test_accuracy']:.4f} search {run['search_seconds']:.0f} s",
                  flush=True)  # fmt: skip
        return out

    timed = [r for r in args.rows if r in TIMED]
    rest = [r for r in args.rows if r not in TIMED and r != "random"]
    cells = [(f, s) for s in args.seeds for f in args.fractions]  # every budget of a seed first
    queue = [(r, f, s) for f, s in cells for r in timed + rest if (r, f, s) not in done]
    waiting = {(f, s) for f, s in cells if "random" in args.rows and ("random", f, s) not in done}

    def random_ready() -> list[tuple]:
        """Random rows whose cell's timed rows are all in: they get the slowest one's seconds."""
        ready = []
        for f, s in sorted(waiting):
            mine = [r for r in runs if r["row"] in timed and (r["fraction"], r["seed"]) == (f, s)]
            if {r["row"] for r in mine} >= set(timed):
                seconds = max((r["search_seconds"] for r in mine), default=None)
                extra = ["--random-seconds", str(seconds)] if seconds else []
                ready.append(("random", f, s, extra))
                waiting.discard((f, s))
        return ready

    # Two kinds of work share the pool: method rows in cell order, and each cell's random row
    # as soon as that cell's timed rows are in (so no core idles while a random row runs).
    with ThreadPoolExecutor(args.jobs) as pool:
        running: set = set()
        ready: list[tuple] = []
        while True:
            ready += random_ready()
            while len(running) < args.jobs and (ready or queue):
                r, f, s, extra = ready.pop(0) if ready else (*queue.pop(0), [])
                running.add(pool.submit(one, r, f, s, extra))
            if not running:
                break  # all done, or a cell whose timed rows failed (its random row waits)
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                runs += future.result()
    figures = {
        "space": args.space, "device": args.device, "metrics": args.metrics,
        "fractions_of_range": args.fractions, "seeds": args.seeds, "rows": args.rows,
        "recipe": args.recipe, "search_steps": args.steps, "final_images": args.final_images,
        "final_steps": args.final_steps, "final_width": args.final_width,
        "summary": summarize(runs), "runs": [{k: v for k, v in r.items() if k != "trajectory"}
                                              for r in runs],
    }  # fmt: skip
    print(json.dumps(figures["summary"], indent=1))
    plot_trajectories(runs, RESULTS_DIR / f"{name}_trajectories.png")
    write_result(name, figures, " ".join(["python", *sys.argv]))


if __name__ == "__main__":
    main()
