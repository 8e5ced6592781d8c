"""``hwnas quantize``: HAQ mixed precision under a latency or a model-size budget.

``--run DIR --device D --latency-ms X [--method haq|random|greedy|uniform|dfq]``: times every
layer of the run's network on the device at every precision its runtime executes (fp32, fp16,
int8, dyn_int8, int16x8; fp32 and int8 are offered, int8 only if the int8 network is faster,
the others are reported), searches per-layer fp32/int8 under the latency budget (HAQ's DDPG
agent, random policies, greedy sensitivity, uniform int8, or DFQ's relaxation; each policy
scored on real validation images after calibration; 600 episodes by default, as in the paper),
times the policy end to end (tightening it while it misses the budget), fine-tunes it and
writes the policy, the model, a report and plots into the run directory; ``--baselines`` also runs the other methods through the same steps. A budget
below the cheapest achievable latency, or one uniform int8 cannot meet, exits 2.

``--run DIR --size-kb X [--coding kmeans|linear] [--method haq|random|greedy|uniform]``: HAQ's
model-size mode (no device): per-layer weight bits 2..8 with activations float, priced in
stored weight bytes (1 kB = 1000 bytes), 600 episodes by default (each a validation pass of
precomputed codes), then a final fine-tune; ``--baselines`` also runs the other methods. A
budget below the all-2-bit size exits 2 and names the smallest and largest sizes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hwnas.cli._common import add_json_flag, emit, status_line


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize", help="HAQ mixed-precision quantization under a latency or size budget"
    )
    p.add_argument("--run", required=True, help="run directory of a search")
    p.add_argument("--device", help="device to measure on (must have an agent; latency mode only)")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--latency-ms", type=float, help="latency budget (ms) on --device")
    budget.add_argument(
        "--size-kb", type=float, help="model-size budget: priced weight kB (1 kB = 1000 bytes)"
    )
    p.add_argument(
        "--coding",
        choices=("kmeans", "linear"),
        help="size mode's weight coding (default kmeans, as HAQ's size experiments)",
    )
    p.add_argument(
        "--method",
        default="haq",
        choices=("haq", "random", "greedy", "uniform", "dfq"),
        help="quantization method (default haq)",
    )
    p.add_argument(
        "--baselines",
        action="store_true",
        help="also run the other methods on the same evaluator (and, latency mode, the same "
        "hardware check) and report them",
    )
    p.add_argument(
        "--dfq-steps",
        type=int,
        default=150,
        help="latency mode, dfq: alternations per DFQ search (default 150)",
    )
    p.add_argument(
        "--episodes",
        type=int,
        help="HAQ episodes (default 600, the paper's schedule)",
    )
    p.add_argument(
        "--search-steps",
        type=int,
        default=0,
        help="latency mode: fine-tune SGD steps per scored policy (default 0: calibrate and "
        "validate; the paper's linear mode fine-tunes an epoch)",
    )
    p.add_argument(
        "--final-steps",
        type=int,
        default=300,
        help="fine-tune SGD steps of the chosen policy (default 300)",
    )
    p.add_argument(
        "--train-images",
        type=int,
        default=4096,
        help="train images for calibration and fine-tuning (default 4096)",
    )
    p.add_argument(
        "--val-images",
        type=int,
        default=1000,
        help="validation images that score a policy (default 1000)",
    )
    p.add_argument(
        "--select-images",
        type=int,
        default=0,
        help="size mode: re-score haq's and random's 10 best-rewarded policies on this many "
        "further validation images and take the best there (default 0: the best reward)",
    )
    p.add_argument(
        "--simulate-bits",
        action="store_true",
        help="also offer 2-7 bit integer layers (accuracy simulation: they run and "
        "cost as int8 on the device)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for fine-tuning (default 1; more oversubscribes shared CPUs)",
    )
    p.add_argument("--warmup", type=int, default=10, help="untimed runs per model (default 10)")
    p.add_argument("--repeats", type=int, default=30, help="timed runs per model (default 30)")
    p.add_argument(
        "--torch-device",
        default="cpu",
        help="torch device for fine-tuning (default cpu; e.g. cuda)",
    )
    add_json_flag(p)
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from hwnas.runs.measure import MeasureSettings
    from hwnas.runs.quantize import QuantizeConfig, quantize_run

    config = QuantizeConfig(
        run_dir=Path(args.run),
        device=args.device,
        latency_ms=args.latency_ms,
        size_kb=args.size_kb,
        coding=args.coding,
        method=args.method,
        baselines=args.baselines,
        episodes=args.episodes,
        search_steps=args.search_steps,
        dfq_steps=args.dfq_steps,
        final_steps=args.final_steps,
        train_images=args.train_images,
        val_images=args.val_images,
        select_images=args.select_images,
        simulate_bits=args.simulate_bits,
        seed=args.seed,
        threads=args.threads,
        torch_device=args.torch_device,
        measure=MeasureSettings(warmup=args.warmup, repeats=args.repeats),
    )
    report = quantize_run(config, progress=status_line)
    status_line()
    emit(report, args.json, _render)
    return 0


def _render(r: dict) -> str:
    if r.get("mode") == "size":
        return _render_size(r)
    c = r["constraints"][0]
    p = r["policy"]
    lines = [
        f"{r['method']} on {r['device']} ({r['runtime'].get('name')} "
        f"{r['runtime'].get('version')}): "
        f"{p['int8_layers']}/{p['layers']} layers int8 "
        f"(int8 weights {r['precisions']['int8_weight_bits']} bits)",
        f"  latency: measured {c['measured']:.3f} ms, predicted {c['predicted']:.3f} ms, "
        f"budget {c['limit']:g} ms -> {'met' if c['satisfied'] else 'MISSED'}",
        f"  accuracy: val {r['accuracy']['val']:.2f} %, test {r['accuracy']['test']:.2f} % "
        f"(float val {r['float_accuracy']['val']:.2f} %)",
        "  uniform networks: "
        + ", ".join(f"{k} {v:.3f} ms" for k, v in r["latency"]["network_ms"].items()),
    ]
    for name, m in r["precisions"]["measured"].items():
        lines.append(f"  {name}: median layer {m['median_ratio_to_fp32']:.2f}x fp32, {m['status']}")
    for name, m in r["methods"].items():
        if name == r["method"]:
            continue
        if "infeasible" in m:
            lines.append(f"  {name}: infeasible ({m['infeasible']})")
            continue
        lines.append(
            f"  {name}: {m['int8_layers']} int8 layers, measured {m['measured_ms']:.3f} ms, val "
            f"{m['val_accuracy']:.2f} -> {m['accuracy']['val']:.2f} %, test "
            f"{m['accuracy']['test']:.2f} %, {m['evaluated_policies']} evaluated"
        )
    lines.append(
        f"  files: {r['files']['policy']}, {r['files']['report']}, {r['files']['bits_plot']}"
    )
    return "\n".join(lines)


def _render_size(r: dict) -> str:
    c = r["constraints"][0]
    acc = r["accuracy"]
    s = r["search"]
    episodes = (
        f"{s['episodes']} episodes, {s['episode_seconds']:.3f} s each, " if s["episodes"] else ""
    )
    lines = [
        f"{r['method']} ({r['coding']}) on {r['arch']}: mean {r['policy']['mean_w_bits']:.2f} "
        f"weight bits over {r['policy']['layers']} layers (activations float)",
        f"  size: {c['priced'] / 1000:.3f} kB priced, budget {c['limit'] / 1000:g} kB -> "
        f"{'met' if c['satisfied'] else 'MISSED'} (uniform 8-bit "
        f"{r['sizes']['uniform_8bit_bytes'] / 1000:.3f} kB, fp32 "
        f"{r['sizes']['float_bytes'] / 1000:.3f} kB)",
        f"  accuracy: val {acc['val']['before']:.2f} -> {acc['val']['after']:.2f} %, test "
        f"{acc['test']['before']:.2f} -> {acc['test']['after']:.2f} % (before -> after "
        f"fine-tune; float val {r['float_accuracy']['val']:.2f} %)",
        f"  search: {episodes}{s['evaluated_policies']} policies evaluated",
    ]
    for m, o in r["methods"].items():
        if m != r["method"]:
            lines.append(
                f"  {m}: {o['size_bytes'] / 1000:.3f} kB, val {o['accuracy']['val']['before']:.2f}"
                f" -> {o['accuracy']['val']['after']:.2f} %, test "
                f"{o['accuracy']['test']['after']:.2f} %, {o['evaluated_policies']} evaluated"
            )
    e = r["export"]
    lines.append(
        f"  deployable: {e['file']} ({e['file_bytes'] / 1000:.1f} kB, fp32 file "
        f"{e['fp32_file_bytes'] / 1000:.1f} kB; onnxruntime agrees with the fine-tuned model on "
        f"{100 * e['verification']['agreement']:.1f} % of {e['verification']['n']} test images)"
    )
    lines.append(f"  files: {r['files']['policy']}, {r['files']['report']}")
    return "\n".join(lines)
