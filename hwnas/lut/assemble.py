"""Turn a build journal into a LUT file: entries, linear fits and the end-to-end calibration.

* Entries: one per timed block. Statistics are the block's robust statistics
  (:func:`hwnas.lut.timing.robust_stats`) minus the per-call overhead, i.e. the median of the null
  model timed beside it; ``min_ms`` likewise. The standalone figures and the overhead are kept in
  each entry (``standalone_median_ms``, ``overhead_ms``), so nothing measured is lost.
* ``models["linear"]``: per-family fits latency = slope * mid + intercept (:mod:`hwnas.lut.linear`).
* ``models["calibration"]``: fitted on the timed whole networks (:mod:`hwnas.lut.calibration`),
  with the networks' measurements (``data``) so it can be refitted or plotted later.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from hwnas.blocks.specs import parse_key
from hwnas.errors import UserError
from hwnas.lut.calibration import MIN_ARCHS, Pricer, fit_calibration, predict_ms
from hwnas.lut.linear import fit_families, linear_model_json
from hwnas.lut.plan import BuildPlan
from hwnas.lut.schema import LUT, LUTEntry
from hwnas.lut.timing import robust_stats

log = logging.getLogger(__name__)

METHOD = (
    "each block timed as its own ONNX model beside a null model (1x1 depthwise conv, same "
    "input), in rounds one pass over all models apart; entry = block - null (per-call overhead "
    "removed); statistics over undisturbed rounds; end-to-end calibration fitted on random "
    "whole networks timed the same way"
)


def assemble_lut(
    plan: BuildPlan, header: dict, groups: Sequence[dict], complete: bool = True
) -> LUT:
    """The LUT of a (possibly partial) build journal."""
    settings = header.get("settings", {})
    clean = float(settings.get("block_timing", {}).get("clean", 0.05))
    jobs = collect_jobs(groups, clean)
    precision = settings.get("precision", "fp32")
    entries = [_entry(job, jobs, precision) for job in jobs.values() if job["kind"] == "block"]
    first = groups[0] if groups else {}
    lut = LUT(
        device={
            "name": header.get("lut_name") or header.get("device", "?"),
            "measured_on": header.get("device", "?"),
            "fingerprint": header.get("fingerprint", {}),
        },
        runtime=first.get("runtime") or {"name": "onnxruntime", "version": None},
        settings={
            "precision": settings.get("precision", "fp32"),
            "format": settings.get("format", "onnx"),
            "threads": settings.get("block_timing", {}).get("threads", 1),
            "core": first.get("agent_settings", {}).get("core"),
            "affinity": first.get("agent_settings", {}).get("affinity"),
            "warmup": settings.get("block_timing", {}).get("warmup"),
            "repeats": settings.get("block_timing", {}).get("repeats"),
            "rounds": settings.get("block_timing", {}).get("rounds"),
            "statistic": settings.get("statistic", "min"),
            "method": METHOD,
            "timing": settings,
        },
        entries=tuple(sorted(entries, key=lambda e: e.key)),
        space=plan.space,
        resolution=plan.resolution,
        num_classes=plan.num_classes,
        provenance={
            "tool": "hwnas build-lut",
            "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "complete": complete,
            "plan": {**plan.describe(), "note": plan.note},
            "measured_blocks": len(entries),
            "device_seconds": float(sum(g.get("device_s", 0.0) for g in groups)),
        },
    )
    models: dict[str, Any] = {"linear": linear_model_json(fit_families(lut, min_points=2))}
    calibration = _calibration(plan, lut, jobs, settings.get("statistic", "min"))
    if calibration:
        models["calibration"] = calibration
    return lut.replace(models=models)


def collect_jobs(groups: Sequence[dict], clean: float) -> dict[str, dict]:
    """Per job id: kind, key, ref, its rounds of samples and their robust statistics."""
    jobs: dict[str, dict] = {}
    for group in groups:
        for job in group["jobs"]:
            record = jobs.setdefault(
                job["id"],
                {k: job.get(k, "") for k in ("id", "kind", "key", "ref")} | {"rounds": []},
            )
            record["rounds"].append(job["samples"])
    for record in jobs.values():
        record["stats"] = robust_stats(record["rounds"], clean)
    return jobs


def _entry(job: dict, jobs: dict, precision: str = "fp32") -> LUTEntry:
    stats = job["stats"]
    null = jobs.get(job.get("ref") or "")
    overhead = null["stats"]["median_ms"] if null else 0.0
    overhead_min = null["stats"]["min_ms"] if null else 0.0
    extra = {
        "min_ms": max(0.0, stats["min_ms"] - overhead_min),
        "standalone_median_ms": stats["median_ms"],
        "standalone_min_ms": stats["min_ms"],
        "overhead_ms": overhead,
        "overhead_model": null["key"] if null else None,
        "rounds": stats["rounds"],
        "rounds_kept": stats["rounds_kept"],
    }
    return LUTEntry(
        spec=parse_key(job["key"]),
        precision=precision,
        median_ms=max(0.0, stats["median_ms"] - overhead),
        p10_ms=max(0.0, stats["p10_ms"] - overhead),
        p90_ms=max(0.0, stats["p90_ms"] - overhead),
        n=int(stats["n"]),
        extra=extra,
    )


def arch_latency(stats: dict, statistic: str) -> float:
    """The figure of a timed network that the calibration predicts."""
    return float(stats["min_ms"] if statistic == "min" else stats["median_ms"])


def _calibration(plan: BuildPlan, lut: LUT, jobs: dict, statistic: str) -> dict | None:
    archs = [job for job in jobs.values() if job["kind"] == "arch"]
    if not plan.has_networks or len(archs) < MIN_ARCHS:
        return None
    pricer = Pricer.of(lut)
    rows, networks, measured = [], [], []
    for job in archs:
        specs = plan.network(plan.parse_arch(job["key"]))  # type: ignore[misc]
        try:
            lut_sum = pricer.sum_ms(specs)
        except UserError:
            continue  # a block of this network is not measured yet (partial build)
        networks.append(specs)
        measured.append(arch_latency(job["stats"], statistic))
        rows.append(
            {
                "arch": job["key"],
                "latency_ms": measured[-1],
                "median_ms": job["stats"]["median_ms"],
                "lut_sum_ms": lut_sum,
                "rounds": job["stats"]["rounds"],
            }
        )
    if len(networks) < MIN_ARCHS:
        log.warning("only %d whole networks are priceable; no calibration", len(networks))
        return None
    calibration = fit_calibration(pricer, networks, measured, plan.space, statistic)
    fitted = np.array([predict_ms(pricer, calibration, s) for s in networks])
    rel = fitted / np.asarray(measured) - 1
    calibration["in_sample"] = {
        "within_5pct": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "rmspe": float(np.sqrt(np.mean(rel**2))),
    }
    for row, value in zip(rows, fitted):
        row["fitted_ms"] = float(value)
    calibration["data"] = rows
    return calibration
