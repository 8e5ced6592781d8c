"""Benchmark: dataset load time and per-epoch training cost of a tiny CNN on Fashion-MNIST.

Measures, on this machine: ``load_dataset`` wall time for the shipped 10k subset (and the full
Debian set when installed), then trains a tiny CNN (3 conv-BN-ReLU layers, 16/32/64 channels, GAP,
FC; SGD lr 0.02 momentum 0.9, batch 128) on the shipped subset (9,000 train images at
3x32x32) for a few epochs, reporting seconds per epoch and test accuracy on its 2,000 test images.

Run: ``python bench/data_epoch.py [--epochs 3] [--threads 2] [--lr 0.02]``; writes
``bench/results/data_epoch.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import write_result
from hwnas.data import DataConfig, load_dataset, make_loaders
from hwnas.data.sources import DEBIAN_FASHION_MNIST, shipped_dir


def tiny_cnn(channels: int, classes: int) -> nn.Module:
    layers: list = []
    width = channels
    for out in (16, 32, 64):
        layers += [nn.Conv2d(width, out, 3, stride=2 if out > 16 else 1, padding=1, bias=False)]
        layers += [nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        width = out
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, classes))


def _timed_load(config: DataConfig) -> tuple:
    start = time.perf_counter()
    splits = load_dataset(config)
    return splits, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=0.02)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    figures: dict = {}
    splits, figures["load_shipped_s"] = _timed_load(DataConfig(root=shipped_dir()))
    if (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file():
        _, figures["load_debian_full_s"] = _timed_load(DataConfig())
    loaders = make_loaders(splits, batch_size=128, seed=0)
    model = tiny_cnn(splits.input_shape[0], splits.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    epoch_s = []
    for _ in range(args.epochs):
        model.train()
        start = time.perf_counter()
        for images, labels in loaders.train:
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(images), labels).backward()
            optimizer.step()
        epoch_s.append(time.perf_counter() - start)
    model.eval()
    with torch.no_grad():
        correct = sum((model(x).argmax(1) == y).sum().item() for x, y in loaders.test)
    figures.update(
        train_images=len(splits.train),
        input_shape=list(splits.input_shape),
        params=sum(p.numel() for p in model.parameters()),
        epoch_s=[round(s, 2) for s in epoch_s],
        median_epoch_s=round(statistics.median(epoch_s), 2),
        test_accuracy=round(correct / len(splits.test), 4),
        epochs=args.epochs,
    )
    figures["torch_threads"] = torch.get_num_threads()
    path = write_result("data_epoch", figures)
    print(path)
    for key, value in figures.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
