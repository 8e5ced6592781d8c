"""Numeric features of block specs for latency regression (nn-Meter style, Zhang et al. 2021).

Every spec is decomposed into primitive layers (dense conv / depthwise conv / elementwise or
pooling) with their multiply-accumulates, tensor sizes and weights. From those come the features
a latency model needs on any CPU-like device: compute (dense and depthwise MACs separately, since
depthwise convs run far below peak), memory traffic in bytes read and written, weight bytes, and
the number of primitive layers (per-call overhead).

Two feature sets:

* :data:`FEATURE_NAMES` / :func:`spec_features`: everything (op kind one-hot, shape fields,
  MACs, params, bytes), for block-level regressors that must price specs never measured.
* :data:`COST_FEATURE_NAMES` / :func:`cost_features`: the physically additive ones (all zero for
  an identity), used by the architecture-level fitted predictors (``hwnas.lut.fit``).

Units: MACs and bytes are raw counts (not millions); bytes use the precision's element size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hwnas.blocks.specs import (
    SPEC_TYPES,
    BlockSpec,
    ConvSpec,
    DilConvSpec,
    FactorizedReduceSpec,
    FCSpec,
    GAPSpec,
    IBSpec,
    PoolSpec,
    SepConvSpec,
    SkipSpec,
)
from hwnas.errors import UserError

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Layer:
    """One primitive layer: ``kind`` is "dense", "dw" or "elementwise"; sizes in elements."""

    kind: str
    macs: int
    in_elems: int
    out_elems: int
    weight_elems: int


def layers(spec: BlockSpec) -> list[Layer]:
    """The primitive layers a spec runs (an identity skip and ``zero`` run none)."""
    n_in = spec.h * spec.w * spec.cin
    if isinstance(spec, IBSpec):
        g, mid, ho, wo = spec.groups, spec.mid, spec.ho, spec.wo
        n_mid, n_dw, n_out = spec.h * spec.w * mid, ho * wo * mid, ho * wo * spec.cout
        out = [Layer("dense", n_mid * spec.cin // g, n_in, n_mid, spec.cin * mid // g)]
        if g > 1:
            out.append(Layer("elementwise", 0, n_mid, n_mid, 0))  # channel shuffle
        out.append(Layer("dw", n_dw * spec.kernel**2, n_mid, n_dw, mid * spec.kernel**2))
        out.append(Layer("dense", n_out * mid // g, n_dw, n_out, mid * spec.cout // g))
        if spec.res:
            out.append(Layer("elementwise", 0, 2 * n_out, n_out, 0))
        return out
    if isinstance(spec, SkipSpec):
        return [] if spec.is_identity else [_pointwise(spec, spec.cin, spec.cout)]
    if isinstance(spec, ConvSpec):
        _, c, ho, wo = spec.out_shape
        weights = c * (spec.cin // spec.groups) * spec.kernel**2
        kind = "dw" if spec.groups == spec.cin == c and spec.groups > 1 else "dense"
        return [Layer(kind, spec.flops(), n_in, c * ho * wo, weights)]
    if isinstance(spec, (SepConvSpec, DilConvSpec)):
        return _separable(spec)
    if isinstance(spec, FactorizedReduceSpec):
        _, c, ho, wo = spec.out_shape
        half = Layer(
            "dense", ho * wo * spec.cin * c // 2, n_in, ho * wo * c // 2, spec.cin * c // 2
        )
        return [half, half, Layer("elementwise", 0, ho * wo * c, ho * wo * c, 0)]
    if isinstance(spec, (GAPSpec, PoolSpec)):
        return [Layer("elementwise", 0, n_in, int(np.prod(spec.out_shape)), 0)]
    if isinstance(spec, FCSpec):
        return [Layer("dense", spec.flops(), spec.cin, spec.cout, spec.cin * spec.cout)]
    return []


def _pointwise(spec: SkipSpec, cin: int, cout: int) -> Layer:
    _, _, ho, wo = spec.out_shape
    return Layer("dense", ho * wo * cin * cout, spec.h * spec.w * cin, ho * wo * cout, cin * cout)


def _separable(spec: BlockSpec) -> list[Layer]:
    _, c, ho, wo = spec.out_shape
    k2, cin = spec.kernel**2, spec.cin  # type: ignore[attr-defined]
    n_in, n_mid, n_out = spec.h * spec.w * cin, ho * wo * cin, ho * wo * c
    if isinstance(spec, DilConvSpec):
        return [
            Layer("dw", n_mid * k2, n_in, n_mid, cin * k2),
            Layer("dense", n_out * cin, n_mid, n_out, cin * c),
        ]
    return [
        Layer("dw", n_mid * k2, n_in, n_mid, cin * k2),
        Layer("dense", n_mid * cin, n_mid, n_mid, cin * cin),
        Layer("dw", n_mid * k2, n_mid, n_mid, cin * k2),
        Layer("dense", n_out * cin, n_mid, n_out, cin * c),
    ]


COST_FEATURE_NAMES = (
    "dense_macs",
    "dw_macs",
    "dw_outputs",
    "bytes_read",
    "bytes_written",
    "weight_bytes",
    "n_layers",
)


def cost_features(spec: BlockSpec, precision: str = "fp32") -> np.ndarray:
    """Additive cost features of one block (shape ``(len(COST_FEATURE_NAMES),)``).

    ``bytes_read`` counts input activations and weights, ``bytes_written`` output activations,
    both summed over the primitive layers (so intermediates count twice, as on a CPU that spills
    them to memory).
    """
    size = element_bytes(precision)
    out = np.zeros(len(COST_FEATURE_NAMES))
    for layer in layers(spec):
        if layer.kind == "dw":
            out[1] += layer.macs
            out[2] += layer.out_elems
        else:
            out[0] += layer.macs
        out[3] += (layer.in_elems + layer.weight_elems) * size
        out[4] += layer.out_elems * size
        out[5] += layer.weight_elems * size
        out[6] += 1
    return out


FEATURE_NAMES = (
    *(f"op_{name}" for name in SPEC_TYPES),
    "h",
    "w",
    "cin",
    "cout",
    "kernel",
    "stride",
    "mid",
    "groups",
    "ho",
    "macs",
    "params",
    *COST_FEATURE_NAMES,
)


def spec_features(spec: BlockSpec, precision: str = "fp32") -> np.ndarray:
    """All features of one block (shape ``(len(FEATURE_NAMES),)``), see :data:`FEATURE_NAMES`."""
    onehot = [float(spec.op == name) for name in SPEC_TYPES]
    out_shape = spec.out_shape
    cout = out_shape[1]
    ho = out_shape[2] if len(out_shape) == 4 else 1
    fields = [
        spec.h,
        spec.w,
        spec.cin,
        cout,
        getattr(spec, "kernel", 1),
        getattr(spec, "stride", 1),
        getattr(spec, "mid", 0),
        getattr(spec, "groups", 1),
        ho,
        spec.flops(),
        spec.params(),
    ]
    return np.concatenate([onehot, np.asarray(fields, float), cost_features(spec, precision)])


def feature_matrix(specs: Sequence[BlockSpec], precision: str = "fp32") -> np.ndarray:
    """``spec_features`` of many specs stacked: shape ``(len(specs), len(FEATURE_NAMES))``."""
    if not specs:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack([spec_features(s, precision) for s in specs])


def element_bytes(precision: str) -> int:
    """Bytes per tensor element at ``precision`` (fp32 4, fp16 2, int8 1)."""
    try:
        return BYTES_PER_ELEMENT[precision]
    except KeyError:
        known = ", ".join(BYTES_PER_ELEMENT)
        raise UserError(f"unknown precision {precision!r}; known: {known}") from None
