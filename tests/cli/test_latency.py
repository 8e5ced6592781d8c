"""``hwnas fit-latency`` / ``hwnas predict-latency`` end to end through the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwnas.cli import main
from tests.support.paths import fbnet_data_dir

ROOT = Path(__file__).resolve().parents[2]
DATA = fbnet_data_dir() or Path("/nonexistent")
needs_data = pytest.mark.skipif(
    not (DATA / "gold_6240.csv").is_file(),
    reason="set HWNAS_FBNET_DATA to the HW-NAS-Bench FBNet CSVs",
)


def head(source: Path, rows: int, dest: Path, drop_latency: bool = False) -> Path:
    lines = source.read_text().splitlines()[: rows + 1]
    if drop_latency:
        lines = [line.split(",")[0] for line in lines]
    dest.write_text("\n".join(lines) + "\n")
    return dest


def run_json(capsys, argv):
    code = main(argv)
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object
    return code, json.loads(out)


@needs_data
def test_fit_then_predict_json(tmp_path, capsys):
    train = head(DATA / "gold_6240.csv", 100, tmp_path / "train.csv")
    out = tmp_path / "gold.json"
    code, fitted = run_json(
        capsys,
        [
            "fit-latency",
            "--space",
            "fbnet",
            "--measurements",
            str(train),
            "--out",
            str(out),
            "--seed",
            "4",
            "--json",
        ],
    )
    assert code == 0 and fitted["method"] == "hier" and fitted["n_train"] == 100
    assert 0 < fitted["loo_rmspe"] < 0.1 and fitted["train"]["within_10pct"] > 0.9
    saved = json.loads(out.read_text())
    assert saved["kind"] == "hwnas-latency-predictor" and saved["info"]["seed"] == 4

    test = tmp_path / "test.csv"
    lines = (DATA / "gold_6240.csv").read_text().splitlines()
    test.write_text("\n".join([lines[0], *lines[4001:]]) + "\n")
    code, result = run_json(
        capsys, ["predict-latency", "--predictor", str(out), "--archs", str(test), "--json"]
    )
    assert code == 0 and result["n"] == 1000 and len(result["latency_ms"]) == 1000
    accuracy = result["accuracy"]
    assert accuracy["within_10pct"] > 0.95 and accuracy["spearman"] > 0.9
    assert set(accuracy) >= {"within_5pct", "within_10pct", "rmspe", "kendall_tau", "spearman"}
    measured = np.array([float(line.split(",")[1]) for line in lines[4001:]])
    assert np.allclose(result["measured_ms"], measured)  # input order kept


@needs_data
def test_device_name_resolves_to_the_shipped_lut(tmp_path, capsys):
    archs = head(DATA / "raspi4.csv", 20, tmp_path / "a.csv", drop_latency=True)
    code, result = run_json(
        capsys, ["predict-latency", "--predictor", "pi4", "--archs", str(archs), "--json"]
    )
    assert code == 0 and result["predictor"] == "lut:pi4" and "accuracy" not in result
    expected = [
        float(line.split(",")[1]) for line in (DATA / "raspi4.csv").read_text().splitlines()[1:21]
    ]
    np.testing.assert_allclose(result["latency_ms"], expected, atol=1e-6)


@needs_data
def test_text_output_and_additive_method(tmp_path, capsys):
    train = head(DATA / "samsung_a50.csv", 60, tmp_path / "s.csv")
    assert (
        main(
            [
                "fit-latency",
                "--measurements",
                str(train),
                "--out",
                str(tmp_path / "s.json"),
                "--method",
                "additive",
            ]
        )
        == 0
    )
    assert "additive, fbnet, 60 architectures" in capsys.readouterr().out
    assert (
        main(["predict-latency", "--predictor", str(tmp_path / "s.json"), "--archs", str(train)])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "arch,predicted_ms,latency_ms" and len(lines) == 62
    assert lines[-1].startswith("# fitted:additive vs measured (60 architectures): within +-5 %")


def test_bad_rows_are_one_line_errors(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("arch,latency_ms\n" + "-".join(["0"] * 22) + ",3\n0-0-0,4\n")
    assert main(["predict-latency", "--predictor", "pixel3", "--archs", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"hwnas: error: {bad} line 3: bad fbnet arch '0-0-0': FBNet arch has 3 layers, expected 22"
    )
    assert main(["fit-latency", "--measurements", str(bad), "--out", str(tmp_path / "x.json")]) == 2
    assert "line 3" in capsys.readouterr().err
    assert main(["predict-latency", "--predictor", "nope", "--archs", str(bad)]) == 2
    assert "LUTs available: pi4: fbnet; pixel3: fbnet" in capsys.readouterr().err
    assert (
        main(
            [
                "fit-latency",
                "--measurements",
                str(bad),
                "--out",
                "x.json",
                "--method",
                "additive",
                "--prior",
                "pi4",
            ]
        )
        == 2
    )
    assert not (tmp_path / "x.json").exists()


def test_python_dash_m_entry_point(tmp_path):
    archs = tmp_path / "a.csv"
    archs.write_text("arch\n" + "-".join(["0"] * 22) + "\n" + "-".join(["8"] * 22) + "\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hwnas",
            "predict-latency",
            "--predictor",
            "pi4",
            "--archs",
            str(archs),
            "--json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["latency_ms"][0] == pytest.approx(17.618579, abs=1e-6)  # all k3_e1 on raspi4
    assert result["latency_ms"][1] < result["latency_ms"][0]  # all skip is faster
