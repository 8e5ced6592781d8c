"""``hwnas.quant.size``: every method on one shared problem (small net, real evaluator), the
shared final fine-tune, and ``hwnas quantize --size-kb`` end to end on a trained run."""

from __future__ import annotations

import json
import re
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.cli import main
from hwnas.cli.quantize import _render_size
from hwnas.errors import UserError
from hwnas.graph.lower import graph_from_module
from hwnas.graph.wcodes import weight_bytes
from hwnas.quant.dfq import DFQConfig
from hwnas.quant.policy import load_codes, load_size_policy, load_state
from hwnas.quant.qat import FinetuneConfig
from hwnas.quant.qnet import QuantNet
from hwnas.quant.size import SIZE_METHODS, finetune_size, search_size, size_problem
from tests.quant.conftest import SMALL_SPECS


@pytest.fixture(scope="module")
def small():
    graph = graph_from_module(build_sequential(SMALL_SPECS, seed=1), SMALL_SPECS[0].in_shape)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(160, 3, 8, 8, generator=gen)
    with torch.no_grad():
        y = QuantNet(graph, {})(x).argmax(dim=1)  # the float net is right by construction
    data = SimpleNamespace(
        train_x=x[:96], train_y=y[:96], val_x=x[96:128], val_y=y[96:128], test_x=x[128:],
        test_y=y[128:],
    )  # fmt: skip
    return graph, data


def _bytes(graph, bits: int, coding: str) -> int:
    return sum(
        weight_bytes(layer.weight.size, layer.weight.shape[0], bits, coding)
        for layer in graph.layers
    )


@pytest.mark.parametrize("coding", ["kmeans", "linear"])
def test_every_method_fits_the_budget_on_one_shared_problem(small, coding) -> None:
    graph, data = small
    budget = 0.5 * (_bytes(graph, 3, coding) + _bytes(graph, 4, coding))
    problem = size_problem(graph, data, coding, budget)
    assert problem.float_accuracy == 100.0
    n = len(graph.layers)
    quick_dfq = DFQConfig(steps=4, val_batch_size=32)
    found = {m: search_size(problem, m, episodes=6, seed=0, dfq=quick_dfq) for m in SIZE_METHODS}
    for method, r in found.items():
        assert r.method == method and len(r.policy) == n
        assert "reselected" not in r.details  # no held-out images: the best reward
        assert r.size_bytes == problem.size_bytes(r.policy) <= budget
        assert r.val_accuracy == problem.evaluate(r.policy)  # what the method saw is reproducible
    assert found["uniform"].policy == (3,) * n and found["uniform"].evaluated_policies == 1
    assert found["greedy"].evaluated_policies == 7 * n + 1
    dfq = found["dfq"].details  # DFQ's own argmax, and the repair only if it missed
    assert (dfq["own_size_bytes"] > budget) == dfq["repaired"]
    assert dfq["repaired"] or tuple(dfq["own_policy"]) == found["dfq"].policy
    for method in ("haq", "random"):
        assert found[method].episodes == 6 and 1 <= found[method].evaluated_policies <= 6
        assert found[method].episode_seconds > 0
        assert len(found[method].details["history"]) == 6
    held = SimpleNamespace(**vars(data), select_x=data.test_x, select_y=data.test_y)
    reselected = search_size(size_problem(graph, held, coding, budget), "random", episodes=6)
    rows = reselected.details["reselected"]
    assert 1 <= len(rows) <= 6 and reselected.details["best_episode"] in [
        r["episode"] for r in rows
    ]
    best = max(rows, key=lambda r: r["holdout_accuracy"])["holdout_accuracy"]
    chosen = next(r for r in rows if r["episode"] == reselected.details["best_episode"])
    assert chosen["holdout_accuracy"] == best
    # the shared final fine-tune: codes that reproduce the fine-tuned model
    final = finetune_size(problem, found["greedy"].policy, FinetuneConfig(steps=3, batch_size=32))
    assert final.accuracy["val"]["before"] == found["greedy"].val_accuracy
    assert set(final.codes) == set(problem.names)
    for name, code in final.codes.items():
        assert np.array_equal(code.dequantize(), final.net.coded_weight(name).detach().numpy())
    assert (
        sum(
            weight_bytes(c.codes.size, c.codes.shape[0], c.bits, c.kind)
            for c in final.codes.values()
        )
        == final.size_bytes
    )


def test_a_budget_below_all_2_bits_names_the_smallest_and_largest_sizes(small) -> None:
    graph, data = small
    smallest = _bytes(graph, 2, "kmeans")
    with pytest.raises(UserError, match=r"smallest achievable size is ([0-9.]+) kB") as info:
        size_problem(graph, data, "kmeans", smallest - 1)
    assert f"{smallest / 1000:.3f} kB" in str(info.value)
    assert f"{_bytes(graph, 8, 'kmeans') / 1000:.3f} kB" in str(info.value)
    assert size_problem(graph, data, "kmeans", smallest).budget_bytes == smallest


