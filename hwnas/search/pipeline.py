"""``hwnas search`` end to end: resolve, search, retrain, export, verify, report.

1. Resolve names (space, method, device -> latency LUT) and fail fast on mistakes.
2. Load the data (search subset at the search resolution; final subset at the LUT geometry).
3. Build cost models and constraints; a budget outside the feasible range is a UserError.
4. Run the method on a proxy (``search_width``, ``search`` budget) -> its own architecture;
   repair it if it violates a budget, fill the budget left if the run asks (``fill``), and
   record all three (:mod:`hwnas.search.finalize`).
5. Train the derived full-width network from scratch (``final`` budget), evaluate val and test.
6. Export ``model.onnx`` (batch 1), check it against PyTorch, optionally measure it on a device
   (through a function the run layer passes in: nothing here opens a device).
7. Write the run directory (:mod:`hwnas.search.rundir`) and plots.

Each finished stage leaves files, and unfinished stages leave checkpoints, so an interrupted run
continues with ``resume=True`` where it stopped.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

from hwnas.errors import UserError
from hwnas.search.api import Hooks, SearchData, SearchProblem
from hwnas.search.config import RunConfig
from hwnas.search.report import VerifyONNX, finish, write_plots
from hwnas.search.rundir import RunDir, environment

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int, dict], None]


def check_names(config: RunConfig) -> None:
    """Fail fast on unknown names and an unmeasurable verify device (before any data loads)."""
    from hwnas.search.api import check_supported, get_method, method_config
    from hwnas.spaces.base import SpaceConfig, create_space

    space = create_space(config.space, SpaceConfig(config.resolution, 10, config.search_width))
    spec = get_method(config.method)
    check_supported(spec, config.method, space)
    method_config(spec, config.method_settings)
    if not any(v is not None for v in config.limits().values()):
        raise UserError("give at least one budget: --latency-ms, --flops-m or --params-m")


def run_search(
    config: RunConfig,
    out: Path,
    progress: Optional[Progress] = None,
    resume: bool = False,
    stop_requested: Optional[Callable[[], bool]] = None,
    verify_onnx: VerifyONNX = None,
) -> dict:
    """Run (or resume) one search into the run directory ``out``; returns the report.

    Args:
        config: the resolved configuration.
        out: the run directory (must be empty or absent unless ``resume``).
        progress: ``progress(stage, done, total, status)`` after every step.
        resume: continue the run in ``out`` (its ``config.json`` must be ``config``).
        stop_requested: polled after every step; True checkpoints and raises KeyboardInterrupt.
        verify_onnx: measures ``model.onnx`` on a device for ``--verify`` (made by the run layer,
            :func:`hwnas.runs.search.run_search`, which also starts the other torchrun ranks).
    """
    import torch

    t_start = time.perf_counter()
    if config.threads:
        torch.set_num_threads(config.threads)
    from hwnas.search.distributed import init_from_env

    dist = init_from_env()  # under torchrun: rank 0 (the run layer sends the others elsewhere)
    check_names(config)
    if config.verify and verify_onnx is None:
        raise ValueError("--verify needs a device to measure on: run through hwnas.runs.search")
    rundir = RunDir(out)
    _start_rundir(rundir, config, resume)
    dist.barrier()  # followers read the run directory once it is set up
    problem, final_splits, predictor = build_problem(config)
    hooks = {
        stage: _hooks(rundir, progress, stage, stop_requested) for stage in ("search", "final")
    }
    arch, search_seconds, derivation = _search_stage(config, problem, rundir, hooks["search"])
    _record_classes(rundir, final_splits.num_classes)
    model, train_info = _final_stage(config, problem, arch, final_splits, rundir, hooks["final"])
    report = finish(config, problem, arch, model, final_splits, rundir, predictor, verify_onnx)
    report.update(
        derivation=derivation,
        search_seconds=search_seconds,
        final_train=train_info,
        total_seconds=time.perf_counter() - t_start,
    )
    write_plots(rundir, problem, report)
    rundir.write_json("report.json", "hwnas-search-report", report)
    shutil.rmtree(rundir.checkpoints, ignore_errors=True)
    return report


def build_problem(config: RunConfig) -> tuple[SearchProblem, Any, Any]:
    """The search problem of ``config``, the final-training splits and the latency predictor."""
    predictor = _predictor(config)
    search_data, final_splits = _load_data(config)
    return (
        _problem(config, predictor, search_data, final_splits.num_classes),
        final_splits,
        predictor,
    )


def _start_rundir(rundir: RunDir, config: RunConfig, resume: bool) -> None:
    if resume:
        return
    if rundir.path.exists() and any(rundir.path.iterdir()):
        raise UserError(f"{rundir.path} is not empty; choose another --out or --resume it")
    import sys

    rundir.path.mkdir(parents=True, exist_ok=True)
    d = config.data
    final_data = {
        "name": d.dataset,
        "root": d.root,
        "resolution": config.resolution,
        "seed": config.seed,
        "train_limit": d.final_train_limit,
        "val_fraction": d.val_fraction,
        "test_limit": d.test_limit,
    }
    rundir.write_json(
        "config.json",
        "hwnas-search-config",
        {
            # Flat keys read by other tools (hwnas quantize/export rebuild the network from them).
            "space": config.space,
            "resolution": config.resolution,
            "width": 1.0,
            "seed": config.seed,
            "data": final_data,
            "config": config.to_dict(),
            "seeds": {"all": config.seed},
            "environment": environment(),
            "command": sys.argv,
        },
    )


def _record_classes(rundir: RunDir, num_classes: int) -> None:
    document = rundir.read_json("config.json", "hwnas-search-config")
    if document.get("num_classes") != num_classes:
        document["num_classes"] = num_classes
        rundir.write_json(
            "config.json",
            "hwnas-search-config",
            {k: v for k, v in document.items() if k not in ("schema_version", "kind")},
        )


def _predictor(config: RunConfig) -> Any:
    from hwnas.costs.latency import load_latency_source
    from hwnas.spaces.base import SpaceConfig, create_space

    space = create_space(config.space, SpaceConfig(config.resolution, 10, config.search_width))
    try:
        return load_latency_source(config.device, space)
    except UserError:
        if config.latency_ms is not None:
            raise
        log.info("device %s has no LUT: latency is not reported", config.device)
        return None


def _load_data(config: RunConfig) -> tuple[SearchData, Any]:
    from hwnas.data import DataConfig, load_dataset

    d = config.data
    common = {
        "name": d.dataset,
        "root": d.root,
        "seed": config.seed,
        "val_fraction": d.val_fraction,
    }
    final = load_dataset(
        DataConfig(
            resolution=config.resolution,
            train_limit=d.final_train_limit,
            test_limit=d.test_limit,
            **common,
        )
    )
    search_res = d.search_resolution or config.resolution
    if search_res == config.resolution and d.search_train_limit == d.final_train_limit:
        splits = final
    else:
        splits = load_dataset(
            DataConfig(
                resolution=search_res,
                train_limit=d.search_train_limit,
                test_limit=d.test_limit,
                **common,
            )
        )
    tx, ty = splits.train.tensors
    vx, vy = splits.val.tensors
    source = {
        "dataset": d.dataset,
        "root": d.root,
        "resolution": search_res,
        "val_fraction": d.val_fraction,
        "train": len(ty),
        "val": len(vy),
    }
    return SearchData(tx, ty, vx, vy, json.dumps(source, sort_keys=True)), final


def _problem(config: RunConfig, predictor: Any, data: SearchData, classes: int) -> SearchProblem:
    from hwnas.costs.models import make_constraints, make_cost_models
    from hwnas.spaces.base import SpaceConfig, create_space

    space = create_space(config.space, SpaceConfig(config.resolution, classes, config.search_width))
    geometry = getattr(predictor, "space", predictor)
    if predictor is not None and geometry.resolution != config.resolution:
        raise UserError(
            f"the {config.device} LUT is for {geometry.resolution} px inputs, "
            f"not {config.resolution}"
        )
    costs = make_cost_models(space, predictor)
    constraints = make_constraints(costs, config.limits())
    return SearchProblem(space, data, constraints, config.search, costs)


def _hooks(rundir: RunDir, progress: Optional[Progress], stage: str, stop) -> Hooks:
    from hwnas.search.checkpoint import CheckpointStore

    def report(done: int, total: int, status: dict) -> None:
        if progress is not None:
            progress(stage, done, total, status)

    return Hooks(report, CheckpointStore(rundir.checkpoints), stop)


def _search_stage(config: RunConfig, problem: SearchProblem, rundir: RunDir, hooks: Hooks) -> tuple:
    """(delivered architecture, search seconds, derivation record), from the run directory
    when the stage already finished."""
    from hwnas.search.api import get_method, method_config
    from hwnas.search.finalize import finalize

    space = problem.space
    if rundir.has("arch.json") and rundir.has("search.json"):
        doc = rundir.read_json("arch.json", "hwnas-arch")
        history = rundir.read_json("search.json", "hwnas-search-history")
        return space.arch_from_json(doc["arch"]), history["seconds"], history["derivation"]
    spec = get_method(config.method)
    t0 = time.perf_counter()
    result = spec.run(problem, method_config(spec, config.method_settings), hooks)
    seconds = time.perf_counter() - t0
    done = finalize(problem, result.arch, result.values, config.fill)
    _log_derivation(config.method, done.record)
    rundir.write_json(
        "search.json",
        "hwnas-search-history",
        {
            "method": config.method,
            "seconds": seconds,
            "history": list(result.history),
            "tried": [t.__dict__ for t in result.tried],
            "snapshots": list(result.snapshots),
            "info": result.info,
            "derivation": done.record,
        },
    )
    rundir.write_json(
        "arch.json",
        "hwnas-arch",
        {
            "space": space.name,
            "space_config": space.config.to_dict(),
            "arch": space.arch_to_json(done.arch),
            "text": space.format_arch(done.arch),
            "own_arch": done.record["own"]["arch"],
        },
    )
    return done.arch, seconds, done.record


def _log_derivation(method: str, record: dict) -> None:
    own = record["own"]
    if not own["feasible"]:
        over = ", ".join(
            f"{m} at {own['of_budget'][m]:.3f} of its budget"
            for m, ok in own["satisfied"].items()
            if not ok
        )
        log.warning(
            "%s's own architecture violates %s; repaired in %d step(s)",
            method,
            over,
            len(record["repair"]["steps"]),
        )
    if record["fill"]["steps"]:
        log.info("fill changed %d position(s)", len(record["fill"]["steps"]))


def _final_stage(config, problem, arch, splits, rundir: RunDir, hooks: Hooks) -> tuple[Any, dict]:
    import torch

    from hwnas.search.trainer import train_model

    torch.manual_seed(config.seed)
    model = problem.space.build_net(arch, width=1.0, seed=config.seed)
    x, y = splits.train.tensors
    f = config.final
    steps = max(1, math.ceil(f.epochs * len(x) / f.batch_size))
    if f.max_steps is not None:
        steps = min(steps, f.max_steps)
    if rundir.has("weights.npz") and rundir.has("train.json"):
        rundir.read_weights(model)
        return model, rundir.read_json("train.json", "hwnas-final-train")["info"]
    info = train_model(model, x, y, final_train_config(config, steps), hooks, name="final")
    info.update(images=len(x), batch_size=f.batch_size, epochs=steps * f.batch_size / len(x))
    rundir.write_weights(model)
    rundir.write_json("train.json", "hwnas-final-train", {"info": info})
    return model, info


def final_train_config(config: RunConfig, steps: int) -> Any:
    """The :class:`~hwnas.search.trainer.TrainConfig` of the final training (``[final]``)."""
    from hwnas.search.trainer import TrainConfig

    f = config.final
    return TrainConfig(
        steps=steps,
        batch_size=f.batch_size,
        lr=f.lr,
        momentum=f.momentum,
        weight_decay=f.weight_decay,
        label_smoothing=f.label_smoothing,
        warmup_steps=f.warmup_steps,
        seed=config.seed,
    )
