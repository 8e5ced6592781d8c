"""build-lut at other precisions and formats: int8 QDQ ONNX and TFLite models timed for real."""

from __future__ import annotations

import json

import pytest

from hwnas.cli import main
from hwnas.lut.build import default_out
from hwnas.lut.schema import load_lut


@pytest.mark.parametrize(
    ("precision", "fmt", "runtime"), [("int8", "onnx", "onnxruntime"), ("fp32", "tflite", "tflite")]
)
def test_quick_build_at_a_precision_and_format(
    precision: str, fmt: str, runtime: str, capsys
) -> None:
    argv = ["build-lut", "--device", "local", "--quick", "--precision", precision, "--format", fmt]
    argv += ["--archs", "0", "--rounds", "1", "--repeats", "3", "--json"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    path = default_out("local", "fbnet", quick=True, precision=precision, fmt=fmt)
    assert summary["path"] == str(path) and summary["complete"]
    lut = load_lut(path)
    assert lut.settings["precision"] == precision and lut.settings["format"] == fmt
    assert lut.runtime["name"] == runtime
    assert lut.entries and all(e.precision == precision for e in lut.entries)
    assert all(e.median_ms >= 0 and e.n >= 1 for e in lut.entries)


def test_unsupported_space_precision_is_refused(capsys) -> None:
    assert main(["build-lut", "--device", "local", "--space", "darts", "--precision", "int8"]) == 2
    err = capsys.readouterr().err
    assert "int8 onnx models exist for the fbnet, ib-channel and dso spaces" in err
