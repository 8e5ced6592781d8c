"""METHODS.md §2.4's Lagrangian toy, with :class:`hwnas.search.dca.Lagrangian` doing the duals.

14 edges x 7 ops priced like DARTS (pools and skip free, sep 5x5 the dearest); the objective
rewards op "size" with diminishing returns per edge, ``sum_e log(1 + sum_o p_eo size_o)``, so the
constrained optimum is interior and primal-dual settles on the bound. ``spread`` scales cost and
size per edge (edges differ, as cells at different depths do), which makes the argmax-derived
cost a fine-grained function of the bound.
"""

from __future__ import annotations

import numpy as np
import torch

from hwnas.costs.models import CostModel
from hwnas.costs.tables import ChoiceTable
from hwnas.search.dca import Lagrangian

COST = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 0.5, 1.0])  # max/avg pool, skip, sep3, sep5, dil3, dil5
SIZE = np.array([0.1, 0.1, 0.2, 1.0, 2.0, 0.5, 1.0])


def toy_tables(spread: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = 1.0 + spread * rng.uniform(-1, 1, size=(14, 1))
    return COST * scale, SIZE * (1.0 + spread * rng.uniform(-1, 1, size=(14, 1)))


def lagrangian_toy(
    bound: float, steps: int = 1000, spread: float = 0.0, lr: float = 0.01, lam_lr: float = 0.05
) -> dict:
    """Primal (Adam on alpha) / dual (projected ascent) on the toy; returns the trajectories."""
    cost, size = toy_tables(spread)
    model = CostModel("flops", ChoiceTable(cost, 0.0), None, "toy")  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    alpha = torch.nn.Parameter(1e-3 * torch.randn(14, 7, generator=g, dtype=torch.float64))
    size_t = torch.as_tensor(size)
    optimizer = torch.optim.Adam([alpha], lr=lr, betas=(0.5, 0.999))
    lagrangian = Lagrangian({"flops": model}, {"flops": bound}, lam_lr, 0.0)
    rows = []
    for _ in range(steps):
        p = torch.softmax(alpha, -1)
        loss = -torch.log1p((p * size_t).sum(1)).sum() + lagrangian.loss(p)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        row: dict = {}
        lagrangian.observe(torch.softmax(alpha, -1).detach(), row)
        rows.append(row)
    probs = torch.softmax(alpha, -1).detach().numpy()
    return {
        "violation": np.array([r["violation_flops"] for r in rows]),
        "lambda": np.array([r["lambda_flops"] for r in rows]),
        "expected": float(model.expected(torch.as_tensor(probs))),
        "derived": model.table.discrete(probs.argmax(1)),
    }


def derived_cost_at(bound: float, steps: int = 3000, spread: float = 0.5, lr: float = 0.01,
                    lam_lr: float = 0.05) -> float:  # fmt: skip
    """The toy in numpy (closed-form softmax gradients; same Adam and dual ascent) -> the cost of
    the argmax architecture it derives: one lookup-graph measurement, in milliseconds of CPU."""
    cost, size = toy_tables(spread)
    alpha = 1e-3 * np.random.default_rng(0).standard_normal(cost.shape)
    m, v, lam = np.zeros_like(alpha), np.zeros_like(alpha), 0.0
    for t in range(1, steps + 1):
        p = np.exp(alpha - alpha.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        g = -size / (1.0 + (p * size).sum(1, keepdims=True)) + lam * cost / bound
        grad = p * (g - (p * g).sum(1, keepdims=True))
        m = 0.5 * m + 0.5 * grad
        v = 0.999 * v + 0.001 * grad**2
        alpha -= lr * (m / (1 - 0.5**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        p = np.exp(alpha - alpha.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        lam = max(0.0, lam + lam_lr * ((p * cost).sum() - bound) / bound)
    return float(cost[np.arange(len(cost)), p.argmax(1)].sum())
