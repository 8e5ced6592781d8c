"""DFQ under a cost budget: bisect the allowed loss increase until DFQ's own policy fits.

The other mixed-precision methods of the benchmark take a size budget in bytes; DFQ (Cheng et
al. 2018, :mod:`hwnas.quant.dfq`) takes a loss constraint theta and minimises the size. This
module maps one onto the other (see :func:`dfq_for_budget`) and, only when DFQ cannot meet the
budget at all, repairs its output (:func:`repair_to_budget`), saying so in the result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from hwnas.errors import UserError
from hwnas.graph.nodes import Graph
from hwnas.quant.dfq import (
    CANDIDATES,
    DFQConfig,
    DFQResult,
    dfq_search,
    float_val_loss,
    policy_cost,
    size_costs,
)
from hwnas.quant.quantize import DataTensors


@dataclass(frozen=True)
class BudgetResult:
    """DFQ under a size (or latency) budget.

    Attributes:
        bits: the final policy: ``own_bits``, lowered until it fits if it did not.
        own_bits: the chosen search's argmax, before any repair (the method's own output).
        cost, own_cost: priced cost of ``bits`` and of ``own_bits``.
        budget: the budget, in the cost matrix's unit (bytes by default).
        repaired: True if ``own_bits`` missed the budget and was lowered.
        delta: allowed loss increase (nats over the float val loss) of the chosen search.
        search: the chosen search.
        probes: (delta, priced cost of its argmax) of every search this call used, in order.
        seconds: wall time of this call (searches taken from ``memo`` cost nothing).
    """

    bits: dict[str, int]
    own_bits: dict[str, int]
    cost: float
    own_cost: float
    budget: float
    repaired: bool
    delta: float
    search: DFQResult
    probes: list[tuple[float, float]]
    seconds: float


def dfq_for_budget(
    graph: Graph,
    data: DataTensors,
    budget: float,
    config: DFQConfig | None = None,
    candidates=CANDIDATES,
    cost: np.ndarray | None = None,
    searches: int = 5,
    max_delta: float = 1.0,
    memo: dict[float, DFQResult] | None = None,
) -> BudgetResult:
    """DFQ for a cost budget (bytes by default): the tightest loss constraint whose policy fits.

    DFQ's own knob is the allowed loss increase delta (theta = float val loss + delta); the
    budget is met by searching delta rather than by adding a second constraint to the
    Lagrangian, so every candidate is DFQ's own output and the one returned is the one with the
    least loss increase that fits. The priced cost of the argmax falls as delta grows (tested),
    so delta is bisected: ``max_delta`` first (if even that misses, its argmax is repaired), then
    0, then ``searches - 2`` geometric midpoints: between ``max_delta / 256`` and ``max_delta``
    if 0 missed; if 0 fitted, the budget has room, and the midpoints are *negative* deltas of
    magnitude ``max_delta / 256`` to ``max_delta / 8`` (a loss below the float model's, which
    the search's own weight steps can reach), keeping the most negative one that still fits —
    without them DFQ leaves loose budgets unspent (measured: 66-80 % of the budget at 35-50 %
    of the 2-8-bit range, ``bench/results/quant_size.json``). The probes lie on a fixed dyadic grid, so a ``memo`` shared across
    budgets (same graph, data, config, candidates, cost) reuses searches.

    Repair (only if the ``max_delta`` argmax misses): lower one candidate step at a time the
    layer whose softmax margin between its choice and the next lower candidate is smallest,
    until the policy fits; ``repaired`` records it.

    Raises:
        UserError: the budget is below the cost with every layer at the smallest candidate.
    """
    start = time.perf_counter()
    candidates = tuple(sorted(candidates))
    cost = size_costs(graph, candidates) if cost is None else np.asarray(cost, dtype=np.float64)
    floor = float(cost.min(axis=1).sum())
    if budget < floor:
        raise UserError(
            f"no policy meets {budget:g}: the smallest ({candidates[0]}-bit) is {floor:g}"
        )
    memo = {} if memo is None else memo
    base = float_val_loss(graph, data)
    probes: list[tuple[float, float]] = []

    def search(delta: float) -> DFQResult:
        key = round(delta, 12)
        if key not in memo:
            memo[key] = dfq_search(graph, data, base + delta, config, candidates, cost)
        probes.append((delta, memo[key].cost))
        return memo[key]

    best, best_delta = search(max_delta), max_delta
    if best.cost <= budget and searches > 1:
        zero = search(0.0)
        if zero.cost <= budget:  # room left: ask for less loss than the float model's
            best, best_delta = zero, 0.0
            lo, hi = max_delta / 256, max_delta / 8  # magnitudes of negative deltas
            sign, fits_grows = -1.0, False
        else:
            lo, hi = max_delta / 256, max_delta
            sign, fits_grows = 1.0, True
        for _ in range(searches - 2):
            mid = float(np.sqrt(lo * hi))
            result = search(sign * mid)
            if result.cost <= budget:
                best, best_delta = result, sign * mid
                hi, lo = (mid, lo) if fits_grows else (hi, mid)
            elif fits_grows:
                lo = mid
            else:
                hi = mid
    bits = best.bits
    if best.cost > budget:
        bits = repair_to_budget(graph, best, cost, budget)
    return BudgetResult(
        bits,
        best.bits,
        policy_cost(graph, bits, cost, candidates),
        best.cost,
        float(budget),
        bits != best.bits,
        best_delta,
        best,
        probes,
        time.perf_counter() - start,
    )


def repair_to_budget(
    graph: Graph, result: DFQResult, cost: np.ndarray, budget: float
) -> dict[str, int]:
    """Lower the least-certain layers one candidate step at a time until the cost fits."""
    candidates = result.candidates
    index = {b: j for j, b in enumerate(candidates)}
    bits = dict(result.bits)
    while policy_cost(graph, bits, cost, candidates) > budget:
        options = []
        for i, layer in enumerate(graph.layers):
            j = index[bits[layer.name]]
            saving = cost[i, j] - cost[i, j - 1] if j > 0 else 0.0
            if saving > 0:
                p = np.mean(result.probs[layer.name], axis=0)
                options.append((p[j] - p[j - 1], -saving, layer.name))
        if not options:
            raise ValueError("cannot lower any layer further")  # excluded by the floor check
        _, _, name = min(options)
        bits[name] = candidates[index[bits[name]] - 1]
    return bits
