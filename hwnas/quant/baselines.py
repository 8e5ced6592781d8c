"""The baselines HAQ must beat, on the same evaluator and the same budget, in either mode.

Both of HAQ's modes are served by one implementation: a ``choices`` object
(:class:`~hwnas.quant.haq_env.WeightChoices`, size mode: options are weight bits;
:class:`~hwnas.quant.haq_env.BitChoices`, latency mode: options are
:class:`~hwnas.graph.qparams.LayerBits`) says what each layer may take, what "float" is
(``choices.float_option``) and what one step down is (``choices.lower``: the highest option
below that is strictly cheaper).

* random: uniform random actions through HAQ's action wall (so every policy fits), as many
  policies as HAQ has episodes, best by reward: :func:`hwnas.quant.haq.random_search`.
* greedy per-layer sensitivity (what AIMET / NNCF users do by hand or with their sensitivity
  tools): :func:`greedy_sensitivity`. Rule: for every layer l and every option b on its chain of
  steps down from its highest option, measure ``acc[l][b]``, the validation accuracy with only
  layer l at b (all other layers float). Start with every layer at its highest option (size
  mode: 8 bits; latency mode: fp32). While the policy is over the budget, take one step down at
  the layer whose step costs the least accuracy per unit of cost saved,
  ``(acc[l][b] - acc[l][b_next]) / (cost(l, b) - cost(l, b_next))`` (ties: the step saving
  more, then the earlier layer); a layer with no cheaper option (latency mode: int8 not faster
  there) is never a candidate. The drop is read from the single-layer table, not re-measured:
  accuracy losses are assumed additive, which is the method's known weakness and the reason a
  search can beat it. Evaluations: the distinct policies of the table plus the final policy
  (size mode: one per (layer, level); latency mode: one per layer with a cheaper int8, plus the
  all-float policy).
* uniform: the highest option every layer offers whose uniform policy fits
  (:func:`uniform_policy`; latency mode: all-int8 when the budget is below all-fp32).

Torch-free: the evaluator is any ``policy -> accuracy %`` callable; costs as in
:mod:`hwnas.quant.haq_env` (per layer, additive).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hwnas.graph.qparams import LayerBits
from hwnas.quant.haq_env import BitChoices, CostFn, WeightChoices

Evaluate = Callable[[list], float]
Choices = BitChoices | WeightChoices


@dataclass(frozen=True)
class BaselineResult:
    """A baseline's policy (one option per layer), its cost, accuracy and evaluation count."""

    method: str
    policy: tuple
    cost: float
    accuracy: float
    evaluations: int
    details: dict = field(default_factory=dict)


def _total(policy: Sequence, cost: CostFn) -> float:
    return sum(cost(i, b) for i, b in enumerate(policy))


def _rank(option: int | LayerBits) -> tuple[int, int]:
    """Higher = more precise (float first; then weight bits, then activation bits)."""
    if isinstance(option, LayerBits):
        return option.w_bits, option.a_bits
    return int(option), int(option)


def option_label(option: int | LayerBits) -> str:
    """``"8"`` (size mode), ``"fp32"`` or ``"w8a8"`` (latency mode)."""
    if not isinstance(option, LayerBits):
        return str(int(option))
    return "fp32" if option.is_float else f"w{option.w_bits}a{option.a_bits}"


def _plain(option: int | LayerBits) -> int | str:
    return int(option) if not isinstance(option, LayerBits) else option_label(option)


def uniform_policy(choices: Choices, cost: CostFn, budget: float, evaluate: Evaluate):
    """The highest option offered by every layer whose uniform policy fits ``budget``.

    Raises:
        ValueError: if not even the cheapest common option fits.
    """
    n = len(choices.w_levels if isinstance(choices, BitChoices) else choices.levels)
    common = set(choices.options(0))
    for i in range(1, n):
        common &= set(choices.options(i))
    ranked = sorted(common, key=_rank, reverse=True)
    costs = {o: _total([o] * n, cost) for o in ranked}
    fitting = [o for o in ranked if costs[o] <= budget]
    if not fitting:
        cheapest = min(costs, key=costs.get)
        raise ValueError(
            f"no uniform policy fits {budget:g} (cheapest: {option_label(cheapest)} at "
            f"{costs[cheapest]:g})"
        )
    option = fitting[0]
    policy = (option,) * n
    return BaselineResult(
        "uniform",
        policy,
        costs[option],
        float(evaluate(list(policy))),
        1,
        {
            "bits": _plain(option),
            "uniform_costs": {option_label(o): costs[o] for o in ranked},
        },
    )


def _chain(choices: Choices, index: int, cost: CostFn | None) -> list:
    """Layer ``index``'s options from its highest down, one ``choices.lower`` step at a time
    (every option but float when ``cost`` is None)."""
    options = sorted(choices.options(index), key=_rank, reverse=True)
    if cost is None:
        return [o for o in options if o != choices.float_option]
    chain = [options[0]]
    while (step := choices.lower(chain[-1], index, cost)) is not None:
        chain.append(step)
    return chain


def sensitivity_table(
    choices: Choices, evaluate: Evaluate, cost: CostFn | None = None
) -> list[dict]:
    """``acc[l][b]``: accuracy with only layer l at option b, every other layer float.

    With ``cost``, b runs over the options greedy can reach (:func:`_chain`); without, over
    every non-float option.
    """
    n = len(choices.w_levels if isinstance(choices, BitChoices) else choices.levels)
    table = []
    for i in range(n):
        row = {}
        for option in _chain(choices, i, cost):
            policy = [choices.float_option] * n
            policy[i] = option
            row[option] = float(evaluate(policy))
        table.append(row)
    return table


def greedy_sensitivity(choices: Choices, cost: CostFn, budget: float, evaluate: Evaluate):
    """Greedy lowering by measured single-layer sensitivity (rule in the module docstring).

    Stops at every layer's cheapest reachable option if the budget is below that (callers
    check first).
    """
    table = sensitivity_table(choices, evaluate, cost)
    n = len(table)
    policy = [next(iter(row)) for row in table]  # each chain starts at the highest option
    steps = []
    while _total(policy, cost) > budget:
        best = None
        for i, option in enumerate(policy):
            step = choices.lower(option, i, cost)
            if step is None:
                continue
            saved = cost(i, option) - cost(i, step)
            drop = table[i][option] - table[i][step]
            key = (drop / saved, -saved, i)
            if best is None or key < best[0]:
                best = (key, i, step)
        if best is None:
            break
        _, i, step = best
        policy[i] = step
        steps.append([i, _plain(step)])
    accuracy = float(evaluate(list(policy)))
    single = set()
    for i, row in enumerate(table):
        for option in row:
            single.add((i, option) if option != choices.float_option else None)
    return BaselineResult(
        "greedy",
        tuple(policy),
        _total(policy, cost),
        accuracy,
        len(single) + 1,
        {
            "steps": steps,
            "sensitivity": [{option_label(o): a for o, a in row.items()} for row in table],
            "layers": n,
        },
    )
