"""``hwnas.runs.models``: one block at fp32/fp16/int8 as ONNX and TFLite files."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwnas.blocks.specs import ConvSpec, FCSpec, IBSpec, PoolSpec, SkipSpec
from hwnas.errors import UserError
from hwnas.export.verify import tflite_interpreter_class
from hwnas.runs.models import precision_model

SPECS = [
    IBSpec.fbnet(8, 16, 16, 3, 1, 3, 2),
    IBSpec.fbnet(8, 16, 24, 5, 2, 1, 1),
    ConvSpec(h=8, w=8, cin=3, cout=8, kernel=3, stride=1),
    SkipSpec(h=8, w=8, cin=8, cout=16, stride=2),
    FCSpec(h=1, w=1, cin=32, cout=10),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key())
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnx_models_run_and_carry_their_precision(spec, precision: str) -> None:
    data = precision_model(spec, precision, "onnx")
    model = onnx.load_from_string(data)
    ops = {n.op_type for n in model.graph.node}
    elem = model.graph.input[0].type.tensor_type.elem_type
    assert (elem == onnx.TensorProto.FLOAT16) == (precision == "fp16")
    assert ("QuantizeLinear" in ops) == (precision == "int8")
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    dtype = np.float16 if precision == "fp16" else np.float32
    x = np.random.default_rng(0).standard_normal(spec.in_shape).astype(dtype)
    (y,) = session.run(None, {"input": x})
    assert y.shape == spec.out_shape and np.isfinite(y).all()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.key())
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tflite_models_run_and_carry_their_precision(spec, precision: str) -> None:
    interp = tflite_interpreter_class()(model_content=precision_model(spec, precision, "tflite"))
    interp.allocate_tensors()
    types = {d["dtype"] for d in interp.get_tensor_details()}
    assert (np.int8 in types) == (precision == "int8")
    assert (np.float16 in types) == (precision == "fp16")
    inp = interp.get_input_details()[0]
    shape = spec.in_shape if len(spec.in_shape) == 2 else (1, spec.h, spec.w, spec.cin)
    assert tuple(inp["shape"]) == shape and inp["dtype"] == np.float32
    interp.set_tensor(inp["index"], np.ones(shape, np.float32))
    interp.invoke()
    out = interp.get_tensor(interp.get_output_details()[0]["index"])
    assert np.isfinite(out).all()


def test_bad_requests_are_user_errors() -> None:
    with pytest.raises(UserError, match="precision"):
        precision_model(SPECS[0], "int4", "onnx")
    with pytest.raises(UserError, match="format"):
        precision_model(SPECS[0], "fp32", "coreml")
    with pytest.raises(UserError, match="FBNet-space ops"):
        precision_model(PoolSpec(h=8, w=8, cin=4), "fp32", "onnx")
