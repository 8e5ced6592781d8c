"""ONNX export of block specs: onnxruntime parity, file format, reproducibility and the cache."""

from __future__ import annotations

import random

import onnx

from hwnas.blocks import export
from hwnas.blocks.export import check_onnx_parity, export_onnx, onnx_cache_path, spec_to_onnx
from hwnas.blocks.specs import BlockSpec, IBSpec, SkipSpec
from hwnas.blocks.torch_blocks import build_module, build_sequential
from hwnas.spaces.fbnet_geometry import NUM_LAYERS, OPS, arch_specs, fixed_specs

PARITY_TOLERANCE = 1e-4


def test_block_parity_with_onnxruntime(example_spec: BlockSpec) -> None:
    spec = example_spec
    module = build_module(spec, seed=7)
    data = export_onnx(module, spec.in_shape)
    assert check_onnx_parity(module, data, spec.in_shape, seed=1) < PARITY_TOLERANCE


def test_whole_random_fbnet_network_parity() -> None:
    rng = random.Random(2021)
    arch = tuple(rng.randrange(len(OPS)) for _ in range(NUM_LAYERS))
    stem, *head = fixed_specs()
    specs = [stem, *arch_specs(arch), *head]
    net = build_sequential(specs, seed=5)
    data = export_onnx(net, specs[0].in_shape)
    assert check_onnx_parity(net, data, specs[0].in_shape) < PARITY_TOLERANCE
    # the parity check can fail: different weights give a different network
    other = build_sequential(specs, seed=6)
    assert check_onnx_parity(other, data, specs[0].in_shape) > 1e-3


def test_file_format(tmp_path) -> None:
    spec = IBSpec.fbnet(h=16, cin=32, cout=32, kernel=5, stride=1, expansion=3, groups=1)
    path = tmp_path / "sub" / "block.onnx"
    data = export_onnx(build_module(spec), spec.in_shape, path)
    assert path.read_bytes() == data
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input" and out.name == "output"
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [1, 32, 16, 16]
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [1, 32, 16, 16]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops  # folded into the convs (eval mode, constant folding)
    assert ops.count("Conv") == 3 and ops.count("Add") == 1


def test_export_is_reproducible() -> None:
    spec = IBSpec.fbnet(h=8, cin=64, cout=64, kernel=3, stride=1, expansion=1, groups=2)
    first = export_onnx(build_module(spec, seed=0), spec.in_shape)
    assert export_onnx(build_module(spec, seed=0), spec.in_shape) == first
    assert export_onnx(build_module(spec, seed=1), spec.in_shape) != first


def test_spec_to_onnx_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls: list[tuple[int, ...]] = []
    real_export = export.export_onnx

    def counting_export(module, input_shape, path=None):
        calls.append(tuple(input_shape))
        return real_export(module, input_shape, path)

    monkeypatch.setattr(export, "export_onnx", counting_export)
    spec = SkipSpec(h=16, w=16, cin=32, cout=64, stride=2)
    first = spec_to_onnx(spec)
    path = onnx_cache_path(spec)
    assert path.parent == tmp_path / "hwnas" / "onnx" and path.read_bytes() == first
    assert spec_to_onnx(spec) == first
    assert calls == [spec.in_shape]  # the second call was served from disk
    assert spec_to_onnx(spec, seed=1) != first
    assert onnx_cache_path(spec, seed=1) != path
    assert spec_to_onnx(spec, use_cache=False) == first
    assert len(calls) == 3
    assert check_onnx_parity(build_module(spec), first, spec.in_shape) < PARITY_TOLERANCE


def test_cache_key_depends_on_spec_and_settings(monkeypatch) -> None:
    a = SkipSpec(h=16, w=16, cin=32, cout=64, stride=2)
    b = SkipSpec(h=16, w=16, cin=32, cout=64, stride=1)
    assert export.onnx_cache_key(a) != export.onnx_cache_key(b)
    assert export.onnx_cache_key(a) == export.onnx_cache_key(SkipSpec(16, 16, 32, 64, 2))
    before = export.onnx_cache_key(a)
    monkeypatch.setitem(export.EXPORT_SETTINGS, "opset_version", 18)
    assert export.onnx_cache_key(a) != before
