"""Worker functions for the data-parallel tests (importable by spawned processes)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import numpy as np
import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join(rank: int, world: int, port: int):
    """Environment as torchrun sets it, then :func:`hwnas.search.distributed.init_from_env`."""
    from hwnas.search.distributed import init_from_env

    torch.set_num_threads(1)
    env = {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    os.environ.update(env)
    return init_from_env(env)


def bn_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Global-batch BN on this rank's shard: outputs, gradients, running statistics."""
    from hwnas.search.distributed import current, shutdown, sync_batchnorm_

    join(rank, world, port)
    x, target = bn_data()
    bn = sync_batchnorm_(torch.nn.Sequential(bn_module()))
    xs, ts = current().shard(x, target)
    xs.requires_grad_(True)
    out = bn(xs)
    ((out - ts) ** 2).mean().backward()
    grads = [p.grad for p in bn.parameters()]
    current().all_reduce_mean_(grads)
    if rank == 0:
        np.savez(Path(out_dir) / "bn.npz", out=out.detach().numpy(), dx=xs.grad.numpy(),
                 dw=grads[0].numpy(), db=grads[1].numpy(),
                 mean=bn[0].running_mean.numpy(), var=bn[0].running_var.numpy())  # fmt: skip
    shutdown()


def bn_data():
    g = torch.Generator().manual_seed(0)
    return 3 + 2 * torch.randn(8, 4, 5, 5, generator=g), torch.randn(8, 4, 5, 5, generator=g)


def bn_module() -> torch.nn.BatchNorm2d:
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


def tiny_problem():
    from hwnas.costs.models import make_constraints, make_cost_models
    from hwnas.data import DataConfig, load_dataset
    from hwnas.search.api import SearchBudget, SearchData, SearchProblem
    from hwnas.spaces.base import SpaceConfig
    from hwnas.spaces.darts import DartsSpace

    splits = load_dataset(DataConfig("digits", resolution=8, seed=0))
    dtype = torch.get_default_dtype()
    (tx, ty), (vx, vy) = splits.train.tensors, splits.val.tensors
    data = SearchData(tx.to(dtype), ty, vx.to(dtype), vy)
    space = DartsSpace(SpaceConfig(32, 10, 0.25), cells=3)
    costs = make_cost_models(space)
    low, high = costs["params"].bounds()
    constraints = make_constraints(costs, {"params": low + 0.3 * (high - low)})
    budget = SearchBudget(steps=2, warmup_steps=1, batch_size=8, eval_every=0, eval_images=8,
                          checkpoint_every=2)  # fmt: skip
    return SearchProblem(space, data, constraints, budget, costs)


def search_worker(rank: int, world: int, port: int, out: str, method: str, settings: dict) -> None:
    """One tiny search; rank 0 leaves ``result.json`` and the final checkpoint in ``out``."""
    from hwnas.search.api import Hooks, get_method, method_config
    from hwnas.search.checkpoint import CheckpointStore
    from hwnas.search.distributed import ReadOnlyCheckpointStore, shutdown

    if world > 1:
        join(rank, world, port)
    else:
        torch.set_num_threads(1)
    torch.set_default_dtype(torch.float64)  # float32 sums in another order drift by ~1e-3
    spec = get_method(method)
    store_cls = CheckpointStore if rank == 0 else ReadOnlyCheckpointStore
    hooks = Hooks(checkpoint=store_cls(Path(out) / "ckpt"))
    result = spec.run(tiny_problem(), method_config(spec, settings), hooks)
    if rank == 0:
        document = {"arch": list(result.arch), "history": list(result.history),
                    "info": result.info}  # fmt: skip
        (Path(out) / "result.json").write_text(json.dumps(document), encoding="utf-8")
    torch.set_default_dtype(torch.float32)
    if world > 1:
        shutdown()
