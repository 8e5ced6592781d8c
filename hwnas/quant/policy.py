"""Bitwidth policies and quantized models on disk: versioned JSON (+ npz arrays), never pickle.

* ``quant_policy.json`` (kind ``hwnas-quant-policy``): one record per layer with its name, the
  block spec timed for it, ``w_bits``, ``a_bits`` and the precision it executes at, plus the
  device, runtime and weight bits of int8 layers it was chosen for.
* ``quant_model.json`` + ``quant_model.npz`` (kind ``hwnas-quant-model``): the folded graph (node
  list), the learned activation ranges, the weight clip ratios and the policy; the npz holds each
  layer's ``<name>.weight`` and ``<name>.bias``. :func:`load_state` gives back the
  :class:`~hwnas.quant.qnet.QuantState` the exporters write.
* ``quant_size_policy.json`` (kind ``hwnas-quant-size-policy``): size mode, one record per
  layer with its name, spec, ``w_bits`` (32 = float; activations stay float) and priced bytes.
* ``quant_size_codes.json`` + ``.npz`` (kind ``hwnas-weight-codes``): each coded layer's
  :class:`~hwnas.graph.wcodes.WeightCode` (bits, kind, codes, table), what a packed exporter
  stores.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hwnas.errors import UserError
from hwnas.graph.nodes import Add, Conv, GlobalPool, Graph, Linear, Shuffle
from hwnas.graph.qparams import LayerBits, TensorQuant, plan_tensors

SCHEMA_VERSION = 1
POLICY_KIND = "hwnas-quant-policy"
MODEL_KIND = "hwnas-quant-model"


def _check(doc: object, kind: str, source: str) -> dict:
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise UserError(f"{source} is not a {kind} file")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"{source}: unsupported schema_version {doc.get('schema_version')!r}")
    return doc


def _read(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _write(path: Path, doc: dict) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def save_policy(
    path: Path, names: Sequence[str], specs: Sequence[str], bits: Sequence[LayerBits], meta: Mapping
) -> Path:
    """Write a policy: ``names``/``specs``/``bits`` per layer, ``meta`` (device, runtime...)."""
    layers = [
        {"name": n, "spec": s, "w_bits": b.w_bits, "a_bits": b.a_bits, "precision": b.precision}
        for n, s, b in zip(names, specs, bits)
    ]
    return _write(
        path, {"schema_version": SCHEMA_VERSION, "kind": POLICY_KIND, **meta, "layers": layers}
    )


def load_policy(path: Path) -> dict[str, LayerBits]:
    """Layer name -> bits of a policy file."""
    doc = _check(_read(path), POLICY_KIND, str(path))
    try:
        return {r["name"]: LayerBits(int(r["w_bits"]), int(r["a_bits"])) for r in doc["layers"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed layer record ({exc})") from None


def _node_record(node: object) -> dict:
    if isinstance(node, Conv):
        return {
            "type": "conv",
            "name": node.name,
            "inp": node.inp,
            "out": node.out,
            "stride": node.stride,
            "groups": node.groups,
            "act": node.act,
        }
    if isinstance(node, Linear):
        return {
            "type": "linear",
            "name": node.name,
            "inp": node.inp,
            "out": node.out,
            "act": node.act,
        }
    if isinstance(node, Add):
        return {"type": "add", "name": node.name, "a": node.a, "b": node.b, "out": node.out}
    if isinstance(node, Shuffle):
        return {
            "type": "shuffle",
            "name": node.name,
            "inp": node.inp,
            "out": node.out,
            "groups": node.groups,
        }
    return {"type": "pool", "name": node.name, "inp": node.inp, "out": node.out}


def save_state(prefix: Path, state: object, meta: Mapping | None = None) -> tuple[Path, Path]:
    """Write ``<prefix>.json`` and ``<prefix>.npz`` for a QuantState; returns both paths."""
    prefix = Path(prefix)
    g = state.graph
    arrays = {}
    for layer in g.layers:
        arrays[f"{layer.name}.weight"] = layer.weight
        arrays[f"{layer.name}.bias"] = layer.bias
    npz = prefix.with_suffix(".npz")
    np.savez(npz, **arrays)
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": MODEL_KIND,
        **(meta or {}),
        "input_shape": list(g.input_shape),
        "input_name": g.input_name,
        "output_name": g.output_name,
        "nodes": [_node_record(n) for n in g.nodes],
        "policy": {k: [b.w_bits, b.a_bits] for k, b in state.policy.items()},
        "clip_ratios": dict(state.clip_ratios),
        "tensors": {t: {"bits": q.bits, "lo": q.lo, "hi": q.hi} for t, q in state.tensors.items()},
        "weights_file": npz.name,
    }
    return _write(prefix.with_suffix(".json"), doc), npz


def load_state(prefix: Path):
    """Read a quantized model written by :func:`save_state`."""
    from hwnas.quant.qnet import QuantState

    prefix = Path(prefix)
    doc = _check(_read(prefix.with_suffix(".json")), MODEL_KIND, str(prefix.with_suffix(".json")))
    with np.load(prefix.with_name(doc["weights_file"]), allow_pickle=False) as arrays:
        nodes = [_node_from_record(r, arrays) for r in doc["nodes"]]
    graph = Graph(tuple(nodes), tuple(doc["input_shape"]), doc["input_name"], doc["output_name"])
    policy = {k: LayerBits(int(w), int(a)) for k, (w, a) in doc["policy"].items()}
    plan = plan_tensors(graph, policy)
    tensors = {
        t: TensorQuant(int(r["bits"]), float(r["lo"]), float(r["hi"]))
        for t, r in doc["tensors"].items()
    }
    if set(tensors) != set(plan.bits):
        raise UserError(f"{prefix}: stored activation ranges do not match the policy's plan")
    return QuantState(
        graph, policy, plan, tensors, {k: float(v) for k, v in doc["clip_ratios"].items()}
    )


def _node_from_record(r: dict, arrays: Mapping) -> object:
    kind = r["type"]
    if kind == "conv":
        return Conv(
            r["name"],
            r["inp"],
            r["out"],
            arrays[f"{r['name']}.weight"],
            arrays[f"{r['name']}.bias"],
            int(r["stride"]),
            int(r["groups"]),
            r["act"],
        )
    if kind == "linear":
        return Linear(
            r["name"],
            r["inp"],
            r["out"],
            arrays[f"{r['name']}.weight"],
            arrays[f"{r['name']}.bias"],
            r["act"],
        )
    if kind == "add":
        return Add(r["name"], r["a"], r["b"], r["out"])
    if kind == "shuffle":
        return Shuffle(r["name"], r["inp"], r["out"], int(r["groups"]))
    if kind == "pool":
        return GlobalPool(r["name"], r["inp"], r["out"])
    raise UserError(f"unknown node type {kind!r} in a quantized model file")


SIZE_POLICY_KIND = "hwnas-quant-size-policy"
CODES_KIND = "hwnas-weight-codes"


def save_size_policy(
    path: Path,
    names: Sequence[str],
    specs: Sequence[str],
    w_bits: Sequence[int],
    layer_bytes: Sequence[int],
    meta: Mapping,
) -> Path:
    """Write a size-mode policy: weight bits (32 = float) and priced bytes per layer."""
    layers = [
        {"name": n, "spec": s, "w_bits": int(b), "bytes": int(nb)}
        for n, s, b, nb in zip(names, specs, w_bits, layer_bytes)
    ]
    return _write(
        path, {"schema_version": SCHEMA_VERSION, "kind": SIZE_POLICY_KIND, **meta, "layers": layers}
    )


def load_size_policy(path: Path) -> dict[str, int]:
    """Layer name -> weight bits of a size-mode policy file."""
    doc = _check(_read(path), SIZE_POLICY_KIND, str(path))
    try:
        return {r["name"]: int(r["w_bits"]) for r in doc["layers"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: malformed layer record ({exc})") from None


def save_codes(prefix: Path, codes: Mapping, meta: Mapping | None = None) -> tuple[Path, Path]:
    """Write layer name -> :class:`~hwnas.graph.wcodes.WeightCode` as ``<prefix>.json`` (bits,
    kind, shape per layer, in order) + ``<prefix>.npz`` (``<name>.planes``: the codes as
    bit-planes, :func:`~hwnas.graph.wcodes.pack_codes`, so they take their priced size;
    ``<name>.table`` float32: scales or codebook). No pickle."""
    from hwnas.graph.wcodes import pack_codes

    prefix = Path(prefix)
    arrays = {}
    for name, code in codes.items():
        arrays[f"{name}.planes"] = pack_codes(code.codes, code.bits)
        arrays[f"{name}.table"] = np.asarray(code.table, np.float32)
    npz = prefix.with_suffix(".npz")
    np.savez_compressed(npz, **arrays)
    layers = [
        {"name": n, "bits": c.bits, "kind": c.kind, "shape": list(c.codes.shape)}
        for n, c in codes.items()
    ]
    doc = {
        "schema_version": SCHEMA_VERSION,
        "kind": CODES_KIND,
        **(meta or {}),
        "layers": layers,
        "arrays_file": npz.name,
    }
    return _write(prefix.with_suffix(".json"), doc), npz


def load_codes(prefix: Path) -> dict:
    """Read the codes written by :func:`save_codes` (layer name -> WeightCode, in order)."""
    from hwnas.graph.wcodes import WeightCode, unpack_codes

    prefix = Path(prefix)
    source = prefix.with_suffix(".json")
    doc = _check(_read(source), CODES_KIND, str(source))
    out = {}
    with np.load(prefix.with_name(doc["arrays_file"]), allow_pickle=False) as arrays:
        for r in doc["layers"]:
            try:
                shape = tuple(int(d) for d in r["shape"])
                flat = unpack_codes(arrays[f"{r['name']}.planes"], int(r["bits"]), math.prod(shape))
                out[r["name"]] = WeightCode(
                    int(r["bits"]),
                    r["kind"],
                    flat.reshape(shape),
                    arrays[f"{r['name']}.table"].astype(np.float32),
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise UserError(f"{source}: malformed layer {r.get('name')!r} ({exc})") from None
    return out
