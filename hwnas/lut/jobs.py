"""The models a LUT build times: blocks, their null models, whole networks; and their groups.

A block is timed beside a *null* model of the same input shape, a 1x1 depthwise conv: what every
standalone model pays (the runtime call, copying the input, layout reorders at the model's
boundaries) and a block inside a network does not. Blocks are grouped by input shape, one null
per group; networks are grouped ``group_size`` at a time. The grouping is deterministic, which is
what lets a resumed build recognise the groups it has finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from hwnas.blocks.specs import BlockSpec, ConvSpec, parse_key
from hwnas.errors import UserError
from hwnas.graph.nodes import Graph
from hwnas.lut.plan import BuildPlan

JOB_WEIGHT = {"block": 1.0, "null": 1.0, "arch": 3.0}  # relative device time, for progress/ETA


@dataclass(frozen=True)
class Job:
    """One model to time: ``kind`` block / null / arch; ``key`` a spec key or an arch's text."""

    id: str
    kind: str
    key: str
    ref: str = ""  # blocks: the id of the null job timed beside them


def null_spec(spec: BlockSpec) -> Optional[ConvSpec]:
    """The null model beside ``spec``: a 1x1 depthwise conv on its input (None for 2-D inputs)."""
    if len(spec.in_shape) != 4:
        return None
    return ConvSpec(
        h=spec.h, w=spec.w, cin=spec.cin, cout=spec.cin, kernel=1, groups=spec.cin, act="none"
    )


def plan_groups(plan: BuildPlan, n_archs: int, seed: int, group_size: int = 12) -> list[list[Job]]:
    """The jobs of a build in timing groups, deterministically (resume relies on it).

    A group with blocks starts with their null model; the group's round is journaled as one unit,
    so its last job's round count is the group's.
    """
    by_shape: dict[tuple, list[BlockSpec]] = {}
    for spec in plan.blocks:
        by_shape.setdefault(tuple(spec.in_shape), []).append(spec)
    groups: list[list[Job]] = []
    size = max(2, group_size)
    for specs in by_shape.values():
        for start in range(0, len(specs), size - 1):
            chunk = specs[start : start + size - 1]
            null = null_spec(chunk[0])
            group: list[Job] = []
            ref = ""
            if null is not None:
                ref = f"null:{null.key()}#{start // (size - 1)}"
                group.append(Job(ref, "null", null.key()))
            group += [Job(f"block:{s.key()}", "block", s.key(), ref) for s in chunk]
            groups.append(group)
    if plan.has_networks and n_archs > 0:
        texts = [plan.format_arch(a) for a in plan.sample_archs(n_archs, seed)]
        for start in range(0, len(texts), size):
            groups.append([Job(f"arch:{t}", "arch", t) for t in texts[start : start + size]])
    return groups


PRECISION_SPACES = ("fbnet", "ib-channel", "dso")  # spaces whose ops the quantized writers cover

ModelWriter = Callable[[Graph, str, str], bytes]
"""``(graph, precision, fmt) -> model bytes``: what a build asks for models other than fp32 ONNX.
The run layer passes :func:`hwnas.runs.models.graph_model` (quantization parameters + writers)."""


def check_precision(space: str, precision: str, fmt: str) -> None:
    """Refuse precision/format combinations a build cannot generate models for."""
    from hwnas.graph.blocks import FORMATS, PRECISIONS

    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    if fmt not in FORMATS:
        raise UserError(f"unknown model format {fmt!r}; known: {', '.join(FORMATS)}")
    if (precision, fmt) != ("fp32", "onnx") and space not in PRECISION_SPACES:
        names = f"{', '.join(PRECISION_SPACES[:-1])} and {PRECISION_SPACES[-1]}"
        raise UserError(
            f"{precision} {fmt} models exist for the {names} spaces, "
            f"not {space!r}; build it at fp32 with onnx"
        )


def job_model(
    plan: BuildPlan,
    job: Job,
    precision: str = "fp32",
    fmt: str = "onnx",
    write: Optional[ModelWriter] = None,
) -> bytes:
    """Model bytes of a job at ``precision`` as ``fmt``.

    fp32 ONNX block files come from the export cache and networks are stitched from them; other
    precisions/formats are block graphs (or one graph of a whole network, so an int8 network has
    no quantize/dequantize pair at every block boundary) written by ``write``.
    """
    if (precision, fmt) == ("fp32", "onnx"):
        if job.kind == "arch":
            from hwnas.lut.compose import network_onnx

            return network_onnx(plan.network(plan.parse_arch(job.key)))  # type: ignore[misc]
        from hwnas.blocks.export import spec_to_onnx

        return spec_to_onnx(parse_key(job.key))
    if write is None:
        raise ValueError(f"{precision} {fmt} models need a model writer (hwnas.runs.models)")
    from hwnas.graph.blocks import check_precision_op
    from hwnas.graph.lower import network_graph, spec_graph

    if job.kind != "arch":
        spec = parse_key(job.key)
        check_precision_op(spec)
        return write(spec_graph(spec), precision, fmt)
    specs = plan.network(plan.parse_arch(job.key))  # type: ignore[misc]
    return write(network_graph(specs), precision, fmt)
