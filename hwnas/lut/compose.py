"""Whole networks as ONNX files, stitched from the cached per-block files in milliseconds.

Exporting a whole FBNet network through PyTorch takes 0.5-3 s; chaining the already exported
block files (``hwnas.blocks.export.spec_to_onnx``, cached on disk) takes ~50 ms and gives the
same graph: the blocks' nodes one after the other, block ``i``'s output feeding block ``i+1``.
That makes it cheap to time hundreds of whole architectures, which is what the LUT's end-to-end
calibration (:mod:`hwnas.lut.calibration`) and ``hwnas lut validate`` need.

Every tensor, initializer and node of block ``i`` is renamed ``b<i>/<name>``; the network has one
input ``"input"`` and one output ``"output"``, like the block files. Identity blocks (an FBNet
``skip`` with equal shapes, a DARTS ``zero`` is not chainable) are left out. Weights differ from a
network exported in one piece (each block is seeded on its own), which does not change latency.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hwnas.blocks.specs import BlockSpec, SkipSpec

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAME = "output"


def is_identity(spec: BlockSpec) -> bool:
    """True for blocks that run no op at all (they are left out of chained networks)."""
    return isinstance(spec, SkipSpec) and spec.is_identity


def check_chain(specs: Sequence[BlockSpec]) -> None:
    """Raise ``ValueError`` unless each spec's output shape is the next one's input shape."""
    if not specs:
        raise ValueError("a network needs at least one block")
    for i in range(1, len(specs)):
        if specs[i - 1].out_shape != specs[i].in_shape:
            raise ValueError(
                f"block {i} ({specs[i].key()}) expects input {specs[i].in_shape}, but block "
                f"{i - 1} ({specs[i - 1].key()}) outputs {specs[i - 1].out_shape}"
            )


def chain_onnx(models: Sequence[bytes]) -> bytes:
    """Chain ONNX models (each one input, one output) into one model, output to input.

    Args:
        models: serialized ModelProtos with identical opset; shapes must match along the chain.

    Returns:
        The serialized chained model, input ``"input"``, output ``"output"``.
    """
    import onnx
    from onnx import helper

    if not models:
        raise ValueError("chain_onnx needs at least one model")
    protos = [onnx.load_from_string(m) for m in models]
    nodes: list = []
    initializers: list = []
    carried = INPUT_NAME  # name of the tensor flowing into the next block
    for i, proto in enumerate(protos):
        graph = proto.graph
        if len(graph.input) != 1 or len(graph.output) != 1:
            raise ValueError(f"model {i} has {len(graph.input)} inputs/{len(graph.output)} outputs")
        last = i == len(protos) - 1
        mapping = {graph.input[0].name: carried}
        mapping[graph.output[0].name] = OUTPUT_NAME if last else f"b{i}/{graph.output[0].name}"

        def rename(name: str, i: int = i, mapping: dict = mapping) -> str:
            return mapping.get(name, f"b{i}/{name}") if name else name

        for node in graph.node:
            new = onnx.NodeProto()
            new.CopyFrom(node)
            del new.input[:]
            new.input.extend(rename(x) for x in node.input)
            del new.output[:]
            new.output.extend(rename(x) for x in node.output)
            new.name = f"b{i}/{node.name}"
            nodes.append(new)
        for tensor in graph.initializer:
            new_tensor = onnx.TensorProto()
            new_tensor.CopyFrom(tensor)
            new_tensor.name = rename(tensor.name)
            initializers.append(new_tensor)
        carried = mapping[graph.output[0].name]
    inp = onnx.ValueInfoProto()
    inp.CopyFrom(protos[0].graph.input[0])
    inp.name = INPUT_NAME
    out = onnx.ValueInfoProto()
    out.CopyFrom(protos[-1].graph.output[0])
    out.name = OUTPUT_NAME
    graph = helper.make_graph(nodes, "hwnas-network", [inp], [out], initializers)
    model = helper.make_model(
        graph, opset_imports=protos[0].opset_import, ir_version=protos[0].ir_version
    )
    model.producer_name = "hwnas.lut.compose"
    return model.SerializeToString()


def network_onnx(specs: Sequence[BlockSpec], seed: int = 0) -> bytes:
    """ONNX of the network running ``specs`` in order (identities left out), from cached blocks.

    Raises:
        ValueError: if the shapes do not chain or every block is an identity.
    """
    from hwnas.blocks.export import spec_to_onnx

    check_chain(specs)
    ops = [s for s in specs if not is_identity(s)]
    if not ops:
        raise ValueError("every block of this network is an identity; nothing to run")
    return chain_onnx([spec_to_onnx(s, seed) for s in ops])
