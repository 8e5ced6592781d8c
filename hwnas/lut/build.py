"""``hwnas build-lut``: measure a space's blocks and whole networks on a device, resumably.

What is measured (a :class:`~hwnas.lut.plan.BuildPlan` says which specs and networks):

1. every block of the space, each as its own model, timed in rounds together with a
   *null* model of the same input shape (a 1x1 depthwise conv: the per-call overhead and layout
   reorders every standalone model pays, but a block inside a network does not). The LUT entry is
   block minus null, so entries add up instead of counting the overhead once per block;
2. ``n_archs`` random whole networks of the space (stitched from the block files, see
   :mod:`hwnas.lut.compose`), for the end-to-end calibration (:mod:`hwnas.lut.calibration`).

Models are grouped (blocks by input shape with their null model, networks by ``group_size``) and
timed in passes over all groups, one round per model per pass (:mod:`hwnas.lut.timing` says why:
slow phases of the host last seconds, so a model's rounds must be far apart). Every finished group
round goes to the journal (:mod:`hwnas.lut.journal`) before the next one starts, so a killed host
or a dropped connection loses at most one group round, and ``resume=True`` re-measures nothing
kept. ``budget_minutes`` bounds the device time of one run: when it is spent the run stops after
the group in flight and writes what it has (marked incomplete; resume to finish).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hwnas import paths
from hwnas.errors import DeviceError, UserError
from hwnas.lut.jobs import JOB_WEIGHT, Job, ModelWriter, check_precision, job_model, plan_groups
from hwnas.lut.journal import Journal, journal_path
from hwnas.lut.plan import BuildPlan, get_plan
from hwnas.lut.timing import TimingSettings, chunked, needs_round, time_models
from hwnas.progress import grow, progress_bar

log = logging.getLogger(__name__)

STATISTICS = ("min", "median")
BLOCK_MIN_TIME_MS = 25.0
"""Timed runs per model and round add up to at least this: a 0.05 ms block gets ~500 runs for
25 ms of device time instead of 20 runs for 1 ms. On the 2-core development VM the median
disagreement between two builds' entries fell from 6.5 % to 2.1-2.3 %
(``bench/lut_repeatability.py``), for about 20 s more device time per build."""


@dataclass(frozen=True)
class BuildConfig:
    """A build-lut run (see the module docstring).

    Attributes:
        device: registered device name.
        space: build plan name (``fbnet``, ``ib-channel``, ``darts``, ``dso``).
        out: LUT file to write (default: ``<user LUT dir>/<device>_<space>.json``).
        n_archs: whole networks timed for the calibration (0: none).
        statistic: what the calibration predicts for a whole network: ``min`` (fastest sample,
            robust on shared machines) or ``median`` (of undisturbed rounds).
        budget_minutes: device time this run may spend.
        lut_name: the device name the LUT is filed under (default: ``device``); e.g. ``pi4`` makes
            ``--device pi4`` elsewhere use this LUT instead of the shipped reference.
        precision: ``fp32`` (default), ``int8`` (QDQ / integer TFLite) or ``fp16``: every model
            of the build is generated at this precision (:mod:`hwnas.runs.models`).
        fmt: model format, which picks the runtime on the device: ``onnx`` (onnxruntime) or
            ``tflite``.
    """

    device: str
    space: str = "fbnet"
    resolution: Optional[int] = None
    num_classes: Optional[int] = None
    out: Optional[Path] = None
    resume: bool = False
    quick: bool = False
    n_archs: int = 200
    seed: int = 0
    group_size: int = 12
    budget_minutes: float = 20.0
    statistic: str = "min"
    block_timing: TimingSettings = field(
        default_factory=lambda: TimingSettings(min_time_ms=BLOCK_MIN_TIME_MS)
    )
    arch_timing: TimingSettings = field(
        default_factory=lambda: TimingSettings(repeats=15, min_time_ms=BLOCK_MIN_TIME_MS)
    )
    progress: bool = True
    timeout_s: float = 120.0
    lut_name: Optional[str] = None
    precision: str = "fp32"
    fmt: str = "onnx"


@dataclass(frozen=True)
class BuildResult:
    """What a run did. ``complete`` is False when the budget ran out first (resume to finish)."""

    path: Path
    complete: bool
    total_jobs: int
    kept_jobs: int  # (model, round) measurements kept from earlier runs
    measured_jobs: int  # (model, round) measurements made by this run
    rounds_total: int  # (model, round) measurements behind the LUT: kept + measured
    device_seconds: float
    device_seconds_total: float
    wall_seconds: float
    journal: Optional[Path]
    lut: Any = None


def default_out(
    device: str, space: str, quick: bool = False, precision: str = "fp32", fmt: str = "onnx"
) -> Path:
    """``<user LUT dir>/<device>_<space>.json`` for fp32 ONNX, else
    ``<device>_<space>-<precision>-<fmt>.json`` (quick builds in a ``quick/`` subfolder)."""
    folder = paths.user_luts_dir() / ("quick" if quick else "")
    suffix = "" if (precision, fmt) == ("fp32", "onnx") else f"-{precision}-{fmt}"
    return folder / f"{device}_{space}{suffix}.json"


def build_identity(plan: BuildPlan, config: BuildConfig) -> dict:
    """What must not change between a build and its resumption."""
    return {
        "device": config.device,
        "lut_name": config.lut_name or config.device,
        "plan": plan.describe(),
        "settings": {
            "n_archs": config.n_archs,
            "seed": config.seed,
            "group_size": config.group_size,
            "statistic": config.statistic,
            "precision": config.precision,
            "format": config.fmt,
            "block_timing": config.block_timing.to_dict(),
            "arch_timing": config.arch_timing.to_dict(),
        },
    }


def plan_build(config: BuildConfig) -> tuple[BuildPlan, Path]:
    """Check ``config`` and return its plan and output file (UserError on a mistake)."""
    if config.statistic not in STATISTICS:
        raise UserError(f"unknown statistic {config.statistic!r}; known: {', '.join(STATISTICS)}")
    if config.budget_minutes <= 0:
        raise UserError("--budget-minutes must be > 0")
    check_precision(config.space, config.precision, config.fmt)
    plan = get_plan(config.space, config.resolution, config.num_classes, config.quick)
    name = config.lut_name or config.device
    out = (
        Path(config.out)
        if config.out
        else default_out(name, plan.space, plan.quick, config.precision, config.fmt)
    )
    return plan, out


def build_lut(config: BuildConfig, client: Any, write: Optional[ModelWriter] = None) -> BuildResult:
    """Run a build (or resume one) on an open agent and write the LUT; see the module docstring.

    Args:
        config: what to build.
        client: an open ``AgentClient`` of ``config.device`` (the run layer,
            :func:`hwnas.runs.lut.build_lut_on_device`, opens it).
        write: writes models other than fp32 ONNX (see :data:`hwnas.lut.jobs.ModelWriter`).
    """
    plan, out = plan_build(config)
    return _run(config, plan, out, client, write)


def _run(
    config: BuildConfig, plan: BuildPlan, out: Path, client: Any, write: Optional[ModelWriter]
) -> BuildResult:
    started = time.monotonic()
    groups = plan_groups(plan, config.n_archs, config.seed, config.group_size)
    fingerprint = client.fingerprint(config.block_timing.core)
    identity = build_identity(plan, config)
    path = journal_path(out)
    if config.resume:
        journal = Journal.resume(path, fingerprint, identity)
    else:
        journal = Journal.create(
            path, {**identity, "fingerprint": fingerprint, "started": time.time()}
        )
    kept_before = journal.rounds_kept()
    rounds = config.block_timing.rounds
    total = rounds * sum(JOB_WEIGHT[j.kind] for g in groups for j in g)
    done = sum(
        min(len(journal.job_rounds().get(j.id, [])), rounds) * JOB_WEIGHT[j.kind]
        for g in groups
        for j in g
    )
    bar = progress_bar(
        total, f"build-lut {config.device}/{plan.space}", enabled=config.progress, done=done
    )
    state = {"spent": 0.0, "measured": 0}
    try:
        finished = _passes(plan, config, client, write, journal, groups, bar, state)
    except DeviceError as exc:
        raise DeviceError(
            f"{exc}; {journal.rounds_kept()} measurements are kept in {journal.path}: run the "
            f"same command with --resume"
        ) from None
    finally:
        bar.close()
    from hwnas.lut.assemble import assemble_lut
    from hwnas.lut.schema import save_lut

    lut = assemble_lut(plan, journal.header, journal.groups, complete=finished)
    save_lut(lut, out)
    if finished:
        journal.remove()
    return BuildResult(
        path=out,
        complete=finished,
        total_jobs=sum(map(len, groups)),
        kept_jobs=kept_before,
        measured_jobs=state["measured"],
        rounds_total=journal.rounds_kept(),
        device_seconds=state["spent"],
        device_seconds_total=journal.device_seconds(),
        wall_seconds=time.monotonic() - started,
        journal=None if finished else journal.path,
        lut=lut,
    )


def _passes(
    plan: BuildPlan,
    config: BuildConfig,
    client: Any,
    write: Optional[ModelWriter],
    journal: Journal,
    groups: list[list[Job]],
    bar: Any,
    state: dict,
) -> bool:
    """Time every group round by round; False if the budget ran out first."""
    budget_s = 60.0 * config.budget_minutes
    timing = config.block_timing
    for index in range(timing.rounds + timing.max_extra_rounds):
        kept = journal.job_rounds()
        if index < timing.rounds:
            todo = [g for g in groups if len(kept.get(g[-1].id, [])) == index]
        else:  # extra pass: only models whose fastest rounds disagree, regrouped
            late = [
                j
                for g in groups
                for j in g
                if j.kind != "null" and needs_round(kept.get(j.id, []), index, timing)
            ]
            todo = [
                c
                for kind in ("block", "arch")
                for c in chunked([j for j in late if j.kind == kind], config.group_size)
            ]
            grow(bar, sum(JOB_WEIGHT[j.kind] for g in todo for j in g))
        for group in todo:
            if state["spent"] >= budget_s:
                log.warning("device-time budget of %.1f min spent; stopping", config.budget_minutes)
                return False
            extra = "" if index < timing.rounds else " (extra, for models whose rounds disagree)"
            bar.set_postfix_str(f"round {index + 1}, {group[-1].kind}s{extra}")
            state["spent"] += _measure_group(plan, config, client, write, journal, group, index)
            state["measured"] += len(group)
            bar.update(sum(JOB_WEIGHT[j.kind] for j in group))
    return True


def _measure_group(
    plan: BuildPlan,
    config: BuildConfig,
    client: Any,
    write: Optional[ModelWriter],
    journal: Journal,
    group: list[Job],
    index: int,
) -> float:
    """Time one round of a group and journal it; returns the device seconds spent."""
    # host work, before the device is busy
    models = [job_model(plan, job, config.precision, config.fmt, write) for job in group]
    timing = config.arch_timing if group[0].kind == "arch" else config.block_timing
    result = time_models(client, models, timing)
    jobs = [
        {
            "id": job.id,
            "kind": job.kind,
            "key": job.key,
            "ref": job.ref,
            "samples": [round(s, 5) for s in samples],
        }
        for job, samples in zip(group, result.samples)
    ]
    journal.append_group(
        {
            "round": index,
            "device_s": result.device_s,
            "runtime": result.runtime,
            "agent_settings": {k: result.settings.get(k) for k in ("threads", "core", "affinity")},
            "fingerprint": result.fingerprint,
            "jobs": jobs,
        }
    )
    return result.device_s
