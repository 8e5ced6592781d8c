"""``hwnas build-lut`` and ``hwnas lut show|plot|validate`` end to end on the local device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.cli import main
from hwnas.paths import user_luts_dir


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    assert out.count("\n") == 1  # exactly one JSON object
    return json.loads(out)


def test_build_show_plot_validate_on_local(tmp_path: Path, capsys) -> None:
    args = [
        "build-lut",
        "--device",
        "local",
        "--quick",
        "--archs",
        "10",
        "--repeats",
        "3",
        "--rounds",
        "2",
        "--json",
    ]
    assert main(args) == 0
    built = _json(capsys)
    path = Path(built["path"])
    assert path == user_luts_dir() / "quick" / "local_fbnet.json" and path.is_file()
    assert built["complete"] and built["entries"] == 22 and built["calibration"]["n"] == 10
    timing = json.loads(path.read_text())["settings"]["timing"]
    assert timing["block_timing"]["min_time_ms"] == timing["arch_timing"]["min_time_ms"] == 25.0
    jobs = built["jobs"]
    assert jobs["measured"] == jobs["rounds_total"] >= 2 * jobs["total"]  # 2 rounds (+ extras)
    assert 0 < built["device_minutes"] <= built["wall_minutes"]

    assert main(["lut", "show", str(path), "--json"]) == 0
    shown = _json(capsys)
    assert shown["device"] == "local" and shown["runtime"]["name"] == "onnxruntime"
    assert shown["statistic"] == "min" and shown["threads"] == 1

    assert main(["lut", "plot", str(path), "--out", str(tmp_path), "--json"]) == 0
    written = _json(capsys)["written"]
    assert [Path(p).name for p in written] == [
        "local_fbnet_linear.png",
        "local_fbnet_calibration.png",
    ]
    assert all(Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in written)

    plot = tmp_path / "val.png"
    assert main(["lut", "validate", str(path), "--archs", "8", "--plot", str(plot), "--json"]) == 0
    report = _json(capsys)
    assert report["n"] == 8 and report["device"] == "local"
    assert set(report["figures"]) == {
        "calibrated",
        "plain",
        "affine",
        "calibrated_drift_corrected",
    }
    drift = report["drift"]  # calibration networks re-timed beside the validation networks
    assert drift["anchors"] >= 2 and drift["p10"] <= drift["now_over_build"] <= drift["p90"]
    assert drift["now_over_build"] > 0
    for figures in report["figures"].values():
        assert 0 <= figures["within_5pct"] <= figures["within_10pct"] <= 1
    # (how well it predicts is a timing claim: bench/lut_accuracy.py measures it)
    assert plot.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build-lut", "--device", "pi4"], "reference LUT"),
        (["build-lut", "--device", "nope"], "unknown device 'nope'"),
        (["build-lut", "--device", "local", "--space", "nasbench"], "unknown space"),
        (["lut", "show", "missing.json"], "does not exist"),
        (["lut", "show", "--device", "nodev"], "LUTs available: pi4: fbnet; pixel3: fbnet"),
        (["lut", "validate", "--device", "pi4"], "no agent"),
    ],
)
def test_user_errors_exit_2(args: list[str], message: str, capsys) -> None:
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_show_resolves_a_device_name_to_the_shipped_reference(capsys) -> None:
    assert main(["lut", "show", "--device", "pi4", "--json"]) == 0
    shown = _json(capsys)
    assert shown["path"].endswith("luts/pi4_fbnet.json")
    assert shown["linear"]["families"] == 24


def test_darts_lut_measured_on_local_prices_the_darts_space(capsys) -> None:
    """The darts space's latency comes from op entries the agent measured (no synthetic LUT)."""
    from hwnas.costs.latency import load_latency_source
    from hwnas.costs.models import make_cost_models
    from hwnas.spaces import darts_genotype as gt
    from hwnas.spaces.base import SpaceConfig, create_space

    args = ["build-lut", "--device", "local", "--space", "darts", "--repeats", "3", "--rounds", "2"]
    assert main([*args, "--json"]) == 0
    built = _json(capsys)
    assert Path(built["path"]) == user_luts_dir() / "local_darts.json"
    assert built["complete"] and built["entries"] == 43  # 32 edge ops + 11 fixed blocks

    space = create_space("darts", SpaceConfig(32, 10, 0.25))
    latency = make_cost_models(space, load_latency_source("local", space))["latency_ms"]
    low, high = latency.bounds()
    assert 0 < low < high
    all_sep5 = "|".join(["-".join(["sep_conv_5x5@0+sep_conv_5x5@1"] * 4)] * 2)
    all_pool = "|".join(["-".join(["max_pool_3x3@0+max_pool_3x3@1"] * 4)] * 2)
    heavy, light = (latency.discrete(gt.parse_genotype(t)) for t in (all_sep5, all_pool))
    assert low <= light < heavy <= high

    search = ["search", "--device", "local", "--space", "darts", "--method", "dca"]
    assert main([*search, "--latency-ms", f"{low / 2}"]) == 2
    assert "outside the feasible range" in capsys.readouterr().err


