"""Additive cost tables: the two relaxations every hwnas cost model is built on.

A cost of a discrete architecture is a sum of per-choice numbers, so one table per (space, metric)
gives both faces a cost model needs (STYLE.md, principle 4):

* :class:`ChoiceTable` (layer-wise spaces, e.g. FBNet): one op per layer,
  ``cost(a) = constant + sum_l values[l, a_l]``. Its expectation under per-layer probabilities
  ``p`` (L, K) is ``constant + sum_lk p_lk * values_lk`` (FBNet, Wu et al. CVPR 2019; ProxylessNAS,
  Cai et al. ICLR 2019). With ``p = softmax(alpha)`` the gradient is the closed form
  ``dE/dalpha_lk = p_lk * (values_lk - sum_k' p_lk' values_lk')`` (METHODS.md §10.3).
* :class:`ChannelTable` (channel-wise spaces, FGA-NAS, Chen et al. IJCNN 2022): per block ``b``
  and kernel group ``k``, ``cost = unit_cost[b, k]`` per middle channel, plus ``block_cost[b]``
  once if the block has any channel (or always, when the block is ``required``), plus a constant.
  The search decides channels in *items* of ``granularity`` real channels each; the expectation
  under independent keep probabilities ``q`` (N,) of the items is
  ``constant + sum_i q_i * item_cost_i + sum_b block_cost_b * P(block b non-empty)`` with
  ``P = 1`` for required blocks and ``1 - prod_{i in b} (1 - q_i)`` otherwise. 0/1 probabilities
  give exactly the discrete cost.

Units are those of the metric (ms, MACs, parameters). Numpy only; torch is imported by
``expected`` on use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class ChoiceTable:
    """``cost(a) = constant + sum_l values[l, a_l]`` for ``a`` one option index per layer.

    Attributes:
        values: (L, K) float64, the cost of option k at layer l.
        constant: the part every architecture pays (stem, head, classifier).
    """

    values: np.ndarray
    constant: float

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64)
        if values.ndim != 2 or not np.all(np.isfinite(values)):
            raise ValueError("ChoiceTable values must be a finite (L, K) array")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "constant", float(self.constant))

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def discrete(self, ops: Sequence[int]) -> float:
        """Exact cost of the architecture with option ``ops[l]`` at layer ``l``."""
        idx = np.asarray(ops, dtype=np.int64)
        if idx.shape != (self.values.shape[0],):
            raise ValueError(f"expected {self.values.shape[0]} op indices, got {idx.shape}")
        return self.constant + float(self.values[np.arange(len(idx)), idx].sum())

    def expected(self, probs: torch.Tensor) -> torch.Tensor:
        """Differentiable expected cost under per-layer probabilities ``probs`` (L, K) -> scalar."""
        import torch

        table = torch.as_tensor(self.values, dtype=probs.dtype, device=probs.device)
        return (probs * table).sum() + self.constant

    def minimum(self) -> float:
        return self.constant + float(self.values.min(axis=1).sum())

    def maximum(self) -> float:
        return self.constant + float(self.values.max(axis=1).sum())


@dataclass(frozen=True, eq=False)
class ChannelTable:
    """Per-channel costs with a per-block setup cost (see the module docstring).

    Attributes:
        unit_cost: (B, K) cost of one real middle channel of kernel group k in block b.
        max_units: (B, K) int, the most channels block b can have in group k.
        block_cost: (B,) cost paid once when block b has any channel (intercept).
        required: (B,) bool, blocks that must keep at least one channel (no identity skip).
        constant: cost every architecture pays.
        granularity: real channels per search item; must divide every ``max_units``.
    """

    unit_cost: np.ndarray
    max_units: np.ndarray
    block_cost: np.ndarray
    required: np.ndarray
    constant: float
    granularity: int = 1

    def __post_init__(self) -> None:
        unit = np.asarray(self.unit_cost, dtype=np.float64)
        units = np.asarray(self.max_units, dtype=np.int64)
        block = np.asarray(self.block_cost, dtype=np.float64)
        required = np.asarray(self.required, dtype=bool)
        if unit.ndim != 2 or unit.shape != units.shape or block.shape != (unit.shape[0],):
            raise ValueError("ChannelTable: unit_cost/max_units (B, K) and block_cost (B,) needed")
        if required.shape != block.shape:
            raise ValueError("ChannelTable: required must have shape (B,)")
        if not (np.all(np.isfinite(unit)) and np.all(np.isfinite(block))):
            raise ValueError("ChannelTable costs must be finite")
        if self.granularity < 1 or np.any(units % self.granularity):
            raise ValueError(f"granularity {self.granularity} must divide every max_units")
        for name, value in (("unit_cost", unit), ("max_units", units), ("block_cost", block)):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "required", required)
        object.__setattr__(self, "constant", float(self.constant))
        counts = (units // self.granularity).ravel()
        flat = np.repeat(np.arange(counts.size), counts)
        object.__setattr__(self, "_item_group", flat)
        blocks = flat // unit.shape[1]
        per_block = np.bincount(blocks, minlength=unit.shape[0])
        index = np.full((unit.shape[0], max(1, int(per_block.max(initial=0)))), flat.size)
        for b in range(unit.shape[0]):
            members = np.flatnonzero(blocks == b)
            index[b, : members.size] = members
        object.__setattr__(self, "_block_items", index)

    # -- item layout (blocks in order, kernel groups in order, items within a group) -------------
    @property
    def num_items(self) -> int:
        return int(self._item_group.size)  # type: ignore[attr-defined]

    @property
    def item_block(self) -> np.ndarray:
        """(N,) block index of every item."""
        return self._item_group // self.unit_cost.shape[1]  # type: ignore[attr-defined]

    @property
    def item_kernel(self) -> np.ndarray:
        """(N,) kernel-group index of every item."""
        return self._item_group % self.unit_cost.shape[1]  # type: ignore[attr-defined]

    @property
    def item_cost(self) -> np.ndarray:
        """(N,) cost of one item (``granularity`` real channels)."""
        return self.granularity * self.unit_cost.ravel()[self._item_group]  # type: ignore[attr-defined]

    def counts_from_keep(self, keep: np.ndarray) -> np.ndarray:
        """(B, K) real channel counts of the items marked in ``keep`` (N,) bool."""
        keep = np.asarray(keep, dtype=bool)
        if keep.shape != (self.num_items,):
            raise ValueError(f"keep mask has shape {keep.shape}, expected ({self.num_items},)")
        flat = np.bincount(self._item_group[keep], minlength=self.unit_cost.size)  # type: ignore[attr-defined]
        return self.granularity * flat.reshape(self.unit_cost.shape)

    def keep_from_counts(self, counts: np.ndarray) -> np.ndarray:
        """(N,) mask keeping the first ``counts[b, k] / granularity`` items of every group."""
        counts = np.asarray(counts, dtype=np.int64)
        if np.any(counts % self.granularity):
            raise ValueError(f"channel counts must be multiples of {self.granularity}")
        per_group = (counts // self.granularity).ravel()
        group = self._item_group  # type: ignore[attr-defined]
        starts = np.concatenate([[0], np.cumsum((self.max_units // self.granularity).ravel())])
        rank = np.arange(group.size) - starts[group]
        return rank < per_group[group]

    # -- the two faces -------------------------------------------------------------------------
    def discrete(self, counts: np.ndarray) -> float:
        """Exact cost of the architecture with ``counts[b, k]`` real middle channels."""
        counts = np.asarray(counts, dtype=np.int64)
        if counts.shape != self.unit_cost.shape:
            raise ValueError(f"counts have shape {counts.shape}, expected {self.unit_cost.shape}")
        present = self.required | (counts.sum(axis=1) > 0)
        return (
            self.constant
            + float((counts * self.unit_cost).sum())
            + float(self.block_cost[present].sum())
        )

    def expected(self, keep_probs: torch.Tensor) -> torch.Tensor:
        """Differentiable expected cost under independent keep probabilities (N,) -> scalar."""
        import torch

        q = keep_probs
        cost = torch.as_tensor(self.item_cost, dtype=q.dtype, device=q.device)
        # P(block empty) = prod_{i in block} (1 - q_i), over a padded (B, P) gather; padding
        # points at an appended q = 0. torch.prod's backward is exact where a factor is 0.
        padded = torch.cat([q, q.new_zeros(1)])
        index = torch.as_tensor(self._block_items, device=q.device)  # type: ignore[attr-defined]
        nonempty = 1.0 - torch.prod(1.0 - padded[index], dim=1)
        required = torch.as_tensor(self.required, device=q.device)
        nonempty = torch.where(required, torch.ones_like(nonempty), nonempty)
        setup = torch.as_tensor(self.block_cost, dtype=q.dtype, device=q.device)
        return (q * cost).sum() + (nonempty * setup).sum() + self.constant

    def minimum(self) -> float:
        """Cost of the cheapest architecture the search can produce (one item per required block)."""
        g = self.granularity
        cheapest = g * self.unit_cost.min(axis=1)
        return self.constant + float((cheapest + self.block_cost)[self.required].sum())

    def maximum(self) -> float:
        """Cost with every channel kept (setup costs are non-negative in hwnas' tables)."""
        total = (self.max_units * self.unit_cost).sum() + np.maximum(self.block_cost, 0).sum()
        return self.constant + float(total)


CostTable = Union[ChoiceTable, ChannelTable]
