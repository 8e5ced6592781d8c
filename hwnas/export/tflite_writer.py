"""Write a :class:`~hwnas.graph.nodes.Graph` as a ``.tflite`` model: fp32, fp16 weights, int8.

Lowering (NCHW graph -> NHWC TFLite, BN already folded):

* conv: ``CONV_2D`` (filter (O, k, k, I)); depthwise: ``DEPTHWISE_CONV_2D`` (filter (1, k, k, C));
  activations fused (RELU, RELU6). PyTorch pads ``(k-1)//2`` on both sides; TFLite ``SAME`` pads
  the extra pixel at the bottom/right when the stride is 2, so strided convs get an explicit
  ``PAD`` and ``VALID`` padding, stride-1 convs use ``SAME``.
* grouped 1x1 convs (FBNet ``g2`` blocks): one grouped ``CONV_2D`` (``grouped="native"``, the
  default: LiteRT 2.3 runs it, fp32 and int8, and it was 10-40 % faster here than splitting), or
  ``SPLIT`` into per-group ``CONV_2D`` s and ``CONCATENATION`` (``grouped="split"``) for older
  runtimes without grouped convolutions.
* channel shuffle: ``RESHAPE`` (N*H*W, g, C/g) -> ``TRANSPOSE`` -> ``RESHAPE`` (N, H, W, C).
* residual: ``ADD``; global pooling: ``MEAN`` over H, W; classifier: ``FULLY_CONNECTED``.

Quantization (TFLite full-integer scheme, Jacob et al. CVPR 2018): a quantized tensor is int8
with ``zero_point = unsigned zero point - 128`` (the same grid as :mod:`hwnas.graph.qparams`);
weights int8 per output channel (axis 0 for conv/FC filters, 3 for depthwise), biases int32 with
scale ``input_scale * weight_scale``. Float consumers of a quantized tensor read a
``DEQUANTIZE`` of it; the model's input and output stay float32 (``QUANTIZE`` / ``DEQUANTIZE`` at
the edges). ``precision="fp16"`` stores float weights as float16 behind ``DEQUANTIZE`` (TFLite's
float16 quantization). The input is NHWC float32 (1, H, W, C); the output (1, classes).
Dynamic-range int8 and 16x8 are subclasses of this lowering, run by :func:`lower_graph`
(:mod:`hwnas.export.tflite_precisions`).
"""

from __future__ import annotations

import numpy as np

from hwnas.export.tflite_builder import TFLiteBuilder
from hwnas.graph.nodes import Add, Conv, GlobalPool, Graph, Linear, Shuffle
from hwnas.graph.qparams import QuantState, quantize_weight

GROUPED_MODES = ("native", "split")


def _nhwc(shape: tuple[int, ...]) -> list[int]:
    return [shape[0], shape[2], shape[3], shape[1]] if len(shape) == 4 else list(shape)


