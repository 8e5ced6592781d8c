"""Data-parallel search: 2 CPU processes (gloo) give what one process gives with the same global
batch (hwnas.search.distributed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from hwnas.errors import UserError
from hwnas.search.checkpoint import CheckpointStore
from hwnas.search.distributed import DistContext, current, init_from_env
from tests.search import ddp_workers as w


def test_single_process_context_is_a_no_op():
    assert init_from_env({}) == DistContext() == current()
    ctx = current()
    x, y = torch.arange(6.0), torch.arange(6)
    assert ctx.shard(x, y)[0] is not None and torch.equal(ctx.shard(x, y)[1], y)
    t = torch.ones(3)
    ctx.all_reduce_mean_([t, None])
    assert torch.equal(t, torch.ones(3)) and ctx.mean({"a": 2.0}) == {"a": 2.0}
    with pytest.raises(UserError, match="does not split over 2"):
        DistContext(rank=0, world=2).shard(torch.zeros(5, 1), torch.zeros(5))
    with pytest.raises(UserError, match="use torchrun"):
        init_from_env({"WORLD_SIZE": "2"})


def test_sync_batchnorm_over_two_ranks_equals_full_batch_batchnorm(tmp_path):
    mp.spawn(w.bn_worker, args=(2, w.free_port(), str(tmp_path)), nprocs=2, join=True)
    got = np.load(tmp_path / "bn.npz")
    x, target = w.bn_data()
    x.requires_grad_(True)
    bn = w.bn_module()
    out = bn(x)  # one training-mode forward, as in each worker
    ((out - target) ** 2).mean().backward()
    np.testing.assert_allclose(got["out"], out.detach()[:4].numpy(), rtol=1e-5, atol=1e-5)
    # rank 0's input gradient is d(global mean loss)/dx times the world size (its loss is a
    # mean over half the batch)
    np.testing.assert_allclose(got["dx"], 2 * x.grad[:4].numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["dw"], bn.weight.grad.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["db"], bn.bias.grad.numpy(), rtol=1e-5, atol=1e-6)
    # running statistics updated with the global batch's mean and unbiased variance
    np.testing.assert_allclose(got["mean"], bn.running_mean.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["var"], bn.running_var.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_processes_search_like_one(tmp_path):
    """Second-order DARTS (every all-reduce: weights, alpha, the virtual step, the two
    finite-difference passes; DCA-NAS runs the same loop): the same derived
    architecture, history, weights, alpha and optimizer state. A large alpha step keeps the
    repair's preferences away from float ties."""
    method, settings = "darts", {"order": 2, "arch_lr": 0.3, "weight_sharing": True}
    single, double = tmp_path / "one", tmp_path / "two"
    single.mkdir(), double.mkdir()
    w.search_worker(0, 1, 0, str(single), method, settings)
    mp.spawn(w.search_worker, args=(2, w.free_port(), str(double), method, settings), nprocs=2,
             join=True)  # fmt: skip
    one = json.loads((single / "result.json").read_text())
    two = json.loads((double / "result.json").read_text())
    assert one["arch"] == two["arch"]
    for a, b in zip(one["history"], two["history"]):
        assert a == pytest.approx(b, rel=1e-8, abs=1e-10)
    arrays_one, _ = CheckpointStore(single / "ckpt").load("search")
    arrays_two, meta = CheckpointStore(double / "ckpt").load("search")
    assert meta["step"] == 2 and arrays_one.keys() == arrays_two.keys()
    assert one["info"]["expected_costs"] == pytest.approx(two["info"]["expected_costs"])
    for key in arrays_one:  # float64 runs (in float32 the stem's momentum drifted by ~1e-3)
        np.testing.assert_allclose(arrays_two[key], arrays_one[key], rtol=1e-7, atol=1e-9,
                                   err_msg=key)  # fmt: skip


@pytest.mark.slow
def test_hwnas_search_under_torchrun_writes_one_run_directory(tmp_path):
    """``torchrun --nproc_per_node 2 -m hwnas search``: rank 0 reports and writes, rank 1 helps
    in the search stage and stays silent (the smoke recipe: digits, 8 DARTS steps)."""
    root = Path(__file__).resolve().parents[2]
    work = tmp_path / "work"
    work.mkdir()
    out = work / "run"
    env = {**os.environ, "PYTHONPATH": str(root), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "hwnas", "search", "--recipe", "smoke.toml",
               "--method", "darts", "--latency-ms", "30", "--out", str(out), "--json"]  # fmt: skip
    done = subprocess.run(command, env=env, cwd=work, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    reports = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1  # rank 1 printed nothing
    report = json.loads(reports[0])
    assert report["method"] == "darts" and report["constraints"][0]["satisfied"]
    history = json.loads((out / "search.json").read_text())
    assert [row["step"] for row in history["history"]] == list(range(8))
    assert [p.name for p in work.iterdir()] == ["run"]  # no stray folder from rank 1
    assert not (out / "checkpoints").exists()
