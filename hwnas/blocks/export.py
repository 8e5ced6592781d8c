"""ONNX files for block specs: export, an on-disk cache, and a parity check against onnxruntime.

Export uses the TorchScript exporter (``torch.onnx.export(..., dynamo=False, opset_version=17)``):
0.03-0.3 s per block here, against 2-6 s for the dynamo exporter, for the same fused graph (BN is
folded into the convs by constant folding in eval mode). Files have a static batch of 1, one input
named ``"input"`` and one output named ``"output"``, and carry their weights inline (no external
data).

``spec_to_onnx`` caches files under ``hwnas.paths.cache_dir() / "onnx"``, named by the sha256 of
everything the bytes depend on (spec key, seed, torch version, exporter settings, module version),
so building a LUT twice exports each block once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hwnas import paths
from hwnas.blocks.specs import BlockSpec
from hwnas.blocks.torch_blocks import BUILD_VERSION, build_module

logger = logging.getLogger(__name__)

OPSET_VERSION = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
# Everything about the exporter call that changes the bytes; part of the cache key.
EXPORT_SETTINGS: dict[str, object] = {
    "exporter": "torchscript",
    "opset_version": OPSET_VERSION,
    "do_constant_folding": True,
    "input_names": [INPUT_NAME],
    "output_names": [OUTPUT_NAME],
    "dynamic_axes": None,
}


def export_onnx(
    module: nn.Module, input_shape: Sequence[int], path: str | os.PathLike | None = None
) -> bytes:
    """Export ``module`` (switched to eval mode) to ONNX for a fixed input shape.

    Args:
        module: the module; its output must be a single tensor.
        input_shape: static input shape, batch included (hwnas exports batch 1: ``(1, C, H, W)``).
        path: if given, the bytes are also written there (atomically).

    Returns:
        The serialized ONNX ``ModelProto`` (opset 17, input ``"input"``, output ``"output"``).
    """
    module.eval()
    dummy = torch.zeros(tuple(input_shape))
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter warns that it is deprecated, on every call.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            buffer,
            dynamo=False,
            opset_version=OPSET_VERSION,
            do_constant_folding=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
        )
    data = buffer.getvalue()
    if path is not None:
        _write_atomic(Path(path), data)
    return data


def onnx_cache_key(spec: BlockSpec, seed: int = 0) -> str:
    """sha256 (hex) of what the exported bytes of ``spec`` depend on."""
    record = {
        "spec": spec.key(),
        "seed": seed,
        "torch": torch.__version__,
        "build_version": BUILD_VERSION,
        "export": EXPORT_SETTINGS,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def onnx_cache_path(spec: BlockSpec, seed: int = 0) -> Path:
    """Where :func:`spec_to_onnx` keeps the file of ``spec`` (it may not exist yet)."""
    return paths.cache_dir() / "onnx" / f"{onnx_cache_key(spec, seed)}.onnx"


def spec_to_onnx(spec: BlockSpec, seed: int = 0, use_cache: bool = True) -> bytes:
    """ONNX bytes of the module of ``spec`` (batch 1, input ``spec.in_shape``), cached on disk.

    Args:
        spec: the block spec.
        seed: weight-init seed passed to :func:`hwnas.blocks.torch_blocks.build_module`.
        use_cache: read and write ``onnx_cache_path(spec, seed)``; False always re-exports.
    """
    path = onnx_cache_path(spec, seed)
    if use_cache and path.is_file():
        logger.debug("onnx cache hit for %s: %s", spec.key(), path)
        return path.read_bytes()
    data = export_onnx(build_module(spec, seed), spec.in_shape)
    if use_cache:
        _write_atomic(path, data)
        logger.debug("exported %s to %s (%d bytes)", spec.key(), path, len(data))
    return data


def check_onnx_parity(
    module: nn.Module, onnx_bytes: bytes, input_shape: Sequence[int], seed: int = 0
) -> float:
    """Max absolute difference between PyTorch and onnxruntime outputs on one random input.

    The input is standard normal from ``numpy.random.default_rng(seed)``; the module runs in eval
    mode, onnxruntime on the CPU provider with default graph optimizations.

    Raises:
        ValueError: if the two outputs differ in shape.
    """
    import onnxruntime as ort

    x = np.random.default_rng(seed).standard_normal(tuple(input_shape)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    (got,) = session.run([OUTPUT_NAME], {INPUT_NAME: x})
    module.eval()
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    if got.shape != want.shape:
        raise ValueError(f"onnx output shape {got.shape} != torch output shape {want.shape}")
    return float(np.max(np.abs(got - want))) if want.size else 0.0


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
