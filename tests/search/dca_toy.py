"""METHODS.md §2.4's Lagrangian toy, with :class:`hwnas.search.lagrangian.Lagrangian` doing the duals.

14 edges x 7 ops priced like DARTS (pools and skip free, sep 5x5 the dearest); the objective
rewards op "size" with diminishing returns per edge, ``sum_e log(1 + sum_o p_eo size_o)``, so the
constrained optimum is interior and primal-dual settles on the bound. ``spread`` scales cost and
size per edge (edges differ, as cells at different depths do), which makes the argmax-derived
cost a fine-grained function of the bound.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from hwnas.costs.models import CostModel
from hwnas.costs.tables import ChoiceTable
from hwnas.search.lagrangian import Lagrangian

COST = np.array([0.0, 0.0, 0.0, 1.0, 2.0, 0.5, 1.0])  # max/avg pool, skip, sep3, sep5, dil3, dil5
SIZE = np.array([0.1, 0.1, 0.2, 1.0, 2.0, 0.5, 1.0])


def toy_tables(spread: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = 1.0 + spread * rng.uniform(-1, 1, size=(14, 1))
    return COST * scale, SIZE * (1.0 + spread * rng.uniform(-1, 1, size=(14, 1)))


def lagrangian_toy(
    bound: float,
    steps: int = 300,
    spread: float = 0.0,
    lr: float = 0.01,
    scale: float = 1.0,
    equality: bool = True,
    **dual,
) -> dict:
    """Primal (Adam on alpha) / dual (:class:`Lagrangian`, ``dual`` its options) on the toy,
    the objective times ``scale``; returns the trajectories and the history rows."""
    cost, size = toy_tables(spread)
    model = CostModel("flops", ChoiceTable(cost, 0.0), None, "toy")  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)
    alpha = torch.nn.Parameter(1e-3 * torch.randn(14, 7, generator=g, dtype=torch.float64))
    size_t = torch.as_tensor(size)
    optimizer = torch.optim.Adam([alpha], lr=lr, betas=(0.5, 0.999))
    options = {"lr": 1.0, "init": 0.0, **dual}
    lagrangian = Lagrangian({"flops": model}, {"flops": bound}, equality=equality, **options)
    rows = []
    for _ in range(steps):
        p = torch.softmax(alpha, -1)
        loss = -scale * torch.log1p((p * size_t).sum(1)).sum() + lagrangian.loss(p)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        row: dict = {"step": len(rows)}
        lagrangian.observe(torch.softmax(alpha, -1).detach(), row)
        rows.append(row)
    probs = torch.softmax(alpha, -1).detach().numpy()
    return {
        "violation": np.array([r["violation_flops"] for r in rows]),
        "lambda": np.array([r["lambda_flops"] for r in rows]),
        "expected": float(model.expected(torch.as_tensor(probs))),
        "derived": model.table.discrete(probs.argmax(1)),
        "history": rows,
    }


def derived_cost_at(
    bound: float,
    steps: int = 3000,
    spread: float = 0.5,
    lr: float = 0.01,
    seed: Optional[int] = None,
) -> float:
    """The toy in numpy (closed-form softmax gradients; the same Adam and dual update as
    :class:`Lagrangian`'s defaults) -> the cost of the argmax architecture it derives: one
    lookup-graph measurement, in milliseconds of CPU. ``seed`` (None: none) perturbs the
    objective by up to 20 % per op and draws the initial alpha, as a run seed's data split and
    initialisation would."""
    cost, size = toy_tables(spread)
    rng = np.random.default_rng(seed if seed is not None else 0)
    alpha = 1e-3 * rng.standard_normal(cost.shape)
    if seed is not None:
        size = size * (1.0 + 0.2 * rng.uniform(-1, 1, size=size.shape))
    m, v, lam, last = np.zeros_like(alpha), np.zeros_like(alpha), 0.0, None
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
        x = ((p * cost).sum() - bound) / bound
        lam += max(abs(lam), 1.0) * (x + 20.0 * (x - (x if last is None else last)))
        last = x
    return float(cost[np.arange(len(cost)), p.argmax(1)].sum())
