"""Block specs and graph layers: the spec a layer is timed as; the formats and precisions a graph
can be written at (the precision dimension of a LUT, see ``docs/precision.md``). Torch-free."""

from __future__ import annotations

from hwnas.blocks.specs import BlockSpec, ConvSpec, FCSpec
from hwnas.errors import UserError
from hwnas.graph.nodes import Conv, Graph, Layer

FORMATS = ("onnx", "tflite")
PRECISIONS = ("fp32", "fp16", "int8")
PRECISION_OPS = ("conv", "ib", "skip", "gap", "fc")  # ops a per-precision model exists for


def layer_spec(graph: Graph, layer: Layer) -> BlockSpec:
    """The block spec timed for ``layer``: a ConvSpec (conv + BN + act) or an FCSpec."""
    if isinstance(layer, Conv):
        _, c, h, w = graph.shapes[layer.inp]
        return ConvSpec(
            h=h,
            w=w,
            cin=c,
            cout=layer.cout,
            kernel=layer.kernel,
            stride=layer.stride,
            groups=layer.groups,
            act=layer.act,
        )
    return FCSpec(h=1, w=1, cin=int(layer.weight.shape[1]), cout=int(layer.weight.shape[0]))


def check_model_kind(precision: str, fmt: str) -> None:
    """UserError unless ``precision`` is one of :data:`PRECISIONS` and ``fmt`` of :data:`FORMATS`."""
    if fmt not in FORMATS:
        raise UserError(f"unknown model format {fmt!r}; known: {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")


def check_precision_op(spec: BlockSpec) -> None:
    """UserError unless a per-precision model of ``spec`` can be written (FBNet-space ops)."""
    if spec.op not in PRECISION_OPS:
        raise UserError(
            f"per-precision models exist for FBNet-space ops (conv, ib, skip, gap, fc), "
            f"not {spec.op!r}"
        )
