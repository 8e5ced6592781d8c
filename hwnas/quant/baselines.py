"""The baselines HAQ's size mode must beat, on the same evaluator and the same budget.

* random: uniform random actions through HAQ's action wall (so every policy fits), as many
  policies as HAQ has episodes, best by reward: :func:`hwnas.quant.haq.random_search`.
* greedy per-layer sensitivity (what AIMET / NNCF users do by hand or with their sensitivity
  tools): :func:`greedy_sensitivity`. Rule: for every layer l and offered bit width b, measure
  ``acc[l][b]``, the validation accuracy with only layer l quantized at b (all other layers
  float). Start with every layer at its highest level (8 bits). While the policy is over the
  budget, lower by one level the layer whose step costs the least accuracy per byte saved,
  ``(acc[l][b] - acc[l][b_next]) / (bytes(l, b) - bytes(l, b_next))`` (ties: the step saving
  more bytes, then the earlier layer). The drop is read from the single-layer table, not
  re-measured: accuracy losses are assumed additive, which is the method's known weakness and
  the reason a search can beat it. Evaluations: one per (layer, level) plus the final policy.
* uniform: the largest bit width that every layer takes and that fits (:func:`uniform_policy`).

Torch-free: the evaluator is any ``policy -> accuracy %`` callable; costs as in
:mod:`hwnas.quant.haq_env` (per layer, additive).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hwnas.graph.qparams import FLOAT_BITS
from hwnas.quant.haq_env import CostFn, WeightChoices

Evaluate = Callable[[list[int]], float]


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's policy (weight bits per layer), its cost, accuracy and evaluation count."""

    method: str
    policy: tuple[int, ...]
    cost: float
    accuracy: float
    evaluations: int
    details: dict = field(default_factory=dict)


def _total(policy: Sequence[int], cost: CostFn) -> float:
    return sum(cost(i, b) for i, b in enumerate(policy))


def uniform_policy(
    choices: WeightChoices, cost: CostFn, budget: float, evaluate: Evaluate
) -> BaselineResult:
    """The largest bit width offered by every layer whose uniform policy fits ``budget``.

    Raises:
        ValueError: if not even the lowest common width fits.
    """
    n = len(choices.levels)
    common = sorted(set.intersection(*(set(levels) for levels in choices.levels)))
    sizes = {b: _total([b] * n, cost) for b in common}
    fitting = [b for b in common if sizes[b] <= budget]
    if not fitting:
        raise ValueError(f"no uniform bit width fits {budget:g} (smallest {min(sizes.values())})")
    bits = fitting[-1]
    policy = (bits,) * n
    return BaselineResult(
        "uniform",
        policy,
        sizes[bits],
        float(evaluate(list(policy))),
        1,
        {"bits": bits, "uniform_costs": {str(b): sizes[b] for b in common}},
    )


def sensitivity_table(choices: WeightChoices, evaluate: Evaluate) -> list[dict[int, float]]:
    """``acc[l][b]``: accuracy with only layer l at b bits, every other layer float."""
    n = len(choices.levels)
    table = []
    for i in range(n):
        row = {}
        for b in choices.levels[i]:
            policy = [FLOAT_BITS] * n
            policy[i] = b
            row[b] = float(evaluate(policy))
        table.append(row)
    return table


def greedy_sensitivity(
    choices: WeightChoices, cost: CostFn, budget: float, evaluate: Evaluate
) -> BaselineResult:
    """Greedy lowering by measured single-layer sensitivity (rule in the module docstring).

    Stops at every layer's lowest level if the budget is below that (callers check first).
    """
    table = sensitivity_table(choices, evaluate)
    policy = [levels[-1] for levels in choices.levels]
    steps = []
    while _total(policy, cost) > budget:
        best = None
        for i, bits in enumerate(policy):
            lower = [b for b in choices.levels[i] if b < bits]
            if not lower:
                continue
            saved = cost(i, bits) - cost(i, lower[-1])
            if saved <= 0:
                continue
            drop = table[i][bits] - table[i][lower[-1]]
            key = (drop / saved, -saved, i)
            if best is None or key < best[0]:
                best = (key, i, lower[-1])
        if best is None:
            break
        _, i, bits = best
        policy[i] = bits
        steps.append([i, bits])
    accuracy = float(evaluate(list(policy)))
    evaluations = sum(len(row) for row in table) + 1
    return BaselineResult(
        "greedy",
        tuple(policy),
        _total(policy, cost),
        accuracy,
        evaluations,
        {
            "steps": steps,
            "sensitivity": [{str(b): a for b, a in row.items()} for row in table],
        },
    )