# -- the command, on a trained run ---------------------------------------------------------------

QUICK = ["--episodes", "3", "--final-steps", "4", "--train-images", "256", "--val-images", "100"]


@pytest.fixture()
def run_copy(trained_run_dir, tmp_path):
    return shutil.copytree(trained_run_dir, tmp_path / "run")


def test_quantize_size_mode_json_report_and_files(run_copy, capsys) -> None:
    args = ["quantize", "--run", str(run_copy), "--size-kb", "60", *QUICK, "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "size" and report["coding"] == "kmeans"  # the default coding
    (constraint,) = report["constraints"]
    assert constraint["metric"] == "size_bytes" and constraint["limit"] == 60_000
    assert constraint["satisfied"] and constraint["priced"] <= 60_000
    assert constraint["priced"] == sum(report["policy"]["layer_bytes"])
    assert report["sizes"]["uniform_8bit_bytes"] > 60_000 > report["sizes"]["smallest_bytes"]
    search = report["search"]
    assert search["episodes"] == 3 and len(search["history"]) == 3
    assert search["episode_seconds"] > 0 and 1 <= search["evaluated_policies"] <= 3
    for split in ("val", "test"):
        assert 0 <= report["accuracy"][split]["before"] <= 100
        assert 0 <= report["accuracy"][split]["after"] <= 100
    policy = load_size_policy(run_copy / "quant_size_policy.json")
    assert list(policy.values()) == report["policy"]["w_bits"]
    codes = load_codes(run_copy / "quant_size_codes")
    model = load_state(run_copy / "quant_size_model")
    assert set(codes) == set(policy)
    for layer in model.graph.layers:  # the saved float graph holds exactly the decoded weights
        assert codes[layer.name].bits == policy[layer.name]
        assert np.array_equal(codes[layer.name].dequantize(), layer.weight)
    for name in ("quant_size_report.json", "quant_size_bits.png", "quant_size_policies.png"):
        assert (run_copy / name).is_file(), name
    assert not (run_copy / "quant_policy.json").exists()  # latency mode's files untouched
    summary = json.loads((run_copy / "report.json").read_text())["quantization_size"]
    assert summary["constraints"] == report["constraints"]
    # the deployable file: packed weights, really smaller, and the fine-tuned model's outputs
    export = report["export"]
    assert f"deployable: {export['file']}" in _render_size(report)  # the text output names it
    onnx_file = run_copy / "quant_size_model.onnx"
    assert export["file_bytes"] == onnx_file.stat().st_size
    assert export["file_bytes"] < 0.5 * export["fp32_file_bytes"]
    assert export["verification"]["agreement"] == 1.0
    assert export["verification"]["max_abs_logit_diff"] < 1e-3
    # hwnas export --precision packed writes it again (and as TFLite), verified and timed
    for fmt in ("onnx", "tflite"):
        out = run_copy / f"packed.{fmt}"
        args = ["export", "--run", str(run_copy), "--format", fmt, "--precision", "packed"]
        assert main([*args, "--out", str(out), "--repeats", "3", "--json"]) == 0
        exported = json.loads(capsys.readouterr().out)
        assert exported["bytes"] == out.stat().st_size < 0.5 * export["fp32_file_bytes"]
        assert exported["verification"]["agreement"] == 1.0
        assert exported["weight_bits"] == policy
        assert exported["latency"]["median_ms"] > 0
    assert out.stat().st_size > 0


def test_size_mode_infeasible_budget_and_flag_errors_exit_2(run_copy, capsys) -> None:
    code = main(["quantize", "--run", str(run_copy), "--size-kb", "1", *QUICK])
    assert code == 2
    err = capsys.readouterr().err
    match = re.search(r"smallest achievable size is ([0-9.]+) kB .* largest ([0-9.]+) kB", err)
    assert match, err
    assert 1 < float(match.group(1)) < float(match.group(2))
    assert not (run_copy / "quant_size_policy.json").exists()
    base = ["quantize", "--run", str(run_copy)]
    assert main([*base, "--size-kb", "-3"]) == 2
    assert main([*base, "--latency-ms", "5"]) == 2  # latency mode needs a device
    assert "needs --device" in capsys.readouterr().err
    # every method runs in latency mode now; --coding is size mode's alone
    assert main([*base, "--device", "local", "--latency-ms", "5", "--coding", "linear"]) == 2
    assert "--coding is a size-mode option" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: the two budgets exclude each other
        main([*base, "--latency-ms", "5", "--size-kb", "60"])
    assert main([*base, "--size-kb", "60", "--select-images", "10000000"]) == 2
    assert "validation images; the split has" in capsys.readouterr().err
    assert main([*base, "--device", "local", "--latency-ms", "5", "--select-images", "9"]) == 2
    assert "--select-images is a size-mode option" in capsys.readouterr().err
