"""Every precision the runtimes here execute, per layer and whole network, on ``local``.

::

    python bench/precisions.py [--formats onnx tflite] [--repeats 30] [--layer-rounds 3]
                               [--network-rounds 7] [--max-layers N] [--name precisions_local]

A full-width FBNet network (HW-NAS-Bench's median-latency Pi-4 architecture, the one
``docs/precision.md`` used; untrained weights, which do not change which kernels run) is written
at fp32, fp16, int8, dynamic-range int8 and 16x8 (:mod:`hwnas.export.precisions`) for
onnxruntime and for LiteRT. Every distinct layer of it is timed alone at every precision, the
precisions of a layer back to back and the whole list in ``--layer-rounds`` rounds, and the
whole network at every uniform precision in ``--network-rounds`` interleaved rounds
(:func:`hwnas.runs.profile.measure_precisions`). Printed per format and precision: the median
over layers of (layer at the precision / layer at fp32), its range, and how many layers ran more
than 10 % faster than fp32 (and how many of those beyond the spread: p90 below fp32's p10);
the whole network's ratio is the median of the per-round ratios. Then what a per-layer choice
could gain: the sum over the network's layers of each layer's fastest precision (relative to
all-fp32) when only fp32/int8 are offered and when every precision is, and the layers where a
precision other than fp32/int8 beats the faster of the two beyond the spread. Writes
``bench/results/<name>.json`` with the per-layer table and the CPU's int8 instruction sets.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ARCH = "8-0-4-7-2-7-4-1-4-4-2-3-6-8-8-2-4-8-6-6-8-2"  # docs/precision.md's network
FASTER = 0.9  # "faster" = at most 90 % of fp32's time


def network_graph():
    """The folded graph of the full-width FBNet ``ARCH`` (32 px, 10 classes)."""
    from hwnas.graph.lower import graph_from_module
    from hwnas.spaces.base import SpaceConfig, create_space

    space = create_space("fbnet", SpaceConfig(resolution=32, num_classes=10))
    net = space.build_net(space.parse_arch(ARCH), seed=0).eval()
    return graph_from_module(net, (1, 3, 32, 32))


def first_layers(graph, max_layers: int) -> set | None:
    """Spec keys of the first ``max_layers`` distinct layers (None: every layer)."""
    if not max_layers:
        return None
    from hwnas.graph.blocks import layer_spec

    keys = dict.fromkeys(layer_spec(graph, layer).key() for layer in graph.layers)
    return set(list(keys)[:max_layers])


def summarize(profile, keep: set | None) -> dict:
    """Per precision: layer ratios to fp32 and the whole network's per-round ratio."""
    keys = [k for k in dict.fromkeys(profile.keys) if keep is None or k in keep]
    out = {}
    fp32_rounds = np.array(profile.network_rounds_ms["fp32"])
    for precision in profile.precisions:
        if precision == "fp32":
            continue
        ratios, beyond = [], 0
        for key in keys:
            base, cand = profile.table[(key, "fp32")], profile.table[(key, precision)]
            ratio = cand["median_ms"] / base["median_ms"]
            ratios.append(ratio)
            beyond += ratio < FASTER and cand["p90_ms"] < base["p10_ms"]
        ratios = np.array(ratios)
        per_round = np.array(profile.network_rounds_ms[precision]) / fp32_rounds
        out[precision] = {
            "layer_ratio_median": float(np.median(ratios)),
            "layer_ratio_min": float(ratios.min()),
            "layer_ratio_max": float(ratios.max()),
            "layers_faster_10pct": int((ratios < FASTER).sum()),
            "layers_faster_beyond_spread": int(beyond),
            "layers": len(keys),
            "network_ms": profile.network_ms[precision],
            "network_ratio": float(np.median(per_round)),
            "network_ratio_min": float(per_round.min()),
            "network_ratio_max": float(per_round.max()),
        }
    return out


def best_choices(profile, keep: set | None) -> dict:
    """Sum over the network's layers of each layer's fastest precision, relative to all-fp32.

    With only fp32/int8 offered and with every precision offered: if the two sums agree, the
    extra precisions give a per-layer latency search (HAQ's latency mode) nothing to gain.
    """
    keys = [k for k in profile.keys if keep is None or k in keep]
    fp32 = sum(profile.table[(k, "fp32")]["median_ms"] for k in keys)
    out = {}
    for name, offered in (("fp32_int8", ("fp32", "int8")), ("all", profile.precisions)):
        picks = [min(offered, key=lambda p: profile.table[(k, p)]["median_ms"]) for k in keys]
        total = sum(profile.table[(k, p)]["median_ms"] for k, p in zip(keys, picks))
        out[name] = {
            "sum_over_fp32": total / fp32,
            "picked": {p: picks.count(p) for p in offered if picks.count(p)},
        }
    out["layers"] = len(keys)
    wins = []  # an extra precision beating the faster of fp32/int8 beyond the spread
    for key in dict.fromkeys(keys):
        base = min(("fp32", "int8"), key=lambda p: profile.table[(key, p)]["median_ms"])
        b = profile.table[(key, base)]
        for p in profile.precisions:
            c = profile.table[(key, p)]
            if p not in ("fp32", "int8") and c["p90_ms"] < b["p10_ms"]:
                wins.append(
                    {
                        "key": key,
                        "precision": p,
                        "over": base,
                        "ratio": c["median_ms"] / b["median_ms"],
                    }
                )
    out["extra_wins_beyond_spread"] = wins
    return out


