"""HAQ mixed precision vs uniform int8 vs fp32 at the same latency budget, measured on ``local``.

Phases (the search never needs the device: it reads the cost model from the run's LUT file, so
it can run where training is fast and the numbers still come from the target)::

    python bench/haq.py train   --run R [--arch A] [--epochs N] [--torch-device cuda]
    python bench/haq.py prepare --run R                  # on the device: per-layer LUT
    python bench/haq.py search  --run R [--torch-device cuda] [--episodes N]
    python bench/haq.py measure --run R                  # on the device: export, time, accuracy

``measure`` writes ``bench/results/haq.json``. The budget (default) is the midpoint between the
measured uniform-int8 and fp32 latencies of the network, so uniform int8 fits and fp32 does not;
all three variants get the same fine-tune budget.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The median-latency architecture of HW-NAS-Bench's Raspberry Pi 4 file (not searched: until a
# search run is given with --run, this stands in for "a searched model").
DEFAULT_ARCH = "8-0-4-7-2-7-4-1-4-4-2-3-6-8-8-2-4-8-6-6-8-2"
DATA = {"name": "fashion-mnist", "root": "hwnas/data/shipped"}  # the same images everywhere
VARIANTS = ("haq", "int8", "fp32")


def train(args: argparse.Namespace) -> None:
    """Train the FBNet network of ``--arch`` at full width and write a run directory."""
    import torch

    from hwnas.data import DataConfig, load_dataset
    from hwnas.quant.qat import accuracy
    from hwnas.runs.rundir import write_run
    from hwnas.spaces.base import SpaceConfig, create_space

    space = create_space("fbnet", SpaceConfig(resolution=args.resolution, num_classes=10))
    arch = space.parse_arch(args.arch)
    net = space.build_net(arch, width=args.width, seed=0).to(args.torch_device)
    splits = load_dataset(DataConfig(**DATA, resolution=args.resolution))
    x, y = (t[: args.train_images] for t in splits.train.tensors)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=4e-5, nesterov=True)
    steps = args.epochs * ((len(y) + 127) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.1, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        net.train()
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), 128):
            idx = order[i : i + 128]
            xb, yb = x[idx].to(args.torch_device), y[idx].to(args.torch_device)
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        acc = accuracy(net.eval(), *splits.val.tensors)
        print(f"epoch {epoch + 1}: val {acc:.2f} % ({time.perf_counter() - start:.0f} s)")
    net = net.cpu().eval()
    config = {
        "resolution": args.resolution,
        "num_classes": 10,
        "width": args.width,
        "data": DATA,
        "seed": 0,
        "note": f"bench/haq.py train: {args.epochs} epochs, SGD one-cycle",
    }
    report = {
        "space": "fbnet",
        "arch": args.arch,
        "method": "fixed (bench)",
        "accuracy": {"val": acc, "test": accuracy(net, *splits.test.tensors)},
    }
    write_run(args.run, "fbnet", args.arch, net, config, report)


def prepare(args: argparse.Namespace) -> None:
    """Profile the local device for the run's network (writes ``quant_lut.json``)."""
    from hwnas.devices.connect import open_device
    from hwnas.graph.lower import graph_from_module
    from hwnas.runs.measure import MeasureSettings
    from hwnas.runs.profile import profile_device
    from hwnas.runs.rundir import load_run

    run = load_run(args.run)
    graph = graph_from_module(run.module, run.input_shape)
    with open_device("local") as client:
        profile = profile_device(
            client,
            "local",
            graph,
            "onnx",
            MeasureSettings(10, 50),
            Path(args.run) / "quant_lut.json",
        )
    print(
        json.dumps(
            {
                "network_ms": profile.cost.network_ms,
                "scale": profile.cost.scale,
                "int8_weight_bits": profile.int8_weight_bits,
            }
        )
    )


