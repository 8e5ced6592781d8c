"""The shared trainer: deterministic batches, SGD with cosine decay, evaluation, resumable loops.

Batches are a pure function of ``(seed, step)`` (:class:`BatchStream`): epoch ``e`` visits the
training images in the order ``torch.randperm(N, generator=seed + e)``. A loop resumed from a
checkpoint at step t therefore sees exactly the batches it would have seen uninterrupted.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search.api import Hooks
from hwnas.search.checkpoint import (
    load_module_arrays,
    load_optimizer_arrays,
    module_arrays,
    optimizer_arrays,
)

log = logging.getLogger(__name__)


class BatchStream:
    """Step -> batch, without state. ``x`` (N, C, H, W) float32, ``y`` (N,) int64."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> None:
        if len(x) == 0:
            raise UserError("no training images")
        self.x, self.y, self.seed = x, y, seed
        self.batch_size = min(batch_size, len(x))
        self.per_epoch = len(x) // self.batch_size
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._epoch, self._order = epoch, torch.randperm(len(self.x), generator=gen)
        idx = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.x[idx], self.y[idx]


def cosine_lr(base_lr: float, step: int, total: int) -> float:
    """``base_lr * (1 + cos(pi * step / total)) / 2``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


@dataclass(frozen=True)
class TrainConfig:
    """How to train a standalone network.

    Attributes:
        steps: SGD steps.
        batch_size: images per step.
        lr: initial learning rate (cosine decay to 0; linear warm-up over ``warmup_steps``).
        momentum: SGD (Nesterov) momentum.
        weight_decay: L2 on weights.
        label_smoothing: cross-entropy label smoothing.
        warmup_steps: linear learning-rate warm-up.
        checkpoint_every: steps between checkpoint writes (and on Ctrl-C).
        seed: batch order.
    """

    steps: int
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    warmup_steps: int = 10
    checkpoint_every: int = 50
    seed: int = 0


def make_sgd(params: Any, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=momentum > 0
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def train_model(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: TrainConfig,
    hooks: Optional[Hooks] = None,
    name: str = "train",
) -> dict:
    """Train ``model`` in place for ``config.steps`` SGD steps; resumes from checkpoint ``name``.

    Returns:
        ``{"steps", "seconds", "final_loss", "resumed_from"}``.
    """
    hooks = hooks or Hooks()
    stream = BatchStream(x, y, config.batch_size, config.seed)
    optimizer = make_sgd(model.parameters(), config.lr, config.momentum, config.weight_decay)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    start = _resume(model, optimizer, hooks, name)
    model.train()
    t0, loss_value = time.perf_counter(), float("nan")

    def save(at: int) -> None:
        if hooks.checkpoint is not None:
            arrays = {**module_arrays("model", model), **optimizer_arrays("opt", optimizer)}
            hooks.checkpoint.save(name, arrays, {"step": at})

    for step in range(start, config.steps):
        warm = min(1.0, (step + 1) / max(config.warmup_steps, 1))
        set_lr(optimizer, warm * cosine_lr(config.lr, step, config.steps))
        xb, yb = stream.batch(step)
        loss = loss_fn(model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            raise UserError(f"training diverged at step {step} (loss {loss_value}); lower lr")
        hooks.step_done(
            step + 1,
            config.steps,
            {"loss": loss_value},
            lambda at=step + 1: save(at),
            config.checkpoint_every,
        )
    return {
        "steps": config.steps,
        "seconds": time.perf_counter() - t0,
        "final_loss": loss_value,
        "resumed_from": start,
    }


def _resume(model: nn.Module, optimizer: Any, hooks: Hooks, name: str) -> int:
    if hooks.checkpoint is None:
        return 0
    loaded = hooks.checkpoint.load(name)
    if loaded is None:
        return 0
    arrays, meta = loaded
    load_module_arrays("model", model, arrays)
    load_optimizer_arrays("opt", optimizer, arrays)
    log.info("resumed %s from step %d", name, meta["step"])
    return int(meta["step"])


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (eval mode, restored afterwards) on ``(x, y)``."""
    if len(x) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]).sum())
    model.train(was_training)
    return correct / len(x)
