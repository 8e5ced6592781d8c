"""Measurement truth: the agent's median on ``local`` against an independent onnxruntime loop.

For a few conv / inverted-bottleneck ONNX models (and one whole FBNet network), alternate in the
same run: the agent (a subprocess, pinned by itself) measures the model, then this script times the
same model with a plain onnxruntime loop pinned to the same core with the same thread count. The
figure is the ratio agent / plain of the medians (target 0.95-1.05), with the spread p90/p10 of the
agent's samples and the round-to-round spread of both medians.

Run: ``python bench/agent_truth.py [--rounds 7] [--repeats 200]``
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result
from hwnas.blocks.export import export_onnx, spec_to_onnx
from hwnas.blocks.specs import ConvSpec, IBSpec
from hwnas.blocks.torch_blocks import build_sequential
from hwnas.devices.connect import open_device
from hwnas.spaces import fbnet_geometry as fb


def models() -> dict[str, bytes]:
    specs = {
        "conv3x3_c16_32px": ConvSpec(h=32, w=32, cin=16, cout=16, kernel=3),
        "ib_k3_e6_32px_c24": IBSpec.fbnet(32, 24, 24, 3, 1, 6),
        "ib_k5_e6_8px_c112": IBSpec.fbnet(8, 112, 112, 5, 1, 6),
        "ib_k3_e1_g2_4px_c184": IBSpec.fbnet(4, 184, 184, 3, 1, 1, groups=2),
    }
    out = {name: spec_to_onnx(spec) for name, spec in specs.items()}
    arch = tuple(np.random.default_rng(0).integers(0, 9, fb.NUM_LAYERS).tolist())
    fixed = fb.fixed_specs(32, 10)
    net = build_sequential([fixed[0], *fb.arch_specs(arch), *fixed[1:]])
    out["fbnet_" + fb.format_arch(arch)] = export_onnx(net, (1, 3, 32, 32))
    return out


def plain_loop(session, feed: dict, warmup: int, repeats: int) -> list[float]:
    """The independent timing: a bare loop around ``session.run`` (ms)."""
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - t0) / 1e6)
    return samples


def plain_session(model: bytes):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, sess_options=so, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(
        [d if isinstance(d, int) else 1 for d in inp.shape]
    )
    return sess, {inp.name: x.astype(np.float32)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()
    nets = models()
    figures: dict[str, dict] = {}
    with open_device("local", timeout_s=120) as agent:
        core = agent.hello()["default_core"]
        os.sched_setaffinity(0, {core})  # the plain loop runs on the agent's core
        sessions = {name: plain_session(m) for name, m in nets.items()}
        agent_medians = {n: [] for n in nets}
        plain_medians = {n: [] for n in nets}
        spreads = {n: [] for n in nets}
        for _ in range(args.rounds):
            for name, model in nets.items():
                m = agent.measure(model, warmup=args.warmup, repeats=args.repeats, core=core)
                agent_medians[name].append(m.stats.median_ms)
                spreads[name].append(m.stats.spread)
                sess, feed = sessions[name]
                plain_medians[name].append(
                    float(np.median(plain_loop(sess, feed, args.warmup, args.repeats)))
                )
    for name in nets:
        a, p = np.array(agent_medians[name]), np.array(plain_medians[name])
        ratios = a / p
        figures[name] = {
            "agent_median_ms": float(np.median(a)),
            "plain_median_ms": float(np.median(p)),
            "ratio_agent_over_plain": float(np.median(ratios)),
            "ratio_min": float(ratios.min()),
            "ratio_max": float(ratios.max()),
            "agent_spread_p90_over_p10": float(np.median(spreads[name])),
            "agent_round_spread_max_over_min": float(a.max() / a.min()),
            "plain_round_spread_max_over_min": float(p.max() / p.min()),
        }
        f = figures[name]
        print(
            f"{name:<58} agent {f['agent_median_ms']:.4f} ms  plain {f['plain_median_ms']:.4f} ms  "
            f"ratio {f['ratio_agent_over_plain']:.3f} [{f['ratio_min']:.3f}, {f['ratio_max']:.3f}]  "
            f"p90/p10 {f['agent_spread_p90_over_p10']:.3f}"
        )
    ratios = [f["ratio_agent_over_plain"] for f in figures.values()]
    summary = {
        "target": "ratio within 0.95-1.05",
        "ratio_median_over_models": float(np.median(ratios)),
        "models_within_target": int(sum(0.95 <= r <= 1.05 for r in ratios)),
        "models": len(ratios),
        "core": core,
        "rounds": args.rounds,
        "repeats": args.repeats,
    }
    print(f"summary: {summary}")
    write_result(
        "agent_truth", {"summary": summary, "models": figures}, " ".join(["python", *sys.argv])
    )


if __name__ == "__main__":
    main()
