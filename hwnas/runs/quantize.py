"""``quantize_run``: the whole ``hwnas quantize`` command as one library call.

Two modes, by the budget given: ``latency_ms`` (below, on a device) or ``size_kb`` (HAQ's
model-size mode, no device: :mod:`hwnas.runs.quantize_size`).

The run layer's part of HAQ (:mod:`hwnas.quant.quantize` is the algorithm): open the device,
measure the network's precision profile there (:mod:`hwnas.runs.profile`), hand HAQ the cost
model, time the chosen policy end to end (tightening it while it misses the budget), fine-tune,
and write the files.

Files written into the run directory (latency mode):

* ``quant_lut.json``: per-layer latency at fp32/int8 on the device (LUT format) + calibration;
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwnas.devices.connect import open_device
from hwnas.devices.registry import get_device
from hwnas.errors import UserError
from hwnas.graph.blocks import layer_spec
from hwnas.graph.qparams import policy_bits_summary
from hwnas.quant.plots import plot_bits, plot_policies
from hwnas.quant.policy import save_policy, save_state
from hwnas.quant.qat import accuracy, torch_threads
from hwnas.quant.quantize import (
    METHODS,
    check_budget,
    load_data,
    offered_choices,
    quantized_net,
    repair_policy,
    run_search,
)
from hwnas.runs.measure import MeasureSettings, measure_network
from hwnas.runs.profile import profile_device
from hwnas.runs.rundir import update_run_report

logger = logging.getLogger(__name__)

REPORT_KIND = "hwnas-quant-report"
LATENCY_EPISODES = 20


@dataclass(frozen=True)
class QuantizeConfig:
    """Everything ``hwnas quantize`` needs (the CLI builds it; written to the report).

    Exactly one of ``latency_ms`` and ``size_kb`` is given.

    Attributes:
        run_dir: the search run directory.
        device: registered device name (must be measurable; latency mode only).
        latency_ms: the latency budget on that device.
        size_kb: the model-size budget, priced weight bytes / 1000 (size mode).
        coding: size mode's weight coding, ``kmeans`` (default, as HAQ's size experiments) or
            ``linear``.
        method: ``haq``; size mode also ``random``, ``greedy``, ``uniform``.
        baselines: size mode: also run the other methods (same evaluator, same number of
            episodes for random, same final fine-tune) and report them.
        episodes: HAQ episodes (latency: each one short fine-tune, default 20; size: each one
            validation pass, default 600 as in the paper).
        search_steps: fine-tune SGD steps per episode.
        final_steps: fine-tune SGD steps of the chosen policy.
        train_images: train images used for calibration and fine-tuning.
        val_images: validation images that score a policy.
        simulate_bits: also offer 2..7-bit integer layers (accuracy simulation; they run and
            cost as int8 on the device).
        seed: seeds data subsets, agent and fine-tuning.
        measure: timing settings on the device.
        max_repairs: budget tightenings after end-to-end measurement.
        threads: torch threads for fine-tuning and the agent (None: torch's default).
        torch_device: where fine-tuning runs (``cpu``, ``cuda``...).
    """

    run_dir: Path
    device: str | None = None
    latency_ms: float | None = None
    size_kb: float | None = None
    coding: str | None = None
    method: str = "haq"
    baselines: bool = False
    episodes: int | None = None
    search_steps: int = 30
    final_steps: int = 300
    batch_size: int = 64
    train_images: int = 4096
    val_images: int = 1000
    simulate_bits: bool = False
    seed: int = 0
    measure: MeasureSettings = field(default_factory=MeasureSettings)
    max_repairs: int = 3
    threads: int | None = 1
    torch_device: str = "cpu"

    def __post_init__(self) -> None:
        if (self.latency_ms is None) == (self.size_kb is None):
            raise UserError("give exactly one budget: --latency-ms or --size-kb")
        if self.size_kb is not None:
            self._check_size_mode()
        else:
            if self.method not in METHODS:
                raise UserError(
                    f"unknown latency-mode method {self.method!r}; known: {', '.join(METHODS)}"
                )
            if self.device is None:
                raise UserError("--latency-ms needs --device (the device to measure on)")
            if self.coding is not None or self.baselines:
                raise UserError("--coding and --baselines are size-mode options (--size-kb)")
            if not self.latency_ms > 0:
                raise UserError(f"--latency-ms must be positive, got {self.latency_ms}")
            if self.episodes is None:
                object.__setattr__(self, "episodes", LATENCY_EPISODES)
        for name in ("episodes", "train_images", "val_images"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be at least 1")

    def _check_size_mode(self) -> None:
        from hwnas.quant.size import PAPER_EPISODES, SIZE_METHODS

        if self.method not in SIZE_METHODS:
            raise UserError(
                f"unknown size-mode method {self.method!r}; known: {', '.join(SIZE_METHODS)}"
            )
        if not self.size_kb > 0:
            raise UserError(f"--size-kb must be positive, got {self.size_kb}")
        if self.coding is None:
            object.__setattr__(self, "coding", "kmeans")
        if self.coding not in ("kmeans", "linear"):
            raise UserError(f"unknown weight coding {self.coding!r}; known: kmeans, linear")
        if self.episodes is None:
            object.__setattr__(self, "episodes", PAPER_EPISODES)

    @property
    def mode(self) -> str:
        return "size" if self.size_kb is not None else "latency"

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "measure"}
        out.update(run_dir=str(self.run_dir), measure=self.measure.to_dict())
        return out


def device_format(runtime: str | None) -> str:
    """Model format a device runtime runs: ``tflite`` for TFLite, else ``onnx``."""
    return "tflite" if runtime == "tflite" else "onnx"


def quantize_run(config: QuantizeConfig, progress: Callable[[str], None] | None = None) -> dict:
    """Run HAQ for ``config`` and write the run directory's quantization files; returns the report."""
    with torch_threads(config.threads):
        if config.mode == "size":
            from hwnas.runs.quantize_size import quantize_size_run

            return quantize_size_run(config, progress)
        return _quantize_run(config, progress)


@dataclass
class _Outcome:
    """Everything the report is made from (filled in as the run goes)."""

    run: Any = None
    graph: Any = None
    profile: Any = None
    integer: bool = False
    cheapest_ms: float = 0.0
    result: Any = None
    float_acc: float = 0.0
    policy: list = field(default_factory=list)
    checked: Any = None
    budget_used: float = 0.0
    net: Any = None
    final: Any = None
    data: Any = None


def _quantize_run(config: QuantizeConfig, progress: Callable[[str], None] | None) -> dict:
    from hwnas.graph.lower import graph_from_module
    from hwnas.runs.rundir import load_run

    say = progress or (lambda message: None)
    start = time.perf_counter()
    o = _Outcome(run=load_run(config.run_dir))
    o.graph = graph_from_module(o.run.module, o.run.input_shape)
    device = get_device(config.device)
    if not device.measurable:
        raise UserError(
            f"device {device.name!r} has no agent; HAQ needs per-precision "
            "measurements on the device (register it with 'hwnas devices add')"
        )
    fmt = device_format(device.runtime)
    with open_device(device) as client:
        _search(client, device.name, fmt, config, o, say)
        say("final fine-tune")
        names = [layer.name for layer in o.graph.layers]
        o.net = quantized_net(
            o.graph, dict(zip(names, o.policy)), o.data, config.final_steps, config
        )
        o.final = measure_network(client, o.graph, o.net.to_state(), fmt, config.measure)
    report = _report(config, o)
    report["search_seconds"] = time.perf_counter() - start
    _write_files(config.run_dir, o.graph, o.profile, o.policy, o.net, report)
    return report


def _search(client, device: str, fmt: str, config: QuantizeConfig, o: _Outcome, say) -> None:
    """Profile the device, check the budget, run HAQ and the end-to-end hardware check."""
    n = len(o.graph.layers)
    say(f"timing {n} layers at fp32 and int8 on {device}")
    o.profile = profile_device(
        client,
        device,
        o.graph,
        fmt,
        config.measure,
        config.run_dir / "quant_lut.json",
        progress=lambda i, total: say(f"layer models {i}/{total}"),
    )
    choices, o.integer = offered_choices(
        o.profile.cost, n, o.profile.int8_weight_bits, config.simulate_bits
    )
    o.cheapest_ms = check_budget(o.profile.cost, choices, config.latency_ms)
    say("loading data")
    o.data = load_data(o.run.data, config.train_images, config.val_images, config.seed)
    o.result, o.float_acc = run_search(
        o.graph,
        o.profile.cost,
        choices,
        o.data,
        config,
        lambda r: say(
            f"episode {r.episode + 1}/{config.episodes}: {r.latency_ms:.3f} ms, "
            f"acc {r.accuracy:.2f}%"
        ),
    )
    o.policy, o.checked, o.budget_used = hardware_check(
        client, o.graph, o.profile.cost, choices, list(o.result.best.policy), o.data, config, fmt
    )


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


def _report(config: QuantizeConfig, o: _Outcome) -> dict:
    measured = o.final.stats.median_ms
    names = [layer.name for layer in o.graph.layers]
    return {
        "schema_version": 1,
        "kind": REPORT_KIND,
        "mode": "latency",
        "method": config.method,
        "run": str(config.run_dir),
        "space": o.run.space,
        "arch": o.run.arch_text,
        "device": o.profile.device,
        "runtime": o.profile.runtime,
        "format": o.profile.fmt,
        "constraints": [
            {
                "metric": "latency_ms",
                "limit": config.latency_ms,
                "predicted": o.profile.cost.latency_ms(o.policy),
                "measured": measured,
                "satisfied": measured <= config.latency_ms,
            }
        ],
        "accuracy": {
            "val": accuracy(o.net, o.data.val_x, o.data.val_y),
            "test": accuracy(o.net, o.data.test_x, o.data.test_y),
        },
        "float_accuracy": {"val": o.float_acc},
        "latency": {
            "measured": o.final.to_dict(with_samples=False),
            "cheapest_ms": o.cheapest_ms,
            "budget_used_ms": o.budget_used,
            "search_policy_measured_ms": o.checked.stats.median_ms,
            "network_ms": dict(o.profile.cost.network_ms),
            "calibration_scale": dict(o.profile.cost.scale),
        },
        "precisions": {
            "offered": ["fp32", "int8"] if o.integer else ["fp32"],
            "int8_weight_bits": o.profile.int8_weight_bits,
            "simulate_bits": config.simulate_bits,
        },
        "policy": {
            "layers": len(o.policy),
            "int8_layers": sum(not b.is_float for b in o.policy),
            **policy_bits_summary(dict(zip(names, o.policy))),
            "w_bits": [b.w_bits for b in o.policy],
            "a_bits": [b.a_bits for b in o.policy],
        },
        "search": {
            "episodes": len(o.result.history),
            "best_episode": o.result.best.episode,
            "history": [r.to_dict() for r in o.result.history],
        },
        "config": config.to_dict(),
    }


def _write_files(run_dir: Path, graph, profile, policy, net, report: dict) -> None:
    names = [layer.name for layer in graph.layers]
    specs = [layer_spec(graph, layer).key() for layer in graph.layers]
    meta = {
        "device": profile.device,
        "runtime": profile.runtime,
        "format": profile.fmt,
        "int8_weight_bits": profile.int8_weight_bits,
    }
    save_policy(run_dir / "quant_policy.json", names, specs, policy, meta)
    save_state(run_dir / "quant_model", net.to_state(), meta)
    plot_bits(
        run_dir / "quant_bits.png",
        names,
        policy,
        f"HAQ policy on {profile.device}: {report['constraints'][0]['measured']:.3f} ms "
        f"(budget {report['constraints'][0]['limit']:g} ms)",
    )
    final = {
        "latency_ms": report["constraints"][0]["measured"],
        "accuracy": report["accuracy"]["val"],
    }
    plot_policies(
        run_dir / "quant_policies.png",
        report["search"]["history"],
        report["constraints"][0]["limit"],
        final,
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