def search(args: argparse.Namespace) -> None:
    """HAQ under the budget + the two uniform baselines, same fine-tune budget for all."""
    from hwnas.graph.lower import graph_from_module
    from hwnas.graph.qparams import LayerBits
    from hwnas.lut.schema import load_lut
    from hwnas.quant.haq_env import device_choices
    from hwnas.quant.policy import save_state
    from hwnas.quant.profile import cost_from_lut
    from hwnas.quant.qat import accuracy, torch_threads
    from hwnas.quant.quantize import load_data, quantized_net, run_search
    from hwnas.runs.quantize import QuantizeConfig
    from hwnas.runs.rundir import load_run

    run_dir = Path(args.run)
    run = load_run(run_dir)
    graph = graph_from_module(run.module, run.input_shape)
    cost, w_max = cost_from_lut(load_lut(run_dir / "quant_lut.json"), graph)
    int8_ms, fp32_ms = cost.uniform_ms("int8"), cost.uniform_ms("fp32")
    budget = args.latency_ms or 0.5 * (int8_ms + fp32_ms)
    config = QuantizeConfig(
        run_dir,
        "local",
        budget,
        episodes=args.episodes,
        search_steps=args.search_steps,
        final_steps=args.final_steps,
        train_images=args.train_images,
        val_images=args.val_images,
        torch_device=args.torch_device,
        threads=args.threads,
    )
    names = [layer.name for layer in graph.layers]
    out = run_dir / "bench_haq"
    out.mkdir(exist_ok=True)
    start = time.perf_counter()
    with torch_threads(args.threads):
        data = load_data(run.data, config.train_images, config.val_images, config.seed)
        choices = device_choices(len(names), int8_ms < fp32_ms, w_max, args.simulate_bits)
        result, float_acc = run_search(
            graph,
            cost,
            choices,
            data,
            config,
            lambda r: print(f"episode {r.episode}: {r.latency_ms:.3f} ms {r.accuracy:.2f} %"),
        )
        haq_policy, checked, budget_used = _check_on_device(
            graph, cost, choices, list(result.best.policy), data, config
        )
        policies = {
            "haq": haq_policy,
            "int8": [LayerBits(w_max, 8)] * len(names),
            "fp32": [LayerBits(32, 32)] * len(names),
        }
        summary = {}
        for variant, policy in policies.items():
            net = quantized_net(graph, dict(zip(names, policy)), data, config.final_steps, config)
            summary[variant] = {
                "predicted_ms": cost.latency_ms(policy),
                "int8_layers": sum(not b.is_float for b in policy),
                "torch_val": accuracy(net, data.val_x, data.val_y),
                "torch_test": accuracy(net, data.test_x, data.test_y),
            }
            save_state(out / variant, net.cpu().to_state())
            print(variant, summary[variant])
    doc = {
        "budget_ms": budget,
        "uniform_ms": {"int8": int8_ms, "fp32": fp32_ms},
        "float_val_before_finetune": float_acc,
        "config": config.to_dict(),
        "search_seconds": time.perf_counter() - start,
        "variants": summary,
        "history": [r.to_dict() for r in result.history],
        "hardware_check": {
            "searched_policy_predicted_ms": result.best.latency_ms,
            "searched_policy_int8_layers": sum(not b.is_float for b in result.best.policy),
            "final_policy_measured_ms": checked,
            "budget_used_ms": budget_used,
        },
    }
    (out / "search.json").write_text(json.dumps(doc, indent=2))


def _check_on_device(graph, cost, choices, policy, data, config):
    """``hwnas quantize``'s end-to-end check and repair of the HAQ policy, on local."""
    from hwnas.devices.connect import open_device
    from hwnas.runs.quantize import hardware_check

    if os.environ.get("HWNAS_BENCH_NO_DEVICE"):  # searching where the device is unreachable
        return policy, None, config.latency_ms
    searched = cost.latency_ms(policy)
    with open_device("local") as client:
        policy, measured, budget = hardware_check(
            client, graph, cost, choices, policy, data, config, "onnx"
        )
    print(
        f"hardware check: searched policy predicted {searched:.3f} ms; final policy "
        f"measured {measured.stats.median_ms:.3f} ms (budget used {budget:.3f} ms)"
    )
    return policy, measured.stats.median_ms, budget


