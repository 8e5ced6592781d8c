"""``hwnas quantize --size-kb X``: HAQ's model-size mode on a run directory (no device).

The run layer's part (:mod:`hwnas.quant.size` is the algorithm): load the run's network and
data, refuse a budget below the all-2-bit size (exit 2, naming the smallest and largest sizes),
search with the chosen method (and, with ``baselines``, the others on the same evaluator), give
each the same final fine-tune, encode the weights and write the files.

Files written into the run directory (names distinct from latency mode's):

* ``quant_size_policy.json``: weight bits and priced bytes per layer;
* ``quant_size_codes.json`` + ``.npz``: the fine-tuned weights as
  :class:`~hwnas.graph.wcodes.WeightCode` objects (what a packed exporter stores);
* ``quant_size_model.json`` + ``.npz``: the float graph with the decoded weights and the
  fine-tuned biases (:func:`hwnas.quant.policy.load_state`);
* ``quant_size_model.onnx``: the deployable file, low-bit weights packed as bit-planes and
  decoded once at session creation (:func:`hwnas.export.api.write_packed`), checked against the
  fine-tuned PyTorch model on the test split (``export`` in the report: file bytes against the
  fp32 file, agreement, onnxruntime test accuracy); ``hwnas export --precision packed`` writes
  it again, or as TFLite, and times it on a device;
* ``quant_size_report.json`` and a ``quantization_size`` summary in ``report.json``;
* ``quant_size_bits.png`` (bits per layer), ``quant_size_policies.png`` (accuracy vs size).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from hwnas.graph.blocks import layer_spec
from hwnas.graph.qparams import FLOAT_BITS
from hwnas.quant.plots import plot_policies, plot_weight_bits
from hwnas.quant.policy import save_codes, save_size_policy, save_state
from hwnas.quant.qat import FinetuneConfig, accuracy
from hwnas.quant.qnet import QuantNet
from hwnas.quant.quantize import load_data
from hwnas.quant.size import SIZE_METHODS, finetune_size, search_size, size_problem
from hwnas.runs.rundir import update_run_report

REPORT_KIND = "hwnas-quant-size-report"
BYTES_PER_KB = 1000


def quantize_size_run(config, progress: Callable[[str], None] | None = None) -> dict:
    """Size mode of :func:`hwnas.runs.quantize.quantize_run` (``config.size_kb`` is set)."""
    from hwnas.graph.lower import graph_from_module
    from hwnas.runs.rundir import load_run

    say = progress or (lambda message: None)
    start = time.perf_counter()
    run = load_run(config.run_dir)
    graph = graph_from_module(run.module, run.input_shape)
    say("loading data")
    data = load_data(
        run.data, config.train_images, config.val_images, config.seed, config.select_images
    )
    say(f"{config.coding} codes of {len(graph.layers)} layers at 2..8 bits")
    problem = size_problem(
        graph, data, config.coding, config.size_kb * BYTES_PER_KB, config.torch_device
    )
    ft = FinetuneConfig(steps=config.final_steps, batch_size=config.batch_size, seed=config.seed)
    methods = [config.method]
    if config.baselines:
        methods += [m for m in SIZE_METHODS if m != config.method]
    outcomes = {}
    for method in methods:
        found = search_size(
            problem,
            method,
            config.episodes,
            config.seed,
            lambda r, m=method: say(
                f"{m} episode {r.episode + 1}/{config.episodes}: "
                f"{r.cost / BYTES_PER_KB:.2f} kB, acc {r.accuracy:.2f}%"
            ),
        )
        say(f"{method}: final fine-tune")
        outcomes[method] = (found, finetune_size(problem, found.policy, ft))
    float_net = QuantNet(graph, {})
    report = _report(config, run, problem, outcomes, accuracy(float_net, data.test_x, data.test_y))
    report["search_seconds"] = time.perf_counter() - start
    _write_files(config.run_dir, problem, *outcomes[config.method], report)
    return report


def _method_summary(problem, found, final) -> dict:
    return {
        "policy": list(found.policy),
        "size_bytes": found.size_bytes,
        "satisfied": found.size_bytes <= problem.budget_bytes,
        "accuracy": final.accuracy,
        "evaluated_policies": found.evaluated_policies,
        "episodes": found.episodes,
        "seconds": found.seconds,
        "episode_seconds": found.episode_seconds,
    }


def _report(config, run, problem, outcomes: dict, float_test: float) -> dict:
    found, final = outcomes[config.method]
    w_bits = list(found.policy)
    uniform_fit = [b for b in range(2, 9) if problem.uniform_bytes(b) <= problem.budget_bytes]
    return {
        "schema_version": 1,
        "kind": REPORT_KIND,
        "mode": "size",
        "method": config.method,
        "coding": problem.coding,
        "run": str(config.run_dir),
        "space": run.space,
        "arch": run.arch_text,
        "constraints": [
            {
                "metric": "size_bytes",
                "limit": problem.budget_bytes,
                "priced": found.size_bytes,
                "satisfied": found.size_bytes <= problem.budget_bytes,
            }
        ],
        "accuracy": final.accuracy,  # val/test, before/after the final fine-tune
        "float_accuracy": {"val": problem.float_accuracy, "test": float_test},
        "sizes": {
            "float_bytes": problem.uniform_bytes(FLOAT_BITS),
            "uniform_8bit_bytes": problem.uniform_bytes(8),
            "smallest_bytes": problem.uniform_bytes(2),
            "largest_uniform_bits_that_fit": uniform_fit[-1] if uniform_fit else None,
            "note": "priced weight bytes (codes + scales or codebooks); biases and the graph "
            "are not counted",
        },
        "policy": {
            "layers": len(w_bits),
            "w_bits": w_bits,
            "mean_w_bits": sum(w_bits) / len(w_bits),
            "layer_bytes": [int(problem.cost(i, b)) for i, b in enumerate(w_bits)],
        },
        "search": {
            "episodes": found.episodes,
            "episode_seconds": found.episode_seconds,
            "evaluated_policies": found.evaluated_policies,
            "seconds": found.seconds,
            "precompute_seconds": problem.table.seconds,
            "final_steps": final.steps,
            **found.details,
        },
        "methods": {m: _method_summary(problem, f, t) for m, (f, t) in outcomes.items()},
        "config": config.to_dict(),
    }


def _export_packed(path: Path, problem, final) -> dict:
    """Write the packed ONNX file and check it against the fine-tuned model on the test split."""
    import torch

    from hwnas.export.api import write_packed
    from hwnas.export.onnx_writer import graph_to_onnx
    from hwnas.export.verify import agreement, run_onnx

    data = write_packed(final.net.coded_graph(), final.codes, "onnx")
    path.write_bytes(data)
    x, y = problem.data.test_x, problem.data.test_y
    final.net.eval()
    with torch.no_grad():
        ref = torch.cat([final.net(x[i : i + 256].to(problem.torch_device)).cpu()
                         for i in range(0, len(x), 256)]).numpy()  # fmt: skip
    check = agreement(run_onnx(data, x.numpy()), ref, y.numpy())
    return {
        "file": str(path),
        "file_bytes": len(data),
        "fp32_file_bytes": len(graph_to_onnx(problem.graph)),
        "priced_bytes": final.size_bytes,
        "verification": check.to_dict(),
    }


def _write_files(run_dir: Path, problem, found, final, report: dict) -> None:
    graph = problem.graph
    names = problem.names
    specs = [layer_spec(graph, layer).key() for layer in graph.layers]
    meta = {"mode": "size", "coding": problem.coding, "method": found.method}
    save_size_policy(
        run_dir / "quant_size_policy.json",
        names,
        specs,
        found.policy,
        report["policy"]["layer_bytes"],
        meta,
    )
    save_codes(run_dir / "quant_size_codes", final.codes, meta)
    save_state(run_dir / "quant_size_model", QuantNet(final.net.coded_graph(), {}).to_state(), meta)
    report["export"] = _export_packed(run_dir / "quant_size_model.onnx", problem, final)
    kb = found.size_bytes / BYTES_PER_KB
    plot_weight_bits(
        run_dir / "quant_size_bits.png",
        names,
        found.policy,
        f"{found.method} {problem.coding} policy: {kb:.2f} kB "
        f"(budget {problem.budget_bytes / BYTES_PER_KB:g} kB)",
    )
    history = found.details.get("history", [])
    plot_policies(
        run_dir / "quant_size_policies.png",
        history,
        problem.budget_bytes,
        {"size_bytes": found.size_bytes, "accuracy": final.accuracy["val"]["after"]},
        None,
        metric="size_bytes",
    )
    report["files"] = {
        k: str(run_dir / v)
        for k, v in (
            ("policy", "quant_size_policy.json"),
            ("codes", "quant_size_codes.json"),
            ("model", "quant_size_model.json"),
            ("onnx", "quant_size_model.onnx"),
            ("report", "quant_size_report.json"),
            ("bits_plot", "quant_size_bits.png"),
            ("policies_plot", "quant_size_policies.png"),
        )
    }
    (run_dir / "quant_size_report.json").write_text(json.dumps(report, indent=2, allow_nan=False))
    update_run_report(
        run_dir,
        "quantization_size",
        {k: report[k] for k in ("method", "coding", "constraints", "accuracy", "policy")},
    )
