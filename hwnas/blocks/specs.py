"""Block specs: plain, hashable descriptions of the ops a network is built from.

A spec is everything needed to build, export and time one op at batch 1: its input shape, its
channels, kernel, stride and the rest. Each spec has a canonical text key, readable and parseable,
in the style of OFA's LUT keys::

    ib-in:32x32x16-out:24-k:3-s:1-mid:48-g:1-act:relu-res:0

``parse_key(spec.key()) == spec`` for every spec (tested). Keys are what LUT files store.

Cost conventions (used by every analytic cost model in hwnas):

* ``flops()`` counts multiply-accumulates (MACs) of convolutions and linear layers, the way
  FBNet/ProxylessNAS/MobileNet papers quote "300M FLOPs". BN, activations, pooling and residual
  adds are not counted.
* ``params()`` counts every trainable parameter of the built torch module, BN affine included.

Block semantics (FBNet, from HW-NAS-Bench's data README):

* ``ib``: 1x1 conv Cin->mid (groups g, no bias) + BN + act [+ channel shuffle if g > 1] ->
  kxk depthwise conv (stride s) + BN + act -> 1x1 conv mid->Cout (groups g) + BN; identity
  residual when ``res`` (FBNet: iff Cin == Cout and s == 1).
* ``skip``: identity where Cin == Cout and s == 1, else 1x1 conv (stride s) + BN + ReLU.

DARTS ops (quark0/darts ``operations.py`` semantics, re-described): ``sepconv`` = (act, dw kxk
stride s, pw 1x1, BN, act, dw kxk, pw, BN); ``dilconv`` = act, dw kxk dilation d stride s, pw, BN;
``maxpool``/``avgpool`` 3x3 with padding 1; ``factreduce`` = act, two stride-2 1x1 convs on offset
grids, concatenated, BN; ``zero`` (the DARTS "none" op) costs nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import ClassVar

ACTIVATIONS = ("relu", "relu6", "hswish", "none")


def conv_out(size: int, kernel: int, stride: int, dilation: int = 1) -> int:
    """Spatial output size of a conv/pool with 'same'-style padding ``dilation * (kernel - 1) // 2``."""
    pad = dilation * (kernel - 1) // 2
    return (size + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1


@dataclass(frozen=True)
class BlockSpec:
    """Base class: an op with an input tensor of shape (1, cin, h, w)."""

    op: ClassVar[str] = ""
    h: int
    w: int
    cin: int

    # -- shapes -------------------------------------------------------------------------------
    @property
    def in_shape(self) -> tuple[int, int, int, int]:
        """Input tensor shape (N, C, H, W) with N = 1."""
        return (1, self.cin, self.h, self.w)

    @property
    def out_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    # -- costs --------------------------------------------------------------------------------
    def flops(self) -> int:
        """Multiply-accumulates at batch 1 (see module docstring)."""
        raise NotImplementedError

    def params(self) -> int:
        """Trainable parameters of the built module, BN affine included."""
        raise NotImplementedError

    # -- key ------------------------------------------------------------------------------------
    def key(self) -> str:
        """Canonical text key, e.g. ``ib-in:32x32x16-out:24-k:3-s:1-mid:48-g:1-act:relu-res:0``."""
        parts = [self.op, f"in:{self.h}x{self.w}x{self.cin}"]
        for f in fields(self):
            if f.name in ("h", "w", "cin"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool):
                value = int(value)
            parts.append(f"{_KEY_NAMES.get(f.name, f.name)}:{value}")
        return "-".join(parts)

    def to_dict(self) -> dict:
        """Explicit fields for LUT records: ``{"op": ..., "h": ..., ...}``."""
        return {"op": self.op, **dataclasses.asdict(self)}

    def __str__(self) -> str:
        return self.key()


def _bn(c: int) -> int:
    return 2 * c


@dataclass(frozen=True)
class IBSpec(BlockSpec):
    """Inverted bottleneck / MBConv / FBNet ConvBlock (see module docstring)."""

    op: ClassVar[str] = "ib"
    cout: int
    kernel: int
    stride: int
    mid: int
    groups: int = 1
    act: str = "relu"
    res: bool = False

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin", "cout", "kernel", "stride", "mid", "groups")
        _check_act(self.act)
        if self.cin % self.groups or self.mid % self.groups or self.cout % self.groups:
            raise ValueError(
                f"{self.op}: cin, mid and cout must be divisible by groups={self.groups}"
            )
        if self.res and (self.cin != self.cout or self.stride != 1):
            raise ValueError(f"{self.op}: a residual needs cin == cout and stride 1")
        _check_nonempty(self)

    @property
    def ho(self) -> int:
        return conv_out(self.h, self.kernel, self.stride)

    @property
    def wo(self) -> int:
        return conv_out(self.w, self.kernel, self.stride)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (1, self.cout, self.ho, self.wo)

    def flops(self) -> int:
        g = self.groups
        expand = self.h * self.w * self.cin * self.mid // g
        depthwise = self.ho * self.wo * self.mid * self.kernel**2
        project = self.ho * self.wo * self.mid * self.cout // g
        return expand + depthwise + project

    def params(self) -> int:
        g = self.groups
        return (
            self.cin * self.mid // g
            + _bn(self.mid)
            + self.mid * self.kernel**2
            + _bn(self.mid)
            + self.mid * self.cout // g
            + _bn(self.cout)
        )

    @classmethod
    def fbnet(
        cls, h: int, cin: int, cout: int, kernel: int, stride: int, expansion: int, groups: int = 1
    ) -> IBSpec:
        """The FBNet ConvBlock on an h x h input: mid = cin * expansion, residual iff shape-preserving."""
        return cls(
            h=h,
            w=h,
            cin=cin,
            cout=cout,
            kernel=kernel,
            stride=stride,
            mid=cin * expansion,
            groups=groups,
            act="relu",
            res=cin == cout and stride == 1,
        )


@dataclass(frozen=True)
class SkipSpec(BlockSpec):
    """FBNet skip: identity if shape-preserving, else 1x1 conv (stride s) + BN + ReLU."""

    op: ClassVar[str] = "skip"
    cout: int
    stride: int = 1

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin", "cout", "stride")

    @property
    def is_identity(self) -> bool:
        return self.cin == self.cout and self.stride == 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (1, self.cout, conv_out(self.h, 1, self.stride), conv_out(self.w, 1, self.stride))

    def flops(self) -> int:
        if self.is_identity:
            return 0
        _, c, ho, wo = self.out_shape
        return ho * wo * self.cin * c

    def params(self) -> int:
        return 0 if self.is_identity else self.cin * self.cout + _bn(self.cout)


@dataclass(frozen=True)
class ConvSpec(BlockSpec):
    """Plain kxk conv (no bias) + BN + act: stems and heads."""

    op: ClassVar[str] = "conv"
    cout: int
    kernel: int
    stride: int = 1
    groups: int = 1
    act: str = "relu"

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin", "cout", "kernel", "stride", "groups")
        _check_act(self.act)
        if self.cin % self.groups or self.cout % self.groups:
            raise ValueError(f"{self.op}: cin and cout must be divisible by groups={self.groups}")
        _check_nonempty(self)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (
            1,
            self.cout,
            conv_out(self.h, self.kernel, self.stride),
            conv_out(self.w, self.kernel, self.stride),
        )

    def flops(self) -> int:
        _, c, ho, wo = self.out_shape
        return ho * wo * c * (self.cin // self.groups) * self.kernel**2

    def params(self) -> int:
        return self.cout * (self.cin // self.groups) * self.kernel**2 + _bn(self.cout)


@dataclass(frozen=True)
class GAPSpec(BlockSpec):
    """Global average pooling to (1, cin) (flattened)."""

    op: ClassVar[str] = "gap"

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin")

    @property
    def out_shape(self) -> tuple[int, int]:
        return (1, self.cin)

    def flops(self) -> int:
        return 0

    def params(self) -> int:
        return 0


@dataclass(frozen=True)
class FCSpec(BlockSpec):
    """Linear layer cin -> cout with bias, on a (1, cin) input (h = w = 1)."""

    op: ClassVar[str] = "fc"
    cout: int

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin", "cout")
        if (self.h, self.w) != (1, 1):
            raise ValueError(
                f"fc: the input is (1, cin), so h and w must be 1, got {self.h}x{self.w}"
            )

    @property
    def in_shape(self) -> tuple[int, int]:
        return (1, self.cin)

    @property
    def out_shape(self) -> tuple[int, int]:
        return (1, self.cout)

    def flops(self) -> int:
        return self.cin * self.cout

    def params(self) -> int:
        return self.cin * self.cout + self.cout


@dataclass(frozen=True)
class PoolSpec(BlockSpec):
    """DARTS pooling op: ``max``/``avg`` kxk pool, padding (k-1)//2 (= k//2 for odd k; avg excludes
    padding)."""

    op: ClassVar[str] = "pool"
    kind: str = "max"
    kernel: int = 3
    stride: int = 1

    def __post_init__(self) -> None:
        if self.kind not in ("max", "avg"):
            raise ValueError(f"pool: kind must be 'max' or 'avg', got {self.kind!r}")
        _check_positive(self, "h", "w", "cin", "kernel", "stride")
        _check_nonempty(self)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (
            1,
            self.cin,
            conv_out(self.h, self.kernel, self.stride),
            conv_out(self.w, self.kernel, self.stride),
        )

    def flops(self) -> int:
        return 0

    def params(self) -> int:
        return 0


@dataclass(frozen=True)
class SepConvSpec(BlockSpec):
    """DARTS separable conv: (act, dw kxk, pw 1x1, BN) twice; the first dw carries the stride."""

    op: ClassVar[str] = "sepconv"
    cout: int
    kernel: int
    stride: int = 1

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin", "cout", "kernel", "stride")
        _check_nonempty(self)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (
            1,
            self.cout,
            conv_out(self.h, self.kernel, self.stride),
            conv_out(self.w, self.kernel, self.stride),
        )

    def flops(self) -> int:
        _, c, ho, wo = self.out_shape
        k2 = self.kernel**2
        first = ho * wo * self.cin * k2 + ho * wo * self.cin * self.cin
        second = ho * wo * self.cin * k2 + ho * wo * self.cin * c
        return first + second

    def params(self) -> int:
        k2 = self.kernel**2
        first = self.cin * k2 + self.cin * self.cin + _bn(self.cin)
        second = self.cin * k2 + self.cin * self.cout + _bn(self.cout)
        return first + second


@dataclass(frozen=True)
class DilConvSpec(BlockSpec):
    """DARTS dilated conv: act, dw kxk (dilation d, stride s), pw 1x1, BN."""

    op: ClassVar[str] = "dilconv"
    cout: int
    kernel: int
    stride: int = 1
    dilation: int = 2

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin", "cout", "kernel", "stride", "dilation")
        _check_nonempty(self)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        k, s, d = self.kernel, self.stride, self.dilation
        return (1, self.cout, conv_out(self.h, k, s, d), conv_out(self.w, k, s, d))

    def flops(self) -> int:
        _, c, ho, wo = self.out_shape
        return ho * wo * self.cin * self.kernel**2 + ho * wo * self.cin * c

    def params(self) -> int:
        return self.cin * self.kernel**2 + self.cin * self.cout + _bn(self.cout)


@dataclass(frozen=True)
class FactorizedReduceSpec(BlockSpec):
    """DARTS FactorizedReduce: act, two stride-2 1x1 convs (cout/2 each) on offset grids, concat, BN."""

    op: ClassVar[str] = "factreduce"
    cout: int

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin", "cout")
        if self.cout % 2:
            raise ValueError("factreduce: cout must be even")
        _check_nonempty(self)

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (1, self.cout, self.h // 2, self.w // 2)

    def flops(self) -> int:
        _, c, ho, wo = self.out_shape
        return ho * wo * self.cin * c

    def params(self) -> int:
        return self.cin * self.cout + _bn(self.cout)


@dataclass(frozen=True)
class ZeroSpec(BlockSpec):
    """The DARTS 'none' op: outputs zeros (strided when s = 2); costs nothing and is never timed."""

    op: ClassVar[str] = "zero"
    cout: int
    stride: int = 1

    def __post_init__(self) -> None:
        _check_positive(self, "h", "w", "cin", "cout", "stride")

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        return (1, self.cout, conv_out(self.h, 1, self.stride), conv_out(self.w, 1, self.stride))

    def flops(self) -> int:
        return 0

    def params(self) -> int:
        return 0


SPEC_TYPES: dict[str, type[BlockSpec]] = {
    cls.op: cls
    for cls in (
        IBSpec,
        SkipSpec,
        ConvSpec,
        GAPSpec,
        FCSpec,
        PoolSpec,
        SepConvSpec,
        DilConvSpec,
        FactorizedReduceSpec,
        ZeroSpec,
    )
}

# Short key names for long field names; the rest use the field name itself.
_KEY_NAMES = {"cout": "out", "kernel": "k", "stride": "s", "groups": "g", "dilation": "d"}
_FIELD_NAMES = {v: k for k, v in _KEY_NAMES.items()}


def parse_key(key: str) -> BlockSpec:
    """Inverse of :meth:`BlockSpec.key`. Raises ``ValueError`` naming what is wrong."""
    op, _, rest = key.partition("-")
    cls = SPEC_TYPES.get(op)
    if cls is None:
        raise ValueError(f"unknown block op {op!r} in key {key!r}; known: {', '.join(SPEC_TYPES)}")
    values: dict[str, object] = {}
    known = {f.name for f in fields(cls)} - {"h", "w", "cin"}
    seen: set[str] = set()
    for part in rest.split("-") if rest else []:
        name, sep, raw = part.partition(":")
        if not sep:
            raise ValueError(f"malformed key part {part!r} in {key!r} (expected name:value)")
        if name in seen:
            raise ValueError(f"key part {name!r} given twice in {key!r}")
        seen.add(name)
        if name != "in" and _FIELD_NAMES.get(name, name) not in known:
            names = ", ".join(["in", *(_KEY_NAMES.get(n, n) for n in sorted(known))])
            raise ValueError(f"unknown key part {name!r} for {op!r} in {key!r}; known: {names}")
        if name == "in":
            try:
                h, w, c = (int(v) for v in raw.split("x"))
            except ValueError:
                raise ValueError(
                    f"malformed input shape {raw!r} in {key!r} (expected HxWxC)"
                ) from None
            values.update(h=h, w=w, cin=c)
        else:
            values[_FIELD_NAMES.get(name, name)] = raw
    return spec_from_dict({"op": op, **values})


def spec_from_dict(record: dict) -> BlockSpec:
    """Build a spec from explicit fields (as written by :meth:`BlockSpec.to_dict`); extra keys are ignored."""
    cls = SPEC_TYPES.get(str(record.get("op")))
    if cls is None:
        raise ValueError(f"unknown block op {record.get('op')!r}; known: {', '.join(SPEC_TYPES)}")
    kwargs: dict[str, object] = {}
    for f in fields(cls):
        if f.name not in record:
            if f.default is dataclasses.MISSING:
                raise ValueError(f"{cls.op}: missing field {f.name!r}")
            continue
        try:
            kwargs[f.name] = _coerce(record[f.name], f.type)
        except ValueError as err:
            raise ValueError(f"{cls.op}: field {f.name!r}: {err}") from None
    return cls(**kwargs)


def _coerce(value: object, type_name: object) -> object:
    t = str(type_name)
    if t == "bool":
        if value in ("0", "1", "true", "false", "True", "False", 0, 1):  # 0/1 also match False/True
            return value in ("1", "true", "True", 1)
        raise ValueError(f"not a boolean: {value!r}")
    if t == "int":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"not an integer: {value!r}")
        try:
            return int(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ValueError(f"not an integer: {value!r}") from None
    return str(value)


def _check_positive(spec: BlockSpec, *names: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{spec.op}: {name} must be a positive integer, got {value!r}")


def _check_nonempty(spec: BlockSpec) -> None:
    """Reject geometry with an empty output (an even kernel or factreduce on a 1-pixel input)."""
    if min(spec.out_shape) < 1:
        raise ValueError(
            f"{spec.op}: input {spec.h}x{spec.w} gives an empty output {spec.out_shape}"
        )


def _check_act(act: str) -> None:
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; known: {', '.join(ACTIVATIONS)}")
