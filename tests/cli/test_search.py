"""``hwnas search`` end to end on digits with tiny budgets, its errors, --verify and resuming."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hwnas.cli import main
from hwnas.lut.schema import load_lut, save_lut
from hwnas.paths import shipped_luts_dir

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--recipe", "smoke.toml", "--latency-ms", "30"]


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # the command sets 1 thread (recipe); restore for other tests


def _fail(capsys, *argv: str) -> str:
    assert main(["search", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hwnas: error: ") and "\n" not in err
    return err


def test_budgets_outside_the_range_exit_2_naming_it(capsys, tmp_path):
    err = _fail(capsys, *TINY[:2], "--latency-ms", "5", "--out", str(tmp_path / "a"))
    assert "--latency-ms 5 is outside the feasible range 7.798 .. 79.22" in err
    err = _fail(capsys, *TINY[:2], "--latency-ms", "500", "--out", str(tmp_path / "b"))
    assert "feasible range" in err
    err = _fail(capsys, *TINY[:2], "--flops-m", "0.5", "--out", str(tmp_path / "c"))
    assert "--flops-m 0.5 is outside the feasible range" in err
    assert _fail(capsys, *TINY[:2], "--out", str(tmp_path / "d")).endswith(
        "give at least one budget: --latency-ms, --flops-m or --params-m"
    )


def test_unknown_names_list_the_known_ones(capsys):
    assert "known: darts, dso, fbnet, ib-channel" in _fail(capsys, *TINY, "--space", "nope")
    err = _fail(capsys, *TINY, "--method", "nope")
    assert (
        "known: darts, dca, dsnas, dso, fbnet-gumbel, greedy-admm, ista, nao, proxyless, random, uniform"
        in err
    )
    assert "pi4" in _fail(capsys, *TINY, "--device", "nope")


def test_verify_on_a_reference_device_is_refused_up_front(capsys):
    err = _fail(capsys, *TINY, "--verify")
    assert "'pi4' is a reference device" in err and "--verify-device local" in err


def test_a_lut_that_does_not_cover_the_space_names_the_blocks(capsys, tmp_path):
    lut = load_lut(shipped_luts_dir() / "pi4_fbnet.json")
    # every 3x3 block at 8 px: no entries and no linear width family to price them from
    kept = [
        e for e in lut.entries if not (e.spec.op == "ib" and e.spec.h == 8 and e.spec.kernel == 3)
    ]
    save_lut(lut.replace(entries=kept), tmp_path / "partial.json")
    err = _fail(capsys, *TINY, "--device", str(tmp_path / "partial.json"))
    assert "does not cover space 'fbnet'" in err and "layer 10 k3_e6" in err


def test_tiny_search_writes_the_run_directory_and_verifies(capsys, tmp_path):
    out = tmp_path / "run"
    code = main(
        ["search", *TINY, "--out", str(out), "--verify", "--verify-device", "local", "--json"]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)  # exactly one JSON object
    for name in (
        "arch.json",
        "config.json",
        "report.json",
        "search.json",
        "weights.npz",
        "model.onnx",
        "disparity.png",
        "alpha.png",
        "accuracy_latency.png",
        "derivation.png",
    ):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists()
    (c,) = report["constraints"]
    assert c["metric"] == "latency_ms" and c["limit"] == 30.0 and c["satisfied"]
    assert c["predicted"] <= 30.0 and c["measured"] is None  # measured on local, not on pi4
    assert report["verify"]["device"] == "local" and report["verify"]["median_ms"] > 0
    assert report["onnx"]["max_abs_diff"] < 1e-4
    assert 0.0 <= report["accuracy"]["test"] <= 1.0 and report["params"] > 0
    assert report["budget"]["search"]["steps"] == 8 and report["search_seconds"] > 0
    d = report["derivation"]  # the method's own architecture, then repair, then fill
    assert d["own"]["costs"]["latency_ms"] > 0 and d["fill"]["enabled"] is True  # the default
    assert d["fill"]["arch"] == report["arch_text"]  # the delivered architecture is the filled one
    assert d["repair"]["needed"] == (not d["own"]["feasible"])
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["fill"] is True
    assert config["config"]["seed"] == 0 and config["environment"]["torch"] == torch.__version__
    assert config["num_classes"] == 10 and config["data"]["name"] == "digits"
    arch = json.loads((out / "arch.json").read_text())
    assert arch["text"] == report["arch_text"] and arch["kind"] == "hwnas-arch"
    with np.load(out / "weights.npz", allow_pickle=False) as weights:
        assert len(weights.files) > 50
    # the final stage again from the saved arch: same architecture, fresh report
    for name in ("weights.npz", "train.json", "report.json"):
        (out / name).unlink()
    assert main(["search", "--resume", str(out), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["arch_text"] == report["arch_text"]
    assert again["accuracy"] == pytest.approx(report["accuracy"])
    assert "drop --seed" in _fail(capsys, "--resume", str(out), "--seed", "3")


def test_no_fill_delivers_the_methods_own_feasible_arch(capsys, tmp_path):
    out = tmp_path / "run"
    argv = ["search", *TINY, "--method", "uniform", "--no-fill", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "uniform's own architecture: latency_ms" in text and "fill: off" in text
    report = json.loads((out / "report.json").read_text())
    d = report["derivation"]
    assert d["own"]["feasible"] and d["repair"]["steps"] == [] and d["fill"]["steps"] == []
    assert d["own"]["arch"] == report["arch_text"] and not d["changed"]
    assert json.loads((out / "config.json").read_text())["config"]["fill"] is False


@pytest.mark.slow
def test_ctrl_c_leaves_a_resumable_run(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        (ROOT / "search" / "smoke.toml")
        .read_text()
        .replace("steps = 8", "steps = 30\ncheckpoint_every = 3")
        .replace("[run]", '[run]\nspace = "ib-channel"')
    )
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "hwnas", "search", "--recipe", str(recipe), "--latency-ms", "30"]
    proc = subprocess.Popen([*cmd, "--out", str(out)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "search.json").is_file():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert f"hwnas search --resume {out}" in err
    state = json.loads((out / "checkpoints" / "search.json").read_text())
    assert 3 <= state["meta"]["step"] < 30
    done = subprocess.run(
        [*cmd[:4], "--resume", str(out), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    history = json.loads((out / "search.json").read_text())["history"]
    assert [row["step"] for row in history] == list(range(30))
