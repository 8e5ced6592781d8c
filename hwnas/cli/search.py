"""``hwnas search``: constrained architecture search, final training, ONNX export, verification.

The search prices architectures with the target device's LUT (``--device``: the user's LUT if
built, else the shipped reference LUT) and never talks to the device; ``--verify`` measures the
exported model on a device with an agent (``--verify-device``, default the target device).
Settings come from built-in defaults, then ``--recipe``, then the flags. Ctrl-C leaves
checkpoints; ``--resume DIR`` continues.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from hwnas.cli._common import add_json_flag, emit
from hwnas.errors import UserError

CONFIG_FLAGS = (
    "device",
    "space",
    "method",
    "latency_ms",
    "flops_m",
    "params_m",
    "dataset",
    "data_root",
    "epochs",
    "seed",
    "verify_device",
    "threads",
    "fill",
)
"""Flags that set the run's configuration (over the recipe's values)."""
RESUME_FLAGS = ("recipe", "out", *CONFIG_FLAGS)
"""Flags a ``--resume`` must not get: the run keeps the settings it started with."""


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "search",
        help="search an architecture under budgets, retrain it, export it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", help="target device whose LUT prices latency (default pi4)")
    p.add_argument("--space", help="search space (default fbnet; a wrong name lists them)")
    p.add_argument(
        "--method",
        help="search method (default greedy-admm; dca on darts; dso on dso; a wrong name lists them)",
    )
    p.add_argument("--latency-ms", type=float, help="latency budget on the device (ms)")
    p.add_argument("--flops-m", type=float, help="FLOPs budget (millions of multiply-accumulates)")
    p.add_argument("--params-m", type=float, help="parameter budget (millions)")
    p.add_argument("--dataset", help="dataset name (default fashion-mnist)")
    p.add_argument(
        "--data-root", help="folder holding the dataset's files (CIFAR batches, idx, image folders)"
    )
    p.add_argument("--epochs", type=float, help="epochs of the final training (default 2)")
    p.add_argument("--seed", type=int, help="seed of everything (default 0)")
    p.add_argument("--recipe", help="TOML recipe (search/<name>.toml) giving defaults")
    p.add_argument("--out", help="run directory to create (default hwnas-runs/search-<time>)")
    p.add_argument("--verify", action="store_true", help="measure model.onnx on a device")
    p.add_argument("--verify-device", help="device for --verify (default the target device)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch threads (default: every core; 1 is faster on a busy, shared machine)",
    )
    p.add_argument(
        "--fill",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="after the method (and repair), spend the budget left on the ops or channels the "
        "method prefers (default: on, the benchmarked better choice; the report shows the "
        "method's own architecture, what repair changed and what fill changed)",
    )
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted run")
    add_json_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from hwnas.runs.search import run_search
    from hwnas.search.config import config_from_dict, read_recipe, resolve_config
    from hwnas.search.rundir import RunDir

    if args.resume:
        given = [f"--{f.replace('_', '-')}" for f in RESUME_FLAGS if getattr(args, f) is not None]
        if given:
            raise UserError(f"--resume takes the run's own settings; drop {', '.join(given)}")
        out = Path(args.resume)
        config = config_from_dict(
            RunDir(out).read_json("config.json", "hwnas-search-config")["config"]
        )
        if args.verify and not config.verify:
            raise UserError("--verify must be given when the run starts (it is in config.json)")
    else:
        recipe = read_recipe(args.recipe) if args.recipe else None
        flags = {k: getattr(args, k) for k in CONFIG_FLAGS}
        flags["verify"] = args.verify or None
        config = resolve_config(recipe, flags)
        out = Path(args.out or f"hwnas-runs/search-{time.strftime('%Y%m%d-%H%M%S')}")
    bars = _Bars()
    try:
        with _GracefulStop() as stop:
            report = run_search(
                config,
                out,
                progress=bars.update,
                resume=bool(args.resume),
                stop_requested=stop.requested,
            )
    except KeyboardInterrupt:
        bars.close()
        print(f"hwnas: interrupted; continue with: hwnas search --resume {out}", file=sys.stderr)
        return 130
    bars.close()
    if report.get("role") == "follower":  # torchrun rank > 0: rank 0 reports
        return 0
    emit({"out": str(out), **report}, args.json, _render)
    return 0


class _GracefulStop:
    """First Ctrl-C: finish the current step, checkpoint, stop. Second Ctrl-C: stop at once
    (the last periodic checkpoint is kept)."""

    def __enter__(self) -> _GracefulStop:
        self._requested = False
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self._requested:
            raise KeyboardInterrupt
        self._requested = True
        print("\nhwnas: stopping after this step (Ctrl-C again to abort now)", file=sys.stderr)

    def requested(self) -> bool:
        return self._requested

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


class _Bars:
    """One progress bar per stage (search, final training) on stderr."""

    def __init__(self) -> None:
        self.stage, self.bar = "", None

    def update(self, stage: str, done: int, total: int, status: dict) -> None:
        from hwnas.progress import progress_bar

        if stage != self.stage:
            self.close()
            self.stage, self.bar = stage, progress_bar(total, label=stage, done=done - 1)
        self.bar.set_postfix_str(" ".join(f"{k} {v:.3g}" for k, v in status.items()), False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def derivation_lines(d: dict, method: str) -> list[str]:
    """How the delivered architecture came from the method's own (report ``derivation``)."""

    def ratios(stage: dict) -> str:
        return ", ".join(f"{m} {v:.3f}" for m, v in stage["of_budget"].items())

    own = d["own"]
    state = "feasible" if own["feasible"] else "VIOLATES a budget"
    lines = [f"  {method}'s own architecture: {ratios(own)} of budget ({state})"]
    if d["repair"]["needed"]:
        lines.append(
            f"  repaired by hwnas in {len(d['repair']['steps'])} step(s): {ratios(d['repair'])}"
        )
    fill = d["fill"]
    if not fill["enabled"]:
        lines.append("  fill: off")
    elif not fill["applies"]:
        lines.append(f"  fill: not applied ({method} gives no preferences)")
    else:
        lines.append(f"  fill: {len(fill['steps'])} change(s) -> {ratios(fill)} of budget")
    return lines


