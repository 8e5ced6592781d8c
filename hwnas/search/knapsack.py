"""Knapsack solvers for the Greedy-ADMM beta-step (FGA-NAS, Chen et al., IJCNN 2022).

The beta-step of one constraint (METHODS.md §1.2) keeps the entries of ``v = alpha + m / rho``
that maximise ``sum theta_i v_i^2`` subject to ``sum h_i theta_i <= r``:

* channel spaces: a 0-1 knapsack over channels (:func:`greedy_knapsack`), extended with a setup
  cost per block (the latency intercept, paid once when a block keeps any channel) and the guard
  that a block without a residual keeps at least one channel;
* layer-wise spaces: one op per layer, i.e. a multiple-choice knapsack (:func:`greedy_mckp`),
  solved by the incremental-efficiency greedy on each layer's convex hull (Sinha and Zoltners,
  Oper. Res. 1979) followed by a best-single-swap improvement pass.

:func:`dp_knapsack` and :func:`dp_mckp` are exact dynamic programmes on integer weights, used by
the tests to check that the greedy answers reach >= 0.95 of the optimum.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

_TOL = 1e-12


def greedy_knapsack(
    values: np.ndarray,
    weights: np.ndarray,
    capacity: float,
    group: Optional[np.ndarray] = None,
    setup: Optional[np.ndarray] = None,
    required: Optional[np.ndarray] = None,
    tries: int = 8,
) -> np.ndarray:
    """Greedy 0-1 knapsack: take items by ``value / weight``, skipping those that do not fit.

    The plain greedy can strand capacity that a heavy, valuable item would have used; the
    answer is the best of the plain greedy and ``tries`` greedy runs that take one of the most
    valuable left-out items first (partial enumeration of depth one, Sahni 1975), followed by
    exchanges: a left-out item comes in if dropping the lowest-ratio kept items that make room
    for it loses less value.

    Args:
        values: (N,) item values (items with value <= 0 are never taken, except as guards).
        weights: (N,) non-negative item weights.
        capacity: total weight allowed.
        group: (N,) block index of each item (needed with ``setup``/``required``).
        setup: (B,) weight paid once when a block takes its first item.
        required: (B,) bool, blocks that must take at least one item (their best-valued item is
            taken first).

    Returns:
        (N,) bool mask of the taken items.

    Raises:
        ValueError: if the required items alone exceed ``capacity``.
    """
    values = np.asarray(values, dtype=np.float64)
    best = _greedy_pass(values, weights, capacity, group, setup, required, None)
    left_out = np.flatnonzero(~best & (values > 0))
    for forced in left_out[np.argsort(-values[left_out], kind="stable")][:tries]:
        keep = _greedy_pass(values, weights, capacity, group, setup, required, int(forced))
        if keep is not None and values[keep].sum() > values[best].sum():
            best = keep
    return _exchange(best, values, weights, capacity, group, setup, required, tries)


def _exchange(keep, values, weights, capacity, group, setup, required, tries) -> np.ndarray:
    """Swap in left-out items where dropping low-ratio kept items costs less value."""
    weights = np.asarray(weights, dtype=np.float64)
    group = np.zeros(values.size, dtype=np.int64) if group is None else np.asarray(group)
    setup = np.zeros(int(group.max(initial=-1)) + 1) if setup is None else np.asarray(setup)
    guard = np.zeros(values.size, dtype=bool)
    if required is not None:  # never drop the last item of a required block
        guard = np.isin(group, np.flatnonzero(required))
    for _ in range(tries):
        is_open = np.zeros(setup.size, dtype=bool)
        is_open[group[keep]] = True
        used = weights[keep].sum() + setup[is_open].sum()
        left_out = np.flatnonzero(~keep & (values > 0))
        changed = False
        for j in left_out[np.argsort(-values[left_out], kind="stable")][:tries]:
            need = weights[j] + (0.0 if is_open[group[j]] else setup[group[j]]) - (capacity - used)
            out = _cheapest_room(np.flatnonzero(keep & ~guard), need, values, weights)
            if out is None or values[out].sum() >= values[j] - _TOL:
                continue
            keep = keep.copy()
            keep[out], keep[j] = False, True
            changed = True
            break
        if not changed:
            break
    return keep


def _greedy_pass(values, weights, capacity, group, setup, required, forced) -> Optional[np.ndarray]:
    """One greedy pass; ``forced`` (an item index) is taken right after the guards, if it fits."""
    weights = np.asarray(weights, dtype=np.float64)
    n = values.size
    group = np.zeros(n, dtype=np.int64) if group is None else np.asarray(group, dtype=np.int64)
    n_groups = int(group.max(initial=-1)) + 1
    setup = np.zeros(n_groups) if setup is None else np.asarray(setup, dtype=np.float64)
    keep = np.zeros(n, dtype=bool)
    is_open = np.zeros(n_groups, dtype=bool)
    remaining = float(capacity)
    if required is not None:
        for b in np.flatnonzero(required):
            members = np.flatnonzero(group == b)
            best = members[np.lexsort((weights[members], -values[members]))[0]]
            keep[best], is_open[b] = True, True
            remaining -= weights[best] + setup[b]
        if remaining < -_TOL * max(1.0, abs(capacity)):
            raise ValueError("the required items alone exceed the capacity")
    if forced is not None and not keep[forced]:
        cost = weights[forced] + (0.0 if is_open[group[forced]] else setup[group[forced]])
        if cost > remaining + _TOL:
            return None
        keep[forced], is_open[group[forced]] = True, True
        remaining -= cost
    candidates = np.flatnonzero(~keep & (values > 0))
    ratio = values[candidates] / np.maximum(weights[candidates], _TOL)
    order = candidates[np.argsort(-ratio, kind="stable")]
    # Vectorised prefix: everything up to the first item that does not fit.
    first = _first_occurrence(group[order]) & ~is_open[group[order]]
    effective = weights[order] + setup[group[order]] * first
    fits = np.cumsum(effective) <= remaining + _TOL
    stop = int(np.argmin(fits)) if not fits.all() else fits.size
    taken = order[:stop]
    keep[taken] = True
    is_open[group[taken]] = True
    remaining -= float(effective[:stop].sum())
    # The rest, one by one (only items that can still fit at all).
    for i in order[stop:][weights[order[stop:]] <= remaining + _TOL]:
        cost = weights[i] + (0.0 if is_open[group[i]] else setup[group[i]])
        if cost <= remaining + _TOL:
            keep[i], is_open[group[i]] = True, True
            remaining -= cost
    return keep


def _cheapest_room(kept: np.ndarray, need: float, values, weights) -> Optional[np.ndarray]:
    """Kept items to drop to free ``need`` weight: the better of one item and a ratio prefix."""
    if need <= _TOL:
        return kept[:0]
    options = []
    single = kept[weights[kept] >= need - _TOL]
    if single.size:
        options.append(single[[np.argmin(values[single])]])
    order = kept[np.argsort(values[kept] / np.maximum(weights[kept], _TOL), kind="stable")]
    count = int(np.searchsorted(np.cumsum(weights[order]), need - _TOL)) + 1
    if count <= order.size:
        options.append(order[:count])
    return min(options, key=lambda o: values[o].sum()) if options else None


def _first_occurrence(labels: np.ndarray) -> np.ndarray:
    first = np.zeros(labels.size, dtype=bool)
    _, index = np.unique(labels, return_index=True)
    first[index] = True
    return first


def greedy_mckp(values: np.ndarray, weights: np.ndarray, capacity: float) -> np.ndarray:
    """Greedy multiple-choice knapsack: exactly one option per layer, maximise total value.

    Starts from each layer's lightest option, then takes hull increments (upgrades) in order of
    decreasing ``delta value / delta weight`` while they fit, then repeats the best single
    option swap that fits until none improves (at most L passes).

    Args:
        values: (L, K) value of option k at layer l.
        weights: (L, K) non-negative weight of option k at layer l.
        capacity: total weight allowed.

    Returns:
        (L,) chosen option per layer.

    Raises:
        ValueError: if even the lightest options exceed ``capacity``.
    """
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    n_layers = values.shape[0]
    choice = np.array([np.lexsort((-values[i], weights[i]))[0] for i in range(n_layers)])
    rows = np.arange(n_layers)
    remaining = capacity - weights[rows, choice].sum()
    if remaining < -_TOL * max(1.0, abs(capacity)):
        raise ValueError("the lightest options alone exceed the capacity")
    increments = [
        inc for i in range(n_layers) for inc in _hull_increments(values[i], weights[i], i)
    ]
    increments.sort(key=lambda inc: -inc[0])
    for _, layer, src, dst, dw in increments:
        if choice[layer] == src and dw <= remaining + _TOL:
            choice[layer] = dst
            remaining -= dw
    for _ in range(n_layers):
        dw = weights - weights[rows, choice][:, None]
        gain = np.where(dw <= remaining + _TOL, values - values[rows, choice][:, None], -np.inf)
        layer, option = np.unravel_index(np.argmax(gain), gain.shape)
        if gain[layer, option] <= _TOL:
            break
        remaining -= dw[layer, option]
        choice[layer] = option
    return choice


def _hull_increments(values: np.ndarray, weights: np.ndarray, layer: int) -> list[tuple]:
    """Upgrades along the upper convex hull of (weight, value), from the lightest option."""
    order = np.lexsort((-values, weights))
    frontier = [int(order[0])]
    for k in order[1:]:
        if values[k] > values[frontier[-1]] + _TOL:
            frontier.append(int(k))
    hull: list[int] = []
    for k in frontier:
        while len(hull) >= 2 and _slope(hull[-2], hull[-1], values, weights) <= _slope(
            hull[-1], k, values, weights
        ):
            hull.pop()
        hull.append(k)
    return [
        (_slope(a, b, values, weights), layer, a, b, weights[b] - weights[a])
        for a, b in zip(hull[:-1], hull[1:])
    ]


def _slope(a: int, b: int, values: np.ndarray, weights: np.ndarray) -> float:
    dw = weights[b] - weights[a]
    return np.inf if dw <= _TOL else (values[b] - values[a]) / dw


def dp_knapsack(values: np.ndarray, weights: np.ndarray, capacity: int) -> tuple[float, np.ndarray]:
    """Exact 0-1 knapsack on integer weights (O(N * capacity)); returns (best value, mask)."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.int64)
    n = values.size
    best = np.zeros((n + 1, capacity + 1))
    for i in range(n):
        best[i + 1] = best[i]
        w = weights[i]
        if w <= capacity:
            best[i + 1, w:] = np.maximum(best[i, w:], best[i, : capacity + 1 - w] + values[i])
    keep = np.zeros(n, dtype=bool)
    c = capacity
    for i in range(n, 0, -1):
        if best[i, c] != best[i - 1, c]:
            keep[i - 1] = True
            c -= weights[i - 1]
    return float(best[n, capacity]), keep


def dp_mckp(values: np.ndarray, weights: np.ndarray, capacity: int) -> float:
    """Exact multiple-choice knapsack value on integer weights (O(L * K * capacity))."""
    values = np.asarray(values, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.int64)
    best = np.zeros(capacity + 1)
    for layer in range(values.shape[0]):
        new = np.full(capacity + 1, -np.inf)
        for v, w in zip(values[layer], weights[layer]):
            if w <= capacity:
                new[w:] = np.maximum(new[w:], best[: capacity + 1 - w] + v)
        best = new
    return float(best[capacity])