def layer_rows(profile, keep: set | None) -> list[dict]:
    from hwnas.blocks.specs import parse_key

    rows = []
    for key in dict.fromkeys(profile.keys):
        if keep is not None and key not in keep:
            continue
        row = {"key": key, "mmacs": parse_key(key).flops() / 1e6}
        for p in profile.precisions:
            entry = profile.table[(key, p)]
            row[p] = {
                "median_ms": entry["median_ms"],
                "p10_ms": entry["p10_ms"],
                "p90_ms": entry["p90_ms"],
                "rounds_ms": entry["rounds_ms"],
            }
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--formats", nargs="+", default=["onnx", "tflite"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--layer-rounds", type=int, default=3)
    parser.add_argument("--network-rounds", type=int, default=7)
    parser.add_argument("--max-layers", type=int, default=0, help="distinct layers (0: all)")
    parser.add_argument("--name", default="precisions_local")
    args = parser.parse_args()
    os.chdir(ROOT)

    from bench._common import write_result
    from bench.quant_export import cpu_int8_features
    from hwnas.devices.connect import open_device
    from hwnas.export.precisions import PRECISIONS
    from hwnas.quant.calibrate import int8_state
    from hwnas.quant.qat import torch_threads
    from hwnas.runs.measure import MeasureSettings, probe_int8_weight_bits
    from hwnas.runs.profile import measure_precisions

    settings = MeasureSettings(warmup=args.warmup, repeats=args.repeats)
    with torch_threads(1):
        graph = network_graph()
    keep = first_layers(graph, args.max_layers)
    figures: dict = {
        "arch": ARCH,
        "layers_in_network": len(graph.layers),
        "settings": settings.to_dict(),
        "layer_rounds": args.layer_rounds,
        "network_rounds": args.network_rounds,
        "faster_threshold": FASTER,
        "formats": {},
    }
    start = time.perf_counter()
    with open_device("local") as client:
        figures["fingerprint"] = client.fingerprint()
        figures["cpu_int8_features"] = cpu_int8_features()
        for fmt in args.formats:
            w_bits = probe_int8_weight_bits(client, fmt)
            with torch_threads(1):
                state = int8_state(graph, w_bits=w_bits)
            profile = measure_precisions(
                client,
                graph,
                fmt,
                PRECISIONS,
                settings,
                state,
                network_rounds=args.network_rounds,
                layer_rounds=args.layer_rounds,
                progress=functools.partial(_progress, fmt),
                only=keep,
            )
            summary = summarize(profile, keep)
            figures["formats"][fmt] = {
                "runtime": profile.runtime,
                "int8_weight_bits": w_bits,
                "summary": summary,
                "best_per_layer": best_choices(profile, keep),
                "network_rounds_ms": profile.network_rounds_ms,
                "layers": layer_rows(profile, keep),
            }
            for p, s in summary.items():
                print(
                    f"{fmt:7s} {p:9s} layer/fp32 median {s['layer_ratio_median']:.2f} "
                    f"[{s['layer_ratio_min']:.2f}, {s['layer_ratio_max']:.2f}], "
                    f"faster >10%: {s['layers_faster_10pct']}/{s['layers']} "
                    f"(beyond spread {s['layers_faster_beyond_spread']}); network "
                    f"{s['network_ms']:.2f} ms = x{s['network_ratio']:.2f} "
                    f"[{s['network_ratio_min']:.2f}, {s['network_ratio_max']:.2f}]"
                )
            best = figures["formats"][fmt]["best_per_layer"]
            print(
                f"{fmt:7s} fastest precision per layer, sum / fp32: fp32+int8 "
                f"{best['fp32_int8']['sum_over_fp32']:.3f} {best['fp32_int8']['picked']}, all "
                f"{best['all']['sum_over_fp32']:.3f} {best['all']['picked']}"
            )
    figures["wall_s"] = time.perf_counter() - start
    path = write_result(args.name, figures, command=" ".join(["python", *sys.argv]))
    print(f"{figures['wall_s']:.0f} s; written {path}")


def _progress(fmt: str, done: int, total: int) -> None:
    if done % 50 == 0 or done == total:
        print(f"{fmt}: layer models {done}/{total}", flush=True)


if __name__ == "__main__":
    main()
