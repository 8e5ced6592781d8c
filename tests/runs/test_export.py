"""``hwnas export`` on a trained run: every format and precision verified and timed."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from hwnas.cli import main
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import LayerBits
from hwnas.quant.calibrate import calibrate
from hwnas.quant.policy import save_state
from hwnas.quant.qnet import QuantNet
from hwnas.runs.export import ExportConfig, export_run
from hwnas.runs.measure import MeasureSettings
from hwnas.runs.rundir import load_run

FAST = MeasureSettings(warmup=2, repeats=5)


@pytest.fixture()
def run_copy(trained_run_dir, tmp_path):
    return shutil.copytree(trained_run_dir, tmp_path / "run")


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_export_is_verified_and_timed(run_copy, fmt: str, precision: str) -> None:
    out = run_copy / f"model.{fmt}"
    report = export_run(
        ExportConfig(
            run_copy, fmt, precision, out, device="local", calibration_images=256, measure=FAST
        )
    )
    assert out.is_file() and out.stat().st_size == report["bytes"]
    v = report["verification"]
    assert v["n"] == 359  # the whole digits test split
    if precision == "fp32":
        assert v["agreement"] == 1.0 and v["max_abs_logit_diff"] < 1e-3
    else:
        assert v["agreement"] >= 0.97  # against the fake-quantized PyTorch model
        assert report["int8_layers"] == 62
    assert abs(v["export_accuracy"] - v["reference_accuracy"]) <= 2.0
    assert v["reference_accuracy"] > 60
    assert report["latency"]["median_ms"] > 0 and report["latency"]["n"] == 5
    side = json.loads(out.with_name(out.name + ".json").read_text())
    assert side["sha256"] == report["sha256"]
    exports = json.loads((run_copy / "report.json").read_text())["exports"]
    assert exports[f"{fmt}-{precision}"]["verification"] == v


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_mixed_export_uses_the_saved_quantized_model(run_copy, fmt: str) -> None:
    run = load_run(run_copy)
    graph = graph_from_module(run.module, run.input_shape)
    policy = {
        layer.name: LayerBits(32, 32) if i % 4 == 0 else LayerBits(7, 8)
        for i, layer in enumerate(graph.layers)
    }
    x = torch.randn(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    save_state(run_copy / "quant_model", calibrate(QuantNet(graph, policy), [x]).to_state())
    report = export_run(
        ExportConfig(run_copy, fmt, "mixed", run_copy / f"m.{fmt}", device="", measure=FAST)
    )
    assert report["int8_layers"] == sum(not b.is_float for b in policy.values())
    assert report["verification"]["agreement"] >= 0.97
    assert "latency" not in report  # device "" skips timing
    if fmt == "onnx":
        assert report["runtime_options"] == {"disabled_optimizers": ["WeightBiasQuantization"]}


def test_cli_json_and_user_errors(run_copy, capsys) -> None:
    out = run_copy / "cli.onnx"
    assert (
        main(
            [
                "export",
                "--run",
                str(run_copy),
                "--format",
                "onnx",
                "--precision",
                "fp32",
                "--out",
                str(out),
                "--test-images",
                "50",
                "--repeats",
                "3",
                "--json",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    report = json.loads(printed)
    assert report["verification"]["n"] == 50 and report["device"] == "local"
    code = main(
        [
            "export",
            "--run",
            str(run_copy),
            "--format",
            "tflite",
            "--precision",
            "mixed",
            "--out",
            str(run_copy / "x.tflite"),
        ]
    )
    assert code == 2
    assert "hwnas quantize" in capsys.readouterr().err
