"""``hwnas measure`` on the local device (a real agent subprocess) and its user errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwnas.cli import main
from tests.support.models import conv_relu_onnx

ROOT = Path(__file__).resolve().parents[2]


def test_measure_local_json_prints_one_object(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(conv_relu_onnx(size=16))
    assert (
        main(["measure", str(path), "--device", "local", "--repeats", "12", "--json", "--samples"])
        == 0
    )
    out = capsys.readouterr().out
    result = json.loads(out)
    assert out.count("\n") == 1
    assert result["n"] == 12 and len(result["samples_ms"]) == 12
    assert result["p10_ms"] <= result["median_ms"] <= result["p90_ms"]
    assert result["settings"]["threads"] == 1
    assert result["settings"]["affinity"] == [result["settings"]["core"]]
    assert result["fingerprint"]["runtimes"]["onnxruntime"]


def test_measure_human_output(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(conv_relu_onnx(size=8))
    assert main(["measure", str(path), "--repeats", "5"]) == 0
    out = capsys.readouterr().out
    assert "median" in out and "p10" in out and "p90" in out and "n 5" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["measure", "/nonexistent.onnx"], "does not exist"),
        (["measure", "{model}", "--device", "nope"], "unknown device 'nope'"),
        (["measure", "{model}", "--device", "pi4"], "reference LUT"),
        (["measure", "{model}", "--repeats", "0"], "--repeats"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(conv_relu_onnx(size=8))
    argv = [a.replace("{model}", str(model)) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_broken_model_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a model")
    proc = subprocess.run(
        [sys.executable, "-m", "hwnas", "measure", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "could not load the model" in proc.stderr