def _render(r: dict) -> str:
    lines = [f"{r['space']} / {r['method']} on {r['device']}: {r['arch_text']}"]
    for c in r["constraints"]:
        measured = f", measured {c['measured']:.4g}" if c["measured"] is not None else ""
        lines.append(
            f"  {c['metric']}: {c['predicted']:.6g} <= {c['limit']:.6g} "
            f"({'ok' if c['satisfied'] else 'VIOLATED'}){measured}"
        )
    lines.extend(derivation_lines(r["derivation"], r["method"]))
    acc = r["accuracy"]
    lines.append(
        f"  accuracy: val {acc['val']:.4f}, test {acc['test']:.4f}; params "
        f"{r['params'] / 1e6:.3f} M, FLOPs {r['flops'] / 1e6:.2f} M MACs"
    )
    if r["latency_ms"] is not None:
        lines.append(f"  predicted latency {r['latency_ms']:.3f} ms ({r['latency_source']})")
    if r.get("verify"):
        v = r["verify"]
        lines.append(
            f"  measured on {v['device']}: median {v['median_ms']:.3f} ms "
            f"(p10 {v['p10_ms']:.3f}, p90 {v['p90_ms']:.3f})"
        )
    lines.append(
        f"  ONNX max |diff| vs PyTorch {r['onnx']['max_abs_diff']:.2g}; search "
        f"{r['search_seconds']:.0f} s, total {r['total_seconds']:.0f} s"
    )
    lines.append(f"  run directory: {r['out']}")
    return "\n".join(lines)
