"""``hwnas quantize --latency-ms X``: mixed precision under a latency budget measured on a device.

The run layer's part (:mod:`hwnas.quant.latency` is the algorithm): open the device, measure the
network's precision profile there at every precision its runtime executes
(:mod:`hwnas.runs.profile`), build the shared problem (refusing a budget below the cheapest
achievable latency: exit 2), search with the chosen method (and, with ``baselines``, the others
on the same evaluator), give each policy the same end-to-end hardware check (tightening it
while it misses the budget) and the same final fine-tune, time it, and write the files.

Files written into the run directory (the chosen method's):

* ``quant_lut.json``: per-layer latency at every measured precision on the device (LUT format)
  + calibration;
* ``quant_policy.json``: the chosen per-layer bitwidths;
* ``quant_model.json`` + ``quant_model.npz``: the fine-tuned fake-quantized model (what
  ``hwnas export --precision mixed`` writes);
* ``quant_report.json``: the report (also printed by ``--json``), and a ``quantization`` summary
  added to ``report.json``;
* ``quant_bits.png`` (bits per layer) and ``quant_policies.png`` (accuracy vs latency).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.devices.connect import open_device
from hwnas.devices.registry import get_device
from hwnas.errors import UserError
from hwnas.export.precisions import FORMAT_PRECISIONS
from hwnas.graph.blocks import layer_spec
from hwnas.graph.qparams import policy_bits_summary
from hwnas.quant.costs import precision_summary
from hwnas.quant.latency import LATENCY_METHODS, latency_problem, search_latency
from hwnas.quant.plots import plot_bits, plot_policies
from hwnas.quant.policy import save_policy, save_state
from hwnas.quant.qat import accuracy
from hwnas.quant.quantize import load_data, offered_choices, quantized_net, repair_policy
from hwnas.runs.measure import measure_network
from hwnas.runs.profile import profile_device
from hwnas.runs.rundir import update_run_report

logger = logging.getLogger(__name__)

REPORT_KIND = "hwnas-quant-report"


def device_format(runtime: str | None) -> str:
    """Model format a device runtime runs: ``tflite`` for TFLite, else ``onnx``."""
    return "tflite" if runtime == "tflite" else "onnx"


@dataclass
class MethodOutcome:
    """One method through the shared steps: search, hardware check, final fine-tune, timing."""

    found: Any  # hwnas.quant.latency.LatencySearch
    policy: list
    checked: Any  # Measurement of the checked policy before the fine-tune
    budget_used: float
    net: Any
    final: Any  # Measurement of the fine-tuned model
    accuracy: dict

    def summary(self, problem) -> dict:
        measured = self.final.stats.median_ms
        return {
            **self.found.to_dict(),
            "details": {k: v for k, v in self.found.details.items() if k != "history"},
            "checked_precisions": ["fp32" if b.is_float else "int8" for b in self.policy],
            "checked_latency_ms": problem.latency_ms(self.policy),
            "budget_used_ms": self.budget_used,
            "search_policy_measured_ms": self.checked.stats.median_ms,
            "measured_ms": measured,
            "satisfied": measured <= problem.budget_ms,
            "accuracy": self.accuracy,
        }


def quantize_latency_run(config, progress: Callable[[str], None] | None = None) -> dict:
    """Latency mode of :func:`hwnas.runs.quantize.quantize_run` (``config.latency_ms`` is set)."""
    from hwnas.graph.lower import graph_from_module
    from hwnas.runs.rundir import load_run

    say = progress or (lambda message: None)
    start = time.perf_counter()
    run = load_run(config.run_dir)
    graph = graph_from_module(run.module, run.input_shape)
    device = get_device(config.device)
    if not device.measurable:
        raise UserError(
            f"device {device.name!r} has no agent; HAQ needs per-precision "
            "measurements on the device (register it with 'hwnas devices add')"
        )
    fmt = device_format(device.runtime)
    methods = [config.method]
    if config.baselines:
        methods += [m for m in LATENCY_METHODS if m != config.method]
    with open_device(device) as client:
        precisions = FORMAT_PRECISIONS[fmt]
        say(f"timing {len(graph.layers)} layers at {', '.join(precisions)} on {device.name}")
        profile = profile_device(
            client,
            device.name,
            graph,
            fmt,
            config.measure,
            config.run_dir / "quant_lut.json",
            precisions=precisions,
            progress=lambda i, total: say(f"layer models {i}/{total}"),
        )
        choices, integer = offered_choices(
            profile.cost, len(graph.layers), profile.int8_weight_bits, config.simulate_bits
        )
        say("loading data")
        data = load_data(run.data, config.train_images, config.val_images, config.seed)
        problem = latency_problem(graph, profile.cost, choices, data, config.latency_ms, config)
        outcomes: dict[str, MethodOutcome | str] = {}
        for method in methods:
            try:
                outcomes[method] = run_method(client, problem, method, config, fmt, say)
            except UserError as exc:
                if method == config.method:
                    raise
                outcomes[method] = str(exc)  # an infeasible baseline is reported, not fatal
    offered = ["fp32", "int8"] if integer else ["fp32"]
    report = _report(config, run, profile, problem, offered, outcomes)
    report["search_seconds"] = time.perf_counter() - start
    _write_files(config.run_dir, graph, profile, outcomes[config.method], report)
    return report


def run_method(client, problem, method: str, config, fmt: str, say) -> MethodOutcome:
    """One method: search, the hardware check, the final fine-tune, end-to-end timing."""
    from hwnas.quant.dfq import DFQConfig

    found = search_latency(
        problem,
        method,
        config.episodes,
        config.seed,
        lambda r: say(
            f"{method} episode {r.episode + 1}/{config.episodes}: {r.latency_ms:.3f} ms, "
            f"acc {r.accuracy:.2f}%"
        ),
        dfq_config=DFQConfig(
            steps=config.dfq_steps, batch_size=config.batch_size, device=config.torch_device
        ),
    )
    say(f"{method}: hardware check")
    policy, checked, budget_used = hardware_check(
        client,
        problem.graph,
        problem.cost,
        problem.choices,
        list(found.policy),
        problem.data,
        config,
        fmt,
    )
    say(f"{method}: final fine-tune")
    data = problem.data
    names = problem.names
    net = quantized_net(problem.graph, dict(zip(names, policy)), data, config.final_steps, config)
    final = measure_network(client, problem.graph, net.to_state(), fmt, config.measure)
    acc = {
        "val": accuracy(net, data.val_x, data.val_y),
        "test": accuracy(net, data.test_x, data.test_y),
    }
    return MethodOutcome(found, policy, checked, budget_used, net, final, acc)


def hardware_check(client, graph, cost, choices, policy, data, config, fmt):
    """Measure a policy end to end; while it misses the budget, tighten and re-wall it.

    HAQ's hardware feedback on the real network: the per-layer cost model misses what mixed
    precision costs at fp32/int8 boundaries (Q/DQ, layout reorders), so the chosen policy is
    timed whole and, if it is over, the budget is tightened by the miss and the wall re-applied
    (at most ``config.max_repairs`` times). Returns (policy, last measurement, budget used).
    """
    names = [layer.name for layer in graph.layers]
    budget = config.latency_ms
    measured = None
    for attempt in range(config.max_repairs + 1):
        net = quantized_net(graph, dict(zip(names, policy)), data, 0, config)
        measured = measure_network(client, graph, net.to_state(), fmt, config.measure)
        predicted = cost.latency_ms(policy)
        if measured.stats.median_ms <= config.latency_ms or attempt == config.max_repairs:
            break
        logger.info(
            "measured %.3f ms > %.3f ms budget (predicted %.3f): tightening",
            measured.stats.median_ms,
            config.latency_ms,
            predicted,
        )
        policy, budget = repair_policy(
            policy, choices, cost, budget, measured.stats.median_ms, predicted
        )
    return policy, measured, budget


def _report(config, run, profile, problem, offered: list, outcomes: dict) -> dict:
    o = outcomes[config.method]
    measured = o.final.stats.median_ms
    found = o.found
    return {
        "schema_version": 1,
        "kind": REPORT_KIND,
        "mode": "latency",
        "method": config.method,
        "run": str(config.run_dir),
        "space": run.space,
        "arch": run.arch_text,
        "device": profile.device,
        "runtime": profile.runtime,
        "format": profile.fmt,
        "constraints": [
            {
                "metric": "latency_ms",
                "limit": config.latency_ms,
                "predicted": problem.latency_ms(o.policy),
                "measured": measured,
                "satisfied": measured <= config.latency_ms,
            }
        ],
        "accuracy": o.accuracy,
        "float_accuracy": {"val": problem.float_accuracy},
        "latency": {
            "measured": o.final.to_dict(with_samples=False),
            "cheapest_ms": problem.cheapest_ms,
            "budget_used_ms": o.budget_used,
            "search_policy_measured_ms": o.checked.stats.median_ms,
            "network_ms": dict(problem.cost.network_ms),
            "calibration_scale": dict(problem.cost.scale),
        },
        "precisions": {
            "offered": offered,
            "measured": precision_summary(problem.cost, offered),
            "int8_weight_bits": profile.int8_weight_bits,
            "simulate_bits": config.simulate_bits,
        },
        "policy": {
            "layers": len(o.policy),
            "int8_layers": sum(not b.is_float for b in o.policy),
            **policy_bits_summary(dict(zip(problem.names, o.policy))),
            "w_bits": [b.w_bits for b in o.policy],
            "a_bits": [b.a_bits for b in o.policy],
        },
        "search": {
            "episodes": found.episodes,
            "evaluated_policies": found.evaluated_policies,
            "val_accuracy_before_finetune": found.val_accuracy,
            "seconds": found.seconds,
            "best_episode": found.details.get("best_episode"),
            "history": found.details.get("history", []),
            **{k: v for k, v in found.details.items() if k not in ("best_episode", "history")},
        },
        "methods": {
            m: ({"infeasible": v} if isinstance(v, str) else v.summary(problem))
            for m, v in outcomes.items()
        },
        "config": config.to_dict(),
    }


def _write_files(run_dir: Path, graph, profile, outcome: MethodOutcome, report: dict) -> None:
    names = [layer.name for layer in graph.layers]
    specs = [layer_spec(graph, layer).key() for layer in graph.layers]
    meta = {
        "device": profile.device,
        "runtime": profile.runtime,
        "format": profile.fmt,
        "int8_weight_bits": profile.int8_weight_bits,
        "method": report["method"],
    }
    save_policy(run_dir / "quant_policy.json", names, specs, outcome.policy, meta)
    save_state(run_dir / "quant_model", outcome.net.to_state(), meta)
    constraint = report["constraints"][0]
    plot_bits(
        run_dir / "quant_bits.png",
        names,
        outcome.policy,
        f"{report['method']} policy on {profile.device}: {constraint['measured']:.3f} ms "
        f"(budget {constraint['limit']:g} ms)",
    )
    plot_policies(
        run_dir / "quant_policies.png",
        report["search"]["history"],
        constraint["limit"],
        {"latency_ms": constraint["measured"], "accuracy": report["accuracy"]["val"]},
        (profile.cost.network_ms["fp32"], report["float_accuracy"]["val"]),
    )
    report["files"] = {
        k: str(run_dir / v)
        for k, v in (
            ("policy", "quant_policy.json"),
            ("model", "quant_model.json"),
            ("lut", "quant_lut.json"),
            ("report", "quant_report.json"),
            ("bits_plot", "quant_bits.png"),
            ("policies_plot", "quant_policies.png"),
        )
    }
    (run_dir / "quant_report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    update_run_report(
        run_dir,
        "quantization",
        {k: report[k] for k in ("method", "device", "constraints", "accuracy", "policy")},
    )
