"""The report of a search run: evaluation, ONNX export and parity, verification, plots.

``report.json`` (DESIGN.md) holds the space, method and device, the architecture, one entry per
constraint ``{metric, limit, predicted, measured, satisfied}``, val/test accuracy, params,
FLOPs, the predicted latency, the ONNX parity check, the optional measurement, the budgets spent
and notes on what the numbers mean. The pipeline adds the seconds of each stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

from hwnas.search.api import SearchProblem
from hwnas.search.config import RunConfig
from hwnas.search.rundir import RunDir

PARITY_TOLERANCE = 1e-3
VerifyONNX = Optional[Callable[[bytes, Optional[float]], dict]]


def finish(
    config, problem, arch, model, splits, rundir: RunDir, predictor, verify_onnx: VerifyONNX = None
) -> dict:
    """Evaluate, export, check, verify: everything of ``report.json`` but the seconds.

    ``verify_onnx(onnx_bytes, predicted_ms) -> dict`` measures the exported model on a device for
    ``--verify``; the run layer (:mod:`hwnas.runs.search`) makes it, the search never opens one.
    """
    from hwnas.blocks.export import check_onnx_parity, export_onnx
    from hwnas.search.trainer import evaluate

    space = problem.space
    model.eval()
    accuracy = {
        "val": evaluate(model, *splits.val.tensors),
        "test": evaluate(model, *splits.test.tensors),
    }
    shape = (1, 3, config.resolution, config.resolution)
    onnx_bytes = export_onnx(model, shape, rundir.path / "model.onnx")
    diff = check_onnx_parity(model, onnx_bytes, shape, seed=config.seed)
    if not diff <= PARITY_TOLERANCE:
        raise RuntimeError(f"exported ONNX differs from PyTorch by {diff} (> {PARITY_TOLERANCE})")
    costs = problem.arch_costs(arch)
    verify = verify_onnx(onnx_bytes, costs.get("latency_ms")) if config.verify else None
    same_device = verify is not None and verify["device"] == config.device
    constraints = [
        {
            "metric": c.metric,
            "limit": c.limit,
            "predicted": costs[c.metric],
            "measured": verify["median_ms"] if same_device and c.metric == "latency_ms" else None,
            "satisfied": c.satisfied(arch),
        }
        for c in problem.constraints
    ]
    return {
        "space": space.name,
        "method": config.method,
        "device": config.device,
        "latency_source": predictor.name if predictor is not None else None,
        "arch": space.arch_to_json(arch),
        "arch_text": space.format_arch(arch),
        "constraints": constraints,
        "accuracy": accuracy,
        "params": costs["params"],
        "flops": costs["flops"],
        "latency_ms": costs.get("latency_ms"),
        "onnx": {"file": "model.onnx", "input_shape": list(shape), "max_abs_diff": diff},
        "verify": verify,
        "budget": _budget(config, problem, splits),
        "notes": _notes(config, predictor),
    }


def _budget(config: RunConfig, problem: SearchProblem, splits: Any) -> dict:
    b = problem.budget
    return {
        "search": {
            "steps": b.steps,
            "warmup_steps": b.warmup_steps,
            "batch_size": b.batch_size,
            "images": len(problem.data.train_x),
            "resolution": problem.data.train_x.shape[-1],
            "width": config.search_width,
        },
        "final": {
            "images": len(splits.train),
            "val_images": len(splits.val),
            "test_images": len(splits.test),
            "epochs": config.final.epochs,
            "max_steps": config.final.max_steps,
            "batch_size": config.final.batch_size,
        },
    }


def _notes(config: RunConfig, predictor: Any) -> list[str]:
    notes = ["flops are multiply-accumulates; params include BN affine"]
    if predictor is not None:
        geometry = getattr(predictor, "space", predictor)
        notes.append(
            f"latency is the {config.device} LUT's ({predictor.name}): {geometry.resolution} px, "
            f"{geometry.num_classes}-class classifier, full width"
        )
    if config.space == "ib-channel":
        notes.append(
            "ib-channel latency: per-channel linear fits of the LUT's inverted bottlenecks"
        )
    if config.space == "dso":
        notes.append(
            "dso latency: the LUT entries of the surviving edges' convs plus stem, reductions and "
            "head; the adds that join edges are not priced and the LUT has no end-to-end "
            "calibration (its blocks are DAGs)"
        )
    return notes


def write_plots(rundir: RunDir, problem: SearchProblem, report: dict) -> None:
    """``disparity.png``, ``alpha.png``, ``derivation.png``, ``accuracy_latency.png`` (and
    ``lagrangian.png``, see :func:`write_lagrangian_plot`) in the run directory."""
    from hwnas.search.plots import (
        plot_accuracy_cost,
        plot_alpha,
        plot_derivation,
        plot_disparity,
    )

    history = rundir.read_json("search.json", "hwnas-search-history")
    plot_disparity(history["history"], rundir.path / "disparity.png")
    plot_derivation(history["derivation"], rundir.path / "derivation.png")
    plot_alpha(history["snapshots"], rundir.path / "alpha.png")
    metric = "latency_ms" if report["latency_ms"] is not None else problem.constraints[0].metric
    limit = next((c.limit for c in problem.constraints if c.metric == metric), None)
    final = {
        "cost": problem.arch_costs(problem.space.arch_from_json(report["arch"]))[metric],
        "accuracy": report["accuracy"]["test"],
    }
    plot_accuracy_cost(history["tried"], final, metric, limit, rundir.path / "accuracy_latency.png")
    write_lagrangian_plot(rundir, history["history"])


def write_lagrangian_plot(rundir: RunDir, history: list[dict]) -> None:
    """``lagrangian.png`` when the search logged Lagrange multipliers (``lambda_*`` columns)."""
    from hwnas.search.plots import plot_lagrangian

    if any(k.startswith("lambda_") for row in history for k in row):
        plot_lagrangian(history, rundir.path / "lagrangian.png")