class _Lowering:
    def __init__(self, graph: Graph, state: QuantState | None, fp16: bool, grouped: str) -> None:
        self.g = graph
        self.state = state
        self.fp16 = fp16
        self.grouped = grouped
        self.b = TFLiteBuilder(f"hwnas {'fp16' if fp16 else 'quantized' if state else 'fp32'}")
        self.store: dict[str, dict[str, int]] = {}

    # -- tensors -------------------------------------------------------------------------------
    def tq(self, tensor: str):
        return self.state.tensor_quant(tensor) if self.state else None

    def new(
        self, tensor: str, kind: str, name: str | None = None, shape: list[int] | None = None
    ) -> int:
        """A fresh TFLite tensor for IR ``tensor`` as ``kind`` (its grid if ``int8``)."""
        shape = shape or _nhwc(self.g.shapes[tensor])
        tq = self.tq(tensor)
        if kind == "int8":
            return self.b.tensor(name or tensor, shape, np.int8, [tq.scale], [tq.zero_point - 128])
        return self.b.tensor(name or tensor, shape, np.float32)

    def get(self, tensor: str, kind: str) -> int:
        """Tensor index of ``tensor`` as ``kind`` (``int8``/``float``), converting if needed."""
        have = self.store[tensor]
        if kind not in have:
            src_kind = next(iter(have))
            out = self.new(tensor, kind, f"{tensor}_{kind}")
            self.b.op(
                "DEQUANTIZE" if kind == "float" else "QUANTIZE", [have[src_kind]], [out], version=2
            )
            have[kind] = out
        return have[kind]

    def put(self, tensor: str, index: int, kind: str) -> None:
        """Record a produced tensor; a quantized tensor produced in float is quantized at once."""
        self.store[tensor] = {kind: index}
        if kind == "float" and self.tq(tensor) is not None:
            q = self.get(tensor, "int8")
            self.store[tensor] = {"int8": q}

    def is_int(self, tensor: str) -> bool:
        return self.tq(tensor) is not None

    # -- ops -------------------------------------------------------------------------------------
    def weights(
        self, layer: Conv | Linear, filt: np.ndarray, axis: int, x_tensor: str, key: str = ""
    ) -> tuple:
        """(filter index, bias index, integer?) for a layer; ``filt`` is the laid-out filter.

        ``key`` names the policy entry (default ``layer.name``; a group of a split conv passes
        its parent's name).
        """
        key = key or layer.name
        bits = self.state.policy.get(key) if self.state else None
        if bits is not None and not bits.is_float:
            q, ws = quantize_weight(layer.weight, bits.w_bits, self.state.clip_ratios[key])
            q = _layout_like(q, layer, filt.shape)
            w = self.b.const(f"{layer.name}_w", q, scale=ws, zero_point=[0] * len(ws), axis=axis)
            bs = (np.float32(self.tq(x_tensor).scale) * ws).astype(np.float32)
            bq = np.clip(np.round(layer.bias / bs), -(2**31), 2**31 - 1).astype(np.int32)
            b = self.b.const(f"{layer.name}_b", bq, scale=bs, zero_point=[0] * len(bs))
            return w, b, True
        return (
            self.float_const(f"{layer.name}_w", filt),
            self.float_const(f"{layer.name}_b", layer.bias),
            False,
        )

    def float_const(self, name: str, data: np.ndarray) -> int:
        data = np.asarray(data, np.float32)
        if not self.fp16:
            return self.b.const(name, data)
        half = self.b.const(f"{name}_fp16", data.astype(np.float16))
        out = self.b.tensor(name, data.shape, np.float32)
        self.b.op("DEQUANTIZE", [half], [out])
        return out

    def conv(self, node: Conv) -> None:
        if node.is_depthwise:
            filt = node.weight.transpose(1, 2, 3, 0)  # (1, k, k, C)
            code, kind_opts, axis = "DEPTHWISE_CONV_2D", "DepthwiseConv2D", 3
        else:
            filt = node.weight.transpose(0, 2, 3, 1)  # (O, k, k, I/g)
            code, kind_opts, axis = "CONV_2D", "Conv2D", 0
        bits = self.state.policy.get(node.name) if self.state else None
        integer = bits is not None and not bits.is_float
        kind = "int8" if integer else "float"
        x = self.get(node.inp, kind)
        padding = "SAME"
        if node.stride > 1 and node.kernel > 1:
            x, padding = self.pad(x, (node.kernel - 1) // 2, node.inp), "VALID"
        if node.groups > 1 and not node.is_depthwise and self.grouped == "split":
            self.grouped_conv(node, x, padding, integer)
            return
        w, b, _ = self.weights(node, filt, axis, node.inp)
        out = self.new(node.out, kind)
        fields = {
            "padding": padding,
            "strideW": node.stride,
            "strideH": node.stride,
            "fusedActivationFunction": node.act.upper(),
        }
        if code == "DEPTHWISE_CONV_2D":
            fields["depthMultiplier"] = 1
        opts = self.b.options(kind_opts, **fields)
        self.b.op(code, [x, w, b], [out], opts, f"{kind_opts}Options", 3 if integer else 1)
        self.put(node.out, out, kind)

    def grouped_conv(self, node: Conv, x: int, padding: str, integer: bool) -> None:
        g, og = node.groups, node.cout // node.groups
        kind = "int8" if integer else "float"
        _, h, w, c = self.b.tensors[x].shape
        parts = [self.b.like(f"{node.name}_in{i}", x, [1, h, w, c // g]) for i in range(g)]
        axis = self.b.const(f"{node.name}_split_axis", np.array(3, np.int32))
        self.b.op(
            "SPLIT",
            [axis, x],
            parts,
            self.b.options("Split", numSplits=g),
            "SplitOptions",
            2 if integer else 1,
        )
        outs = []
        for i in range(g):
            sub = Conv(
                f"{node.name}_g{i}",
                node.inp,
                node.out,
                node.weight[i * og : (i + 1) * og],
                node.bias[i * og : (i + 1) * og],
                node.stride,
                1,
                node.act,
            )
            wt, bt, _ = self.weights(sub, sub.weight.transpose(0, 2, 3, 1), 0, node.inp, node.name)
            shape = [*_nhwc(self.g.shapes[node.out])[:3], og]
            out = self.new(node.out, kind, f"{node.out}_g{i}", shape)
            opts = self.b.options(
                "Conv2D",
                padding=padding,
                strideW=node.stride,
                strideH=node.stride,
                fusedActivationFunction=node.act.upper(),
            )
            self.b.op(
                "CONV_2D", [parts[i], wt, bt], [out], opts, "Conv2DOptions", 3 if integer else 1
            )
            outs.append(out)
        out = self.new(node.out, kind)
        self.b.op(
            "CONCATENATION",
            outs,
            [out],
            self.b.options("Concatenation", axis=3),
            "ConcatenationOptions",
            2 if integer else 1,
        )
        self.put(node.out, out, kind)

    def pad(self, x: int, p: int, tensor: str) -> int:
        n, h, w, c = self.b.tensors[x].shape
        pads = self.b.const(f"{tensor}_pads", np.array([[0, 0], [p, p], [p, p], [0, 0]], np.int32))
        out = self.b.like(f"{tensor}_padded", x, [n, h + 2 * p, w + 2 * p, c])
        self.b.op("PAD", [x, pads], [out], version=2)
        return out

    def linear(self, node: Linear) -> None:
        bits = self.state.policy.get(node.name) if self.state else None
        integer = bits is not None and not bits.is_float
        kind = "int8" if integer else "float"
        x = self.get(node.inp, kind)
        w, b, _ = self.weights(node, node.weight, 0, node.inp)
        out = self.new(node.out, kind)
        opts = self.b.options("FullyConnected", fusedActivationFunction=node.act.upper())
        self.b.op(
            "FULLY_CONNECTED", [x, w, b], [out], opts, "FullyConnectedOptions", 4 if integer else 1
        )
        self.put(node.out, out, kind)

    def add(self, node: Add) -> None:
        integer = all(self.is_int(t) for t in (node.a, node.b, node.out))
        kind = "int8" if integer else "float"
        out = self.new(node.out, kind)
        self.b.op(
            "ADD",
            [self.get(node.a, kind), self.get(node.b, kind)],
            [out],
            self.b.options("Add", fusedActivationFunction="NONE"),
            "AddOptions",
            2 if integer else 1,
        )
        self.put(node.out, out, kind)

    def pool(self, node: GlobalPool) -> None:
        integer = self.is_int(node.inp) and self.is_int(node.out)
        kind = "int8" if integer else "float"
        axes = self.b.const(f"{node.name}_axes", np.array([1, 2], np.int32))
        out = self.new(node.out, kind)
        self.b.op(
            "MEAN",
            [self.get(node.inp, kind), axes],
            [out],
            self.b.options("Reducer", keepDims=False),
            "ReducerOptions",
            2 if integer else 1,
        )
        self.put(node.out, out, kind)

    def shuffle(self, node: Shuffle) -> None:
        kind = next(iter(self.store[node.inp]))
        x = self.store[node.inp][kind]
        _, c, h, w = self.g.shapes[node.inp]
        g = node.groups
        mid = self.reshape(x, [-1, g, c // g], f"{node.name}_split")
        perm = self.b.const(f"{node.name}_perm", np.array([0, 2, 1], np.int32))
        swapped = self.b.like(f"{node.name}_swap", mid, [h * w, c // g, g])
        self.b.op("TRANSPOSE", [mid, perm], [swapped], version=2)
        out = self.reshape(swapped, [-1, h, w, c], node.out)
        self.store[node.out] = {kind: out}

    def reshape(self, x: int, shape: list[int], name: str) -> int:
        size = int(np.prod([d for d in self.b.tensors[x].shape]))
        known = int(np.prod([d for d in shape if d > 0]))
        static = [size // known if d < 0 else d for d in shape]
        out = self.b.like(name, x, static)
        target = self.b.const(f"{name}_shape", np.array(shape, np.int32))
        self.b.op(
            "RESHAPE",
            [x, target],
            [out],
            self.b.options("Reshape", newShape=shape),
            "ReshapeOptions",
        )
        return out


def _layout_like(q: np.ndarray, layer: Conv | Linear, shape: tuple[int, ...]) -> np.ndarray:
    """Lay out integer weights (O, I, k, k) the way the float filter of ``shape`` is."""
    if q.ndim == 2:
        return q
    if isinstance(layer, Conv) and layer.is_depthwise:
        return q.transpose(1, 2, 3, 0)
    return q.transpose(0, 2, 3, 1)


def graph_to_tflite(
    graph: Graph, state: QuantState | None = None, fp16: bool = False, grouped: str = "native"
) -> bytes:
    """Serialize ``graph`` (float) or ``state`` (quantized) as ``.tflite`` bytes.

    Args:
        graph: the folded graph (``state.graph`` is used when ``state`` is given).
        state: quantization to write (integer layers and tensors); None writes a float model.
        fp16: store float weights as float16 (TFLite float16 quantization).
        grouped: ``native`` or ``split`` lowering of grouped (non-depthwise) convs.
    """
    if grouped not in GROUPED_MODES:
        raise ValueError(f"grouped must be one of {GROUPED_MODES}, got {grouped!r}")
    if state is not None:
        graph = state.graph
    return lower_graph(_Lowering(graph, state, fp16, grouped))


def lower_graph(low: _Lowering) -> bytes:
    """Lower ``low``'s graph op by op; a subclass's ``weights`` supplies each layer's filter and bias."""
    graph = low.g
    inp = low.b.tensor("input", _nhwc(graph.input_shape), np.float32)
    low.put(graph.input_name, inp, "float")
    for node in graph.nodes:
        if isinstance(node, Conv):
            low.conv(node)
        elif isinstance(node, Linear):
            low.linear(node)
        elif isinstance(node, Add):
            low.add(node)
        elif isinstance(node, GlobalPool):
            low.pool(node)
        elif isinstance(node, Shuffle):
            low.shuffle(node)
    out = low.get(graph.output_name, "float")
    low.b.tensors[out].name = "output"
    return low.b.finish([inp], [out])