def test_dso_lut_measured_on_local_prices_the_dso_space(tmp_path: Path, capsys) -> None:
    """The dso space's per-edge latencies come from blocks the agent timed with onnxruntime; the
    shipped reference devices cannot price it and say what can."""
    from hwnas.costs.latency import load_latency_source
    from hwnas.costs.models import make_cost_models
    from hwnas.spaces.base import SpaceConfig, create_space

    args = ["build-lut", "--device", "local", "--space", "dso", "--repeats", "3", "--rounds", "2"]
    assert main([*args, "--json"]) == 0
    built = _json(capsys)
    assert Path(built["path"]) == user_luts_dir() / "local_dso.json"
    assert built["complete"] and built["entries"] == 14  # 9 edge-op blocks + 5 fixed blocks
    assert built["runtime"]["name"] == "onnxruntime" and built["space"] == "dso"

    space = create_space("dso", SpaceConfig(32, 10, 0.25))
    latency = make_cost_models(space, load_latency_source("local", space))["latency_ms"]
    low, high = latency.bounds()
    assert 0 < low < high
    every_c3, every_c1 = (space.parse_arch(";".join([f"0>3:{op}"] * 3)) for op in ("c3", "c1"))
    assert low < latency.discrete(every_c1) < latency.discrete(every_c3) < high  # 9x the MACs

    search = ["search", "--space", "dso", "--out"]
    assert (
        main([*search, str(tmp_path / "a"), "--device", "local", "--latency-ms", f"{low / 2}"]) == 2
    )
    assert "outside the feasible range" in capsys.readouterr().err
    assert main([*search, str(tmp_path / "b"), "--device", "pi4", "--latency-ms", "5"]) == 2
    err = capsys.readouterr().err
    assert "'pi4' has only the shipped reference LUT for fbnet" in err
    assert "hwnas build-lut --device local --space dso" in err
    assert main(["build-lut", "--device", "pi4", "--space", "dso"]) == 2
    assert "reference LUT" in capsys.readouterr().err

    # a whole run on that LUT: dso (the space's default method) on digits, tiny budgets, --verify
    limit = low + 0.3 * (high - low)
    out = tmp_path / "run"
    argv = [*search, str(out), "--device", "local", "--recipe", "smoke.toml", "--no-fill"]
    argv += ["--latency-ms", f"{limit}", "--verify", "--json"]
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    assert report["method"] == "dso" and report["space"] == "dso"
    (c,) = report["constraints"]
    assert c["satisfied"] and c["predicted"] <= limit and c["measured"] > 0
    own = report["derivation"]["own"]
    assert own["feasible"] and own["arch"] == report["arch_text"]  # dso met it; no repair, no fill
    assert report["onnx"]["max_abs_diff"] < 1e-4
    info = json.loads((out / "search.json").read_text())["info"]
    assert info["budget_met"] and info["bisection"][0]["gamma_l1"] == 1e-3
