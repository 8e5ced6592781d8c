"""Sparse coding for ISTA-NAS (Yang et al., NeurIPS 2020; METHODS.md §4); numpy, no torch.

* :func:`fista_lasso`: the LASSO ``argmin_z 1/2 ||A z - b||^2 + lam ||z||_1`` by FISTA (Beck and
  Teboulle, SIAM J. Imaging Sci. 2009) with the gradient-scheme adaptive restart (O'Donoghue and
  Candes, Found. Comput. Math. 2015) and continuation in lam, batched over independent problems
  and warm-startable, finished exactly on the support it finds once that satisfies the
  optimality conditions. The reference code calls MOSEK through CVXPY; METHODS.md §4.4 asks for
  a plain solver.
* :func:`support_terms`: what the compressed network needs of a support S: ``A_S`` and
  ``z_S^T E_{S,S}`` with ``E = A^T A - I``, so that the effective weights are
  ``w_S = b^T A_S - z_S^T E_{S,S}`` (Eq. 11); ``w_S = z_S`` exactly when ``b = A z``.
* :func:`best_choice`: one option per group maximising a summed value under several additive
  budgets (a multiple-choice knapsack), exactly, by depth-first branch and bound over the
  groups' Pareto-optimal options, with a bound on the options visited.
* The ``darts`` nodes (used by :mod:`hwnas.search.ista`): :func:`measurement_matrices`,
  :func:`edge_values` (|z| in the (28, 8) layout of the space) and :func:`select` (each node's
  support, the best that meets every budget when the top one does not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np

from hwnas.search.cell_repair import NODES, node_view
from hwnas.spaces import darts_genotype as gt
from hwnas.spaces.darts_geometry import STEPS

if TYPE_CHECKING:
    from hwnas.search.api import SearchProblem

OPS = gt.NUM_OPS - 1  # candidates per edge (no 'none')
WIDTH = (STEPS + 1) * OPS  # z of every node padded to the last node's 35 candidates


def fista_lasso(
    A: np.ndarray,
    b: np.ndarray,
    lam: float,
    z0: Optional[np.ndarray] = None,
    max_iter: int = 20_000,
    shrink: float = 0.5,
    check_every: int = 20,
) -> tuple[np.ndarray, int]:
    """Solve ``G`` independent LASSO problems by FISTA with adaptive restart.

    With lam as small as ISTA-NAS' (1e-5 against b of order 1e-3) the problem is nearly basis
    pursuit, and plain FISTA needs 10^4 steps or more on 7 x 35 U[0, 1) matrices. Two standard
    remedies make it a few hundred to a few thousand: continuation (each problem is solved
    for ``lam_k = max(lam, shrink^k max|A^T b|)``, k = 1, 2, ..., warm-starting the next, as
    in Hale, Yin and Zhang's FPC, SIAM J. Optim. 2008), and an exact finish: every
    ``check_every`` steps, on the support and signs of the iterate's top entries,
    ``z_S = (A_S^T A_S)^-1 (A_S^T b - lam_k sign_S)`` is accepted when its signs agree and
    ``|A^T (b - A z)| <= lam_k`` off S, the LASSO's optimality conditions (then it is the
    solution, up to rounding). A warm start that still certifies costs no step.

    Args:
        A: (G, m, n) measurement matrices (zero columns are allowed: their entries stay 0).
        b: (G, m) measurements.
        lam: the L1 weight (>= 0).
        z0: (G, n) warm start (None: zeros).
        max_iter: cap on FISTA steps (all stages); uncertified problems keep their iterate.
        shrink: continuation factor in (0, 1).
        check_every: FISTA steps between attempts to finish exactly.

    Returns:
        ``(z (G, n), FISTA steps run)``.
    """
    A, b = np.asarray(A, np.float64), np.asarray(b, np.float64)
    if A.ndim != 3 or b.shape != A.shape[:2] or lam < 0 or max_iter < 1 or not 0 < shrink < 1:
        raise ValueError(
            "fista_lasso: A (G, m, n), b (G, m), lam >= 0, max_iter >= 1, 0 < shrink < 1"
        )
    lipschitz = np.maximum(np.linalg.norm(A, 2, axis=(1, 2)) ** 2, 1e-300)[:, None]
    gram = np.einsum("gmn,gmk->gnk", A, A) / lipschitz[:, :, None]
    target = np.einsum("gmn,gm->gn", A, b) / lipschitz
    z = np.zeros((A.shape[0], A.shape[2])) if z0 is None else np.array(z0, np.float64)
    done = np.array([_finish(A[g], b[g], lam, z[g]) for g in range(len(z))], dtype=bool)
    top = np.abs(target * lipschitz).max(axis=1)
    level = np.where(done, lam, np.maximum(lam, shrink * top))
    y, t, it = z.copy(), np.ones(len(z)), 0
    while not done.all() and it < max_iter:
        it += 1
        step = y - (gram @ y[:, :, None])[:, :, 0] + target
        z_new = np.sign(step) * np.maximum(np.abs(step) - level[:, None] / lipschitz, 0.0)
        t_next = 0.5 * (1.0 + np.sqrt(1.0 + 4.0 * t * t))
        moved = np.where(done[:, None], 0.0, z_new - z)
        restart = np.einsum("gn,gn->g", y - z_new, moved) > 0  # momentum points uphill
        momentum = np.where(restart, 0.0, (t - 1.0) / t_next)
        z = np.where(done[:, None], z, z_new)
        y, t = z + momentum[:, None] * moved, np.where(restart, 1.0, t_next)
        if it % check_every:
            continue
        for g in np.flatnonzero(~done):
            if _finish(A[g], b[g], level[g], z[g]):
                done[g] = level[g] == lam
                low = level[g] * shrink
                level[g] = lam if low <= max(lam, 1e-9 * top[g]) else low
                y[g], t[g] = z[g], 1.0
    return z, it


def _finish(A: np.ndarray, b: np.ndarray, lam: float, z: np.ndarray) -> bool:
    """Replace ``z`` in place by the exact LASSO solution on the support and signs of one of
    its top-k entries (k = m, m - 1, ...) if that satisfies the optimality conditions; True
    when one did."""
    order = np.argsort(-np.abs(z), kind="stable")[: min(A.shape[0], np.count_nonzero(z))]
    slack = 1e-9 * max(lam, float(np.abs(A.T @ b).max(initial=0.0)))
    if len(order) == 0:
        return bool(np.abs(A.T @ b).max(initial=0.0) <= lam + slack)
    for k in range(len(order), 0, -1):
        support = order[:k]
        signs, A_S = np.sign(z[support]), A[:, support]
        try:
            z_S = np.linalg.solve(A_S.T @ A_S, A_S.T @ b - lam * signs)
        except np.linalg.LinAlgError:
            continue
        residual = np.abs(A.T @ (b - A_S @ z_S))
        residual[support] = 0.0
        if np.all(np.sign(z_S) == signs) and np.all(residual <= lam + slack):
            z[:] = 0.0
            z[support] = z_S
            return True
    return False


def support_terms(
    A: np.ndarray, z: np.ndarray, support: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(A_S (m, s), z_S^T E_{S,S} (s,))`` of one node, ``E = A^T A - I`` (Eq. 11)."""
    A_S = A[:, support]
    E_SS = A_S.T @ A_S - np.eye(len(support))
    return A_S, z[support] @ E_SS


