"""Checkpoints: numpy arrays + versioned JSON, no pickle; torch state round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.errors import UserError
from hwnas.search.checkpoint import (
    CheckpointStore,
    load_module_arrays,
    load_optimizer_arrays,
    module_arrays,
    optimizer_arrays,
)


def test_round_trip_and_corruption(tmp_path):
    store = CheckpointStore(tmp_path)
    assert store.load("x") is None
    store.save("x", {"a": np.arange(4.0), "b": np.ones((2, 2), dtype=np.int64)}, {"step": 7})
    arrays, meta = store.load("x")
    assert meta == {"step": 7} and arrays["a"].tolist() == [0, 1, 2, 3]
    assert arrays["b"].dtype == np.int64
    # the arrays file changed under the JSON: refused
    np.savez(tmp_path / "x.npz", a=np.zeros(1))
    with pytest.raises(UserError, match="incomplete"):
        store.load("x")
    store.remove("x")
    assert store.load("x") is None


def test_torch_state_round_trip(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    store = CheckpointStore(tmp_path)
    store.save("m", {**module_arrays("net", net), **optimizer_arrays("opt", opt)}, {"step": 1})
    twin = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9)
    arrays, _ = store.load("m")
    load_module_arrays("net", twin, arrays)
    load_optimizer_arrays("opt", twin_opt, arrays)
    for a, b in zip(net.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)
    buffers = [s["momentum_buffer"] for s in twin_opt.state_dict()["state"].values()]
    assert len(buffers) == 4 and all(torch.isfinite(b).all() for b in buffers)