def measure(args: argparse.Namespace) -> None:
    """Export each variant to ONNX, time it on local (interleaved rounds), test accuracy in ORT."""
    import numpy as np

    from bench._common import write_result
    from hwnas.data import DataConfig, load_dataset
    from hwnas.devices.connect import open_device
    from hwnas.export.api import runtime_options
    from hwnas.export.onnx_writer import graph_to_onnx
    from hwnas.export.verify import run_onnx
    from hwnas.quant.policy import load_state
    from hwnas.runs.measure import MeasureSettings, measure_model
    from hwnas.runs.rundir import load_run

    run_dir = Path(args.run)
    out = run_dir / "bench_haq"
    doc = json.loads((out / "search.json").read_text())
    run = load_run(run_dir)
    test_x, test_y = (t.numpy() for t in load_dataset(DataConfig(**run.data)).test.tensors)
    models = {}
    for variant in VARIANTS:
        state = load_state(out / variant)
        quantized = any(not b.is_float for b in state.policy.values())
        data = graph_to_onnx(state.graph, state if quantized else None, variant)
        options = runtime_options("onnx", quantized)
        pred = run_onnx(data, test_x, options).argmax(1)
        models[variant] = (data, options, 100.0 * float((pred == test_y).mean()))
    rounds: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with open_device("local") as client:
        for _ in range(args.rounds):
            for variant in VARIANTS:
                data, options, _ = models[variant]
                m = measure_model(client, data, MeasureSettings(10, args.repeats), options)
                rounds[variant].append(m.stats.median_ms)
    figures = {
        "budget_ms": doc["budget_ms"],
        "arch": run.arch_text,
        "test_images": len(test_y),
        "variants": {},
    }
    for variant in VARIANTS:
        measured = float(np.median(rounds[variant]))
        figures["variants"][variant] = {
            **doc["variants"][variant],
            "onnx_test_accuracy": models[variant][2],
            "measured_ms": measured,
            "round_medians_ms": rounds[variant],
            "meets_budget": measured <= doc["budget_ms"],
        }
    v = figures["variants"]
    figures["haq_minus_int8_test_points"] = (
        v["haq"]["onnx_test_accuracy"] - v["int8"]["onnx_test_accuracy"]
    )
    figures["haq_minus_fp32_test_points"] = (
        v["haq"]["onnx_test_accuracy"] - v["fp32"]["onnx_test_accuracy"]
    )
    figures["search"] = {
        k: doc[k] for k in ("config", "search_seconds", "uniform_ms", "hardware_check")
    }
    figures["search"]["episodes"] = len(doc["history"])
    path = write_result("haq", figures, command=" ".join(["python", *sys.argv]))
    print(json.dumps(figures["variants"], indent=1))
    print(f"written {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("phase", choices=("train", "prepare", "search", "measure"))
    parser.add_argument("--run", required=True, help="run directory")
    parser.add_argument("--arch", default=DEFAULT_ARCH)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=32, help="train: input pixels")
    parser.add_argument("--width", type=float, default=1.0, help="train: width multiplier")
    parser.add_argument("--torch-device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-ms", type=float, default=None)
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--search-steps", type=int, default=40)
    parser.add_argument("--final-steps", type=int, default=600)
    parser.add_argument("--train-images", type=int, default=9000)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--simulate-bits", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    os.chdir(ROOT)  # the run's data root is relative to the repository
    from hwnas.quant.qat import torch_threads

    with torch_threads(args.threads):
        {"train": train, "prepare": prepare, "search": search, "measure": measure}[args.phase](args)


if __name__ == "__main__":
    main()