def best_choice(
    value: np.ndarray, cost: np.ndarray, room: np.ndarray, max_visits: int = 200_000
) -> tuple[Optional[np.ndarray], bool]:
    """One option per group maximising ``sum_g value[g, o_g]`` s.t. ``sum_g cost[c, g, o_g] <=
    room[c]`` for every budget c.

    Options with value ``-inf`` are excluded. An option that another one of its group matches or
    beats in value at no higher cost in any budget is dropped first (ties keep the first). The
    search is depth-first over the groups, options by value (then total cost), pruned by the best
    value the remaining groups could add and by their cheapest costs.

    Args:
        value: (G, W) option values.
        cost: (C, G, W) option costs per budget.
        room: (C,) budgets.
        max_visits: cap on the options visited; the best answer so far is returned at the cap.

    Returns:
        ``(choice (G,) option indices or None when nothing fits, exhaustive)``.
    """
    value, cost, room = (np.asarray(a, np.float64) for a in (value, cost, room))
    groups = [_pareto(value[g], cost[:, g]) for g in range(len(value))]
    if any(len(g) == 0 for g in groups):
        return None, True
    best_rest = np.append(np.cumsum([value[g, o[0]] for g, o in enumerate(groups)][::-1])[::-1], 0)
    cheapest = np.stack([cost[:, g, o].min(axis=1) for g, o in enumerate(groups)], axis=1)
    cheap_rest = np.concatenate([np.cumsum(cheapest[:, ::-1], axis=1)[:, ::-1],
                                 np.zeros((len(room), 1))], axis=1)  # fmt: skip
    slack = room + 1e-12 * np.maximum(np.abs(room), 1.0)
    eps = 1e-12 * max(float(np.abs(best_rest[0])), 1e-300)
    best: dict = {"value": -np.inf, "choice": None}
    visits = 0
    path = np.zeros(len(groups), dtype=np.int64)

    def search(g: int, total: float, spent: np.ndarray) -> bool:  # False: cap reached
        nonlocal visits
        if g == len(groups):
            best["value"], best["choice"] = total, path.copy()
            return True
        for o in groups[g]:
            visits += 1
            if visits > max_visits:
                return False
            here = total + value[g, o]
            if here + best_rest[g + 1] <= best["value"] + eps:
                break  # options are sorted by value: none of the rest can do better
            now = spent + cost[:, g, o]
            if np.any(now + cheap_rest[:, g + 1] > slack):
                continue
            path[g] = o
            if not search(g + 1, here, now):
                return False
        return True

    exhaustive = search(0, 0.0, np.zeros(len(room)))
    return best["choice"], exhaustive


