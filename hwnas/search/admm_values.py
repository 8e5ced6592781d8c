"""Greedy-ADMM's knapsack values and its own derivation (FGA-NAS, Chen et al., IJCNN 2022).

**Why not ``v**2``.** The slides' beta-step keeps the entries of ``v = alpha + m / rho`` with the
largest ``v_i**2`` per unit cost (METHODS.md §1.2). That compares gates *across* blocks (channel
spaces) or layers (layer-wise spaces), but both supernets make the loss blind to a block's or
layer's common gate scale:

* ``ib-channel``: the gated middle channels feed the project conv and its BatchNorm, which
  normalises away any common factor of the block's gates (residual blocks too, while their
  largest gate is >= 1, see :func:`~hwnas.spaces.ib_channel.branch_scale`);
* ``fbnet``: every layer mixes its ops with ``|alpha| / sum |alpha|``.

So ``sum_{i in b} alpha_i dL/dalpha_i = 0`` for every block b (measured: 1e-6 of
``sum |alpha_i dL/dalpha_i|`` on ``ib-channel``, 1e-8 on ``fbnet``; halving a non-residual
block's or any fbnet layer's gates changes the loss by < 1e-6). A block's gate scale is set by
the initial value and the ADMM penalty, never by the loss, and ``v**2`` ranks blocks by it.

**The values used instead [R]** are the loss's own preferences, invariant to those scales:

* channel spaces: the Fisher (OBD / Taylor) saliency ``F_i v_i**2``, with ``F_i`` the running
  mean of ``(dL/dalpha_i)**2`` that the RMS-normalised alpha step keeps anyway. ``F_i alpha_i**2``
  is the second-order estimate of the loss increase when channel i is removed (LeCun et al.,
  "Optimal Brain Damage", 1990; Molchanov et al., "Importance Estimation for Neural Network
  Pruning", CVPR 2019), and since ``dL/dalpha`` scales as ``1/s`` when a block's gates scale by
  s, it does not change with the scale the loss cannot see. It is the beta-step's projection
  measured in the loss's (Fisher) metric instead of the Euclidean one.
* layer-wise spaces: ``(v_lk / sum_j |alpha_lj|)**2``, the values in the mixing proportions the
  loss sees. (The Fisher saliency is no use here: a layer that has settled on one op has zero
  gradient along it, so a settled layer would be worth nothing.)

Without loss statistics (``fisher=None``: the null-alpha control) channel values are ``v**2``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from hwnas.costs.models import Constraint
from hwnas.costs.tables import ChoiceTable, CostTable
from hwnas.search.knapsack import greedy_knapsack, greedy_mckp

if TYPE_CHECKING:
    import torch

_TINY = 1e-12


def mixing_weights(alpha: torch.Tensor, space: Any) -> torch.Tensor:
    """What the supernet gets for gates ``alpha``: ``|alpha|`` on layer-wise spaces, whose
    supernet normalises each layer by its L1 norm (only the gates' proportions matter, and a
    support of one op is exactly that op whatever its sign, as the sign-blind knapsack values
    ``v**2`` assume); ``alpha`` itself on channel spaces (a channel's sign is learnable)."""
    return alpha.abs() if space.relaxation == "choice" else alpha


def knapsack_values(
    v: np.ndarray, alpha: np.ndarray, fisher: Optional[np.ndarray], relaxation: str
) -> np.ndarray:
    """Knapsack values (shape of ``v``) of the entries of ``v`` (see the module docstring).

    Args:
        v: ``alpha + m_c / rho`` for one constraint (or ``alpha`` itself).
        alpha: the gates, (N,) or (L, K).
        fisher: running mean of the squared loss gradient wrt alpha (shape of alpha), or None.
        relaxation: ``"channel"`` or ``"choice"``.
    """
    if relaxation == "choice":
        scale = np.maximum(np.abs(alpha).sum(axis=1, keepdims=True), _TINY)
        return (v / scale) ** 2
    if fisher is None:
        return v**2
    return fisher / max(float(np.mean(fisher)), _TINY) * v**2


def knapsack_step(values: np.ndarray, table: CostTable, limit: float) -> np.ndarray:
    """theta (0/1, shape of ``values``) of one constraint's greedy knapsack."""
    capacity = limit - table.constant
    if isinstance(table, ChoiceTable):
        choice = greedy_mckp(values, table.values, capacity)
        theta = np.zeros_like(values)
        theta[np.arange(len(choice)), choice] = 1.0
        return theta
    keep = greedy_knapsack(
        values,
        table.item_cost,
        capacity,
        group=table.item_block,
        setup=table.block_cost,
        required=table.required,
    )
    return keep.astype(values.dtype)


def own_channel_keep(values: Sequence[np.ndarray], constraints: Sequence[Constraint]) -> np.ndarray:
    """Channels kept by every constraint's beta-step (METHODS.md §1.4), (N,) bool.

    Each support meets its own budget and costs only fall when channels are dropped, so the
    intersection meets every budget. A block without a residual must keep a channel: its guard
    channel is made the same for every constraint (the one of highest total value), so the
    intersection keeps it.
    """
    table = constraints[0].cost.table
    values = [np.array(v, dtype=np.float64) for v in values]
    total = sum(values)
    for b in np.flatnonzero(table.required):
        members = np.flatnonzero(table.item_block == b)
        guard = members[np.argmax(total[members])]
        for v in values:
            v[guard] = 2.0 * np.max(v[members]) + 1.0
    keep = np.ones(table.num_items, dtype=bool)
    for v, constraint in zip(values, constraints):
        keep &= knapsack_step(v, constraint.cost.table, constraint.limit) > 0
    return keep


def own_choice(values: Sequence[np.ndarray], constraints: Sequence[Constraint]) -> np.ndarray:
    """One op per layer (L,), feasible for every constraint: a final joint beta-step.

    One constraint: its beta-step on ``values[0]``. Several: one multiple-choice knapsack on the
    mean of their values, each option weighing ``max_c (h_c - min h_c) / (r_c - sum_l min h_c)``
    (cost above the layer's cheapest op, as a share of constraint c's slack) with capacity 1; a
    choice within it is within every budget.
    """
    if len(constraints) == 1:
        (c,) = constraints
        return np.argmax(knapsack_step(values[0], c.cost.table, c.limit), axis=1)
    shares = []
    for c in constraints:
        table = c.cost.table
        extra = table.values - table.values.min(axis=1, keepdims=True)
        slack = c.limit - table.minimum()
        shares.append(np.where(extra > 0, extra / max(slack, _TINY), 0.0))
    return greedy_mckp(np.mean(values, axis=0), np.max(shares, axis=0), 1.0)


def own_start(problem: Any, values: Sequence[np.ndarray], alpha_values: np.ndarray) -> np.ndarray:
    """Own derivation: channels kept by every beta_c, or one op per layer by a joint beta-step.

    Args:
        problem: the search problem.
        values: knapsack values of each constraint's ``v = alpha + m_c / rho``.
        alpha_values: knapsack values of alpha (used when there is no constraint).

    Returns:
        a keep mask (N,) on channel spaces, op indices (L,) on layer-wise spaces.
    """
    choice = problem.space.relaxation == "choice"
    if not problem.constraints:
        return np.argmax(alpha_values, axis=1) if choice else alpha_values > 0
    if choice:
        return own_choice(values, problem.constraints)
    return own_channel_keep(values, problem.constraints)


def arch_from_start(problem: Any, start: np.ndarray) -> object:
    """The architecture of a keep mask (channel spaces) or op indices (layer-wise spaces)."""
    space = problem.space
    if space.relaxation == "choice":
        return space.arch_from_vector(start)
    return space.arch_from_vector(_table(problem).counts_from_keep(start))


def goal_arch(problem: Any, alpha: np.ndarray, threshold: float) -> object:
    """The architecture alpha currently encodes: the op of largest ``alpha**2`` per layer, or
    the channels with ``|alpha_i| >= threshold`` (plus the best one of each required block)."""
    space = problem.space
    if space.relaxation == "choice":
        return space.arch_from_vector(np.argmax(alpha**2, axis=1))
    table = _table(problem)
    keep = np.abs(alpha) >= threshold
    for b in np.flatnonzero(table.required):  # the guard: best channel of a required block
        members = np.flatnonzero(table.item_block == b)
        keep[members[np.argmax(np.abs(alpha[members]))]] = True
    return space.arch_from_vector(table.counts_from_keep(keep))


def _table(problem: Any) -> Any:
    """A channel table of the problem (the item layout is the same for every metric)."""
    if problem.constraints:
        return problem.constraints[0].cost.table
    return problem.space.cost_table("flops")
