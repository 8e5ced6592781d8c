"""Data-parallel search under ``torchrun --nproc_per_node N``: the same run, N processes.

``torchrun`` starts N copies of ``hwnas search`` with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` set; :func:`init_from_env` joins them into one process group
(gloo on CPU, NCCL when CUDA is available, one GPU per local rank). Without those variables it
returns a single-process context whose operations are no-ops, so the methods run unchanged.

Semantics: a run on N processes computes what one process computes with the same global batch.

* Every rank draws the same global batch (``BatchStream`` is a function of seed and step) and
  keeps its ``1/N`` slice (:meth:`DistContext.shard`); the batch size must divide by N.
* Gradients of the weights *and* of the architecture parameters are averaged across ranks after
  every backward pass (:meth:`DistContext.all_reduce_mean_`): the mean of per-shard mean losses
  is the global mean loss. Everything that does not depend on the data (penalties, Lagrange
  multipliers, cost models) is computed identically on every rank.
* BatchNorm normalises with the statistics of the *global* batch (:class:`SyncBatchNorm2d`, a
  differentiable all-gather; PyTorch's own ``SyncBatchNorm`` refuses CPU tensors), which is what
  makes the gradients equal to the single-process ones, not just close. Its cost is one
  collective per BN per pass (two with the backward): on CPU it is the price of exactness.

The gradient averaging is explicit rather than ``DistributedDataParallel``: a DARTS step runs
several backward passes per forward (``autograd.grad`` for alpha, the unrolled virtual step, the
two finite-difference passes) that DDP's reducer does not see. Only rank 0 writes anything:
followers (:func:`hwnas.runs.search.follow_search`) run the data-parallel search stage with
read-only checkpoints and leave; rank 0 then trains, exports and reports alone.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search.checkpoint import CheckpointStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the group (a single process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = "none"
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def shard(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of a global batch, on :attr:`device`."""
        if self.active:
            if len(x) % self.world:
                raise UserError(
                    f"batch of {len(x)} images does not split over {self.world} processes; "
                    f"use a batch size divisible by {self.world}"
                )
            n = len(x) // self.world
            x, y = x[self.rank * n : (self.rank + 1) * n], y[self.rank * n : (self.rank + 1) * n]
        return x.to(self.device), y.to(self.device)

    def all_reduce_mean_(self, tensors: Iterable[Optional[torch.Tensor]]) -> None:
        """Average ``tensors`` across ranks, in place (one flat all-reduce; None entries skipped)."""
        if not self.active:
            return
        items = [t for t in tensors if t is not None]
        if not items:
            return
        flat = torch.cat([t.reshape(-1) for t in items])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for t in items:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()

    def mean(self, values: Mapping[str, float]) -> dict[str, float]:
        """Per-key mean over ranks of local scalars (for logging losses)."""
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
        if self.active:
            t = t.to(self.device)
            torch.distributed.all_reduce(t)
            t = t.cpu() / self.world
        return dict(zip(keys, t.tolist()))

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()

    def prepare(self, net: nn.Module) -> nn.Module:
        """Move ``net`` to :attr:`device`; with several ranks, make its BNs global-batch BNs."""
        if self.active:
            sync_batchnorm_(net)
        return net.to(self.device)


_CURRENT = [DistContext()]


def current() -> DistContext:
    """The context :func:`init_from_env` set up (single process until then)."""
    return _CURRENT[0]


def init_from_env(env: Optional[Mapping[str, str]] = None) -> DistContext:
    """Join the process group ``torchrun`` described in the environment (idempotent).

    Returns the single-process context when ``WORLD_SIZE`` is unset or 1.
    """
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1"))
    if world <= 1 or current().active:
        return current()
    if "RANK" not in env or "MASTER_ADDR" not in env:
        raise UserError("WORLD_SIZE > 1 needs RANK, MASTER_ADDR and MASTER_PORT (use torchrun)")
    rank = int(env["RANK"])
    local_rank = int(env.get("LOCAL_RANK", rank))
    cuda = torch.cuda.is_available()
    backend = "nccl" if cuda else "gloo"
    device = f"cuda:{local_rank}" if cuda else "cpu"
    if cuda:
        torch.cuda.set_device(local_rank)
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(
            backend, rank=rank, world_size=world, timeout=datetime.timedelta(minutes=30)
        )
    _CURRENT[0] = DistContext(rank, world, local_rank, backend, device)
    log.info("rank %d of %d joined (%s on %s)", rank, world, backend, device)
    return _CURRENT[0]


def shutdown() -> None:
    """Leave the process group (back to a single-process context)."""
    if current().active and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _CURRENT[0] = DistContext()


class _AllGather(torch.autograd.Function):
    """Differentiable all-gather: (...) -> (world, ...). Every rank's loss may depend on every
    slice, so the gradient of slice r is the sum over ranks of their gradients for it."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(tensor) for _ in range(current().world)]
        torch.distributed.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = grad.contiguous().clone()
        torch.distributed.all_reduce(total)
        return total[current().rank]


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the global batch over all ranks.

    One differentiable all-gather per call: every rank's per-channel mean and sum of squared
    deviations, combined as in Chan et al.'s parallel variance (no ``E[x^2] - E[x]^2``
    cancellation); ranks hold equal shards. Running statistics (if tracked) are updated with the
    global mean and unbiased variance. Outside training, or in a single process, it is a plain
    ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and current().active):
            return super().forward(x)
        n_local = x.numel() // x.shape[1]
        local_mean = x.mean((0, 2, 3))
        local_m2 = ((x - local_mean[None, :, None, None]) ** 2).sum((0, 2, 3))
        stats = _AllGather.apply(torch.stack([local_mean, local_m2]))  # (world, 2, C)
        mean = stats[:, 0].mean(0)
        m2 = stats[:, 1].sum(0) + n_local * ((stats[:, 0] - mean) ** 2).sum(0)
        count = n_local * current().world
        var = m2 / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean.detach())
                self.running_var.mul_(1 - m).add_(m * var.detach() * count / max(count - 1, 1))
                self.num_batches_tracked += 1
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def sync_batchnorm_(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm2d`` inside ``module`` by a :class:`SyncBatchNorm2d` (same
    parameters and buffers, same state-dict keys)."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            sync = SyncBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            )  # fmt: skip
            sync.load_state_dict(child.state_dict())
            sync.train(child.training)
            setattr(module, name, sync)
        else:
            sync_batchnorm_(child)
    return module


class ReadOnlyCheckpointStore(CheckpointStore):
    """Followers read rank 0's checkpoints (to resume in step) but never write."""

    def save(self, name: str, arrays: dict, meta: dict) -> None:
        return None

    def remove(self, name: str) -> None:
        return None