def _pareto(value: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Indices of the options no other option weakly dominates, by value then total cost."""
    order = np.lexsort((np.arange(len(value)), cost.sum(axis=0), -value))
    kept: list[int] = []
    for o in order:
        if not np.isfinite(value[o]):
            continue
        if kept and np.any(np.all(cost[:, kept] <= cost[:, [o]], axis=0)):
            continue  # a kept option (value >= this one's) costs no more in any budget
        kept.append(int(o))
    return np.array(kept, dtype=np.int64)


# -- the darts nodes (hwnas.search.ista) -------------------------------------------------------
def measurement_matrices(rng: np.random.Generator, m: int) -> np.ndarray:
    """(8, m, 35) A_j ~ U[0, 1), normal nodes then reduction nodes, zero past node j's columns."""
    A = np.zeros((NODES, m, WIDTH))
    for slot in range(NODES):
        n = (slot % STEPS + 2) * OPS
        A[slot, :, :n] = rng.random((m, n))
    return A


def edge_values(z: np.ndarray) -> np.ndarray:
    """|z| (8, 35) laid out like the space's architecture parameters (28, 8); ``none`` 0.

    Candidate ``i`` of a node is source ``i // 7``, op ``1 + i % 7``."""
    out = np.zeros((gt.NUM_EDGES, gt.NUM_OPS))
    for slot in range(NODES):
        cell, node = divmod(slot, STEPS)
        out[gt.node_rows(cell, node), 1:] = np.abs(z[slot, : (node + 2) * OPS]).reshape(-1, OPS)
    return out


def select(
    problem: SearchProblem, z: np.ndarray, hold: np.ndarray, budget_aware: bool, visits: int
) -> tuple[np.ndarray, dict]:
    """Option (of :func:`~hwnas.spaces.darts_genotype.node_options`) per node: the largest |z|
    mass, or the largest that meets every budget (:mod:`hwnas.search.ista`).

    Args:
        hold: (8,) option a node must keep (-1: free).
    """
    view = node_view()
    mass = view.scores(edge_values(z))
    held = hold >= 0
    mass[held] = np.where(np.arange(view.width) == hold[held, None], mass[held], -np.inf)
    top = np.argmax(mass, axis=1)
    facts: dict = {"rejected": False, "over": []}
    if not (budget_aware and problem.constraints):
        return top, facts
    tables = [view.table(c.cost.table) for c in problem.constraints]
    cost = np.stack([t.values for t in tables])
    room = np.array(
        [c.limit * (1 + 1e-9) - t.constant for c, t in zip(problem.constraints, tables)]
    )
    spent = cost[:, np.arange(NODES), top].sum(axis=1)
    facts["over"] = [c.metric for c, s, r in zip(problem.constraints, spent, room) if s > r]
    if not facts["over"]:
        return top, facts
    choice, exhaustive = best_choice(mass, cost, room, visits)
    facts.update(rejected=True, exhaustive=exhaustive, fits=choice is not None)
    return (top if choice is None else choice), facts
