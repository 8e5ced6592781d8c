"""Quantization-aware fine-tuning and accuracy of a :class:`~hwnas.quant.qnet.QuantNet`.

HAQ (Wang et al., CVPR 2019) scores each policy after calibration and a short fine-tune (one
epoch of SGD, lr 1e-3, momentum 0.9, weight decay 4e-5 on an ImageNet-100 subset) and fine-tunes
the final policy longer. Here the budget is a number of SGD steps on batches drawn from the train
split; the weights are BN-folded, the activation ranges train with the weights (no weight decay),
and gradients pass the quantizers straight through (STE).

Learning rate: HAQ's 1e-3 is for networks that still have BatchNorm. On the BN-folded, already
converged FBNet of ``bench/haq.py`` (Fashion-MNIST, uniform int8 with 7-bit weights, 1,000 val
images) it *lowered* accuracy: post-training 85.1 %, after 30 steps at 1e-3 83.8 %, at 1e-4
85.4 %. The default is 1e-4.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

logger = logging.getLogger(__name__)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads (None: leave as is), then restore.

    Small models oversubscribe shared CPUs badly: here a fine-tune step of a 0.25-width FBNet
    took 0.8 s with 1 thread and 0.2-5 s with 2 threads while other jobs ran.
    """
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass(frozen=True)
class FinetuneConfig:
    """SGD fine-tune budget and settings (HAQ's optimizer settings by default)."""

    steps: int = 50
    batch_size: int = 64
    lr: float = 1e-4  # HAQ's 1e-3 assumes live BN; with BN folded it hurt (see module doc)
    momentum: float = 0.9
    weight_decay: float = 4e-5
    lr_gamma: float = 1.0  # multiply the lr by this after every ``steps // 4`` steps
    seed: int = 0


def finetune(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: FinetuneConfig
) -> nn.Module:
    """Fine-tune ``net`` in place for ``config.steps`` SGD steps; returns it in eval mode.

    Args:
        net: a QuantNet (or any module mapping (N, C, H, W) -> logits).
        images: (N, C, H, W) float32 train images.
        labels: (N,) int64.
        config: budget and optimizer settings.
    """
    if config.steps <= 0:
        return net.eval()
    decay, no_decay = [], []
    for name, p in net.named_parameters():
        (no_decay if name.startswith("quantizers") or p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.lr,
        momentum=config.momentum,
    )
    sched = torch.optim.lr_scheduler.StepLR(opt, max(config.steps // 4, 1), config.lr_gamma)
    gen = torch.Generator().manual_seed(config.seed)
    net.train()
    device = next(net.parameters()).device
    n = images.shape[0]
    order = torch.randperm(n, generator=gen)
    pos = 0
    for step in range(config.steps):
        if pos + config.batch_size > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + config.batch_size]
        pos += config.batch_size
        x, y = images[idx].to(device), labels[idx].to(device)
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            logger.debug("fine-tune step %d: loss %.4f", step, loss.item())
    return net.eval()


@torch.no_grad()
def predict(net: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Predicted classes (N,) of ``net`` in eval mode."""
    net.eval()
    device = next(net.parameters()).device
    out = [
        net(images[i : i + batch_size].to(device)).argmax(dim=1).cpu()
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def accuracy(
    net: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256
) -> float:
    """Top-1 accuracy in percent."""
    if len(labels) == 0:
        raise ValueError("accuracy of an empty set")
    return 100.0 * float((predict(net, images, batch_size) == labels).float().mean())
