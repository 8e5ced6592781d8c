"""HAQ's latency mode and its baselines on one shared problem, as library calls.

Per layer fp32 or int8 (:class:`~hwnas.quant.haq_env.BitChoices`, int8 only where the device's
int8 network is faster), cost = the calibrated per-layer latency measured on the device
(:class:`~hwnas.quant.costs.PrecisionCost`), budget in ms. Use::

    problem = latency_problem(graph, cost, choices, data, budget_ms, settings)
    found = search_latency(problem, "haq", episodes=20)   # or random / greedy / uniform / dfq

Every method sees the same evaluator (:class:`~hwnas.quant.quantize.PolicyEvaluator`: the
calibration observed once, ``search_steps`` fine-tune steps (default none), validation
accuracy; memoised and shared) and the same budget:

* ``haq``: DDPG episodes through HAQ's action wall (:func:`hwnas.quant.haq.haq_search`);
* ``random``: as many random policies through the same wall (:func:`~hwnas.quant.haq.random_search`);
* ``greedy``: single-layer int8 sensitivities, then int8 where it costs the least accuracy per
  predicted ms saved (:func:`hwnas.quant.baselines.greedy_sensitivity`);
* ``uniform``: all-int8 if it fits (below the all-fp32 latency), else infeasible;
* ``dfq``: the output-mixing relaxation of :mod:`hwnas.quant.dfq_act` with the cost matrix of
  the calibrated per-layer latencies, bisected onto the budget
  (:func:`hwnas.quant.dfq_budget.dfq_for_budget`); its policy is scored by the same evaluator.

The run layer (:mod:`hwnas.runs.quantize_latency`) gives every method's policy the same
end-to-end hardware check and the same final fine-tune.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwnas.errors import UserError
from hwnas.graph.nodes import Graph
from hwnas.graph.qparams import FLOAT_BITS, LayerBits
from hwnas.quant.baselines import greedy_sensitivity, option_label, uniform_policy
from hwnas.quant.costs import PrecisionCost
from hwnas.quant.haq import HAQConfig, haq_search, random_search
from hwnas.quant.haq_env import BitChoices, HAQEnv, layer_infos
from hwnas.quant.qat import accuracy
from hwnas.quant.qnet import QuantNet
from hwnas.quant.quantize import DataTensors, HAQSettings, PolicyEvaluator, check_budget

logger = logging.getLogger(__name__)

LATENCY_METHODS = ("haq", "random", "greedy", "uniform", "dfq")
FLOAT = LayerBits(FLOAT_BITS, FLOAT_BITS)


@dataclass
class LatencyProblem:
    """What every method shares: graph, data, cost model, choices, budget, the evaluator."""

    graph: Graph
    data: DataTensors
    cost: PrecisionCost
    choices: BitChoices
    budget_ms: float
    evaluate: PolicyEvaluator
    float_accuracy: float
    cheapest_ms: float

    def layer_ms(self, index: int, bits: LayerBits) -> float:
        return self.cost.layer_ms(index, bits)

    def latency_ms(self, policy: Sequence[LayerBits]) -> float:
        return self.cost.latency_ms(policy)

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.graph.layers]


def latency_problem(
    graph: Graph,
    cost: PrecisionCost,
    choices: BitChoices,
    data: DataTensors,
    budget_ms: float,
    settings: HAQSettings,
) -> LatencyProblem:
    """Check the budget (UserError, exit 2, naming the cheapest latency) and build the evaluator.

    ``settings.search_steps`` fine-tune steps score a policy; ``settings.torch_device`` runs it.
    """
    cheapest = check_budget(cost, choices, budget_ms)
    evaluate = PolicyEvaluator(graph, data, settings.search_steps, settings)
    float_net = QuantNet(graph, {}).to(settings.torch_device)
    float_acc = accuracy(float_net, data.val_x, data.val_y)
    return LatencyProblem(graph, data, cost, choices, budget_ms, evaluate, float_acc, cheapest)


@dataclass(frozen=True)
class LatencySearch:
    """One method's result before the hardware check and the final fine-tune.

    Attributes:
        method: one of :data:`LATENCY_METHODS`.
        policy: per layer :class:`LayerBits` (what goes on to the hardware check).
        latency_ms: predicted latency of ``policy`` (calibrated cost model).
        val_accuracy: the evaluator's validation accuracy % of ``policy`` (short fine-tune).
        evaluated_policies: distinct policies the method scored with the evaluator.
        episodes: episodes run (haq, random; 0 otherwise).
        seconds: wall time of the method.
        details: method-specific, JSON-ready (history, sensitivity table, DFQ probes...).
    """

    method: str
    policy: tuple[LayerBits, ...]
    latency_ms: float
    val_accuracy: float
    evaluated_policies: int
    episodes: int
    seconds: float
    details: dict

    def to_dict(self) -> dict:
        out = {k: v for k, v in self.__dict__.items() if k != "policy"}
        out["precisions"] = [option_label(b) for b in self.policy]
        out["int8_layers"] = sum(not b.is_float for b in self.policy)
        return out


def search_latency(
    problem: LatencyProblem,
    method: str,
    episodes: int,
    seed: int = 0,
    progress: Callable | None = None,
    dfq_config: Any = None,
    dfq_memo: dict | None = None,
) -> LatencySearch:
    """Run one method on ``problem``; ``episodes`` applies to haq and random.

    Args:
        dfq_config: :class:`hwnas.quant.dfq.DFQConfig` of ``dfq`` (``act_bits`` is set to 8).
        dfq_memo: DFQ searches shared across budgets (see ``dfq_for_budget``).

    Raises:
        UserError: unknown method, or ``uniform`` when all-int8 does not fit.
    """
    if method not in LATENCY_METHODS:
        raise UserError(f"unknown latency method {method!r}; known: {', '.join(LATENCY_METHODS)}")
    problem.evaluate.reset_count()
    start = time.perf_counter()
    details: dict = {}
    count = 0
    if method in ("haq", "random"):
        env = HAQEnv(
            layer_infos(problem.graph),
            problem.choices,
            problem.layer_ms,
            problem.budget_ms,
            problem.evaluate,
            problem.float_accuracy,
        )
        if method == "haq":
            result = haq_search(env, HAQConfig(episodes=episodes, seed=seed), progress)
        else:
            result = random_search(env, episodes, seed, progress)
        policy, acc, count = result.best.policy, result.best.accuracy, len(result.history)
        details = {
            "best_episode": result.best.episode,
            "history": [r.to_dict() for r in result.history],
        }
    elif method in ("greedy", "uniform"):
        run = greedy_sensitivity if method == "greedy" else uniform_policy
        try:
            found = run(problem.choices, problem.layer_ms, problem.budget_ms, problem.evaluate)
        except ValueError as exc:
            cheapest = min(
                problem.latency_ms([o] * len(problem.names)) for o in problem.choices.options(0)
            )
            raise UserError(
                f"uniform: no uniform precision fits {problem.budget_ms:g} ms (the cheapest "
                f"uniform network is predicted at {cheapest:.3f} ms); try --method haq"
            ) from exc
        policy, acc, details = found.policy, found.accuracy, dict(found.details)
    else:
        policy, details = _dfq(problem, dfq_config, seed, dfq_memo)
        acc = problem.evaluate(list(policy))
    return LatencySearch(
        method,
        tuple(policy),
        problem.latency_ms(policy),
        float(acc),
        problem.evaluate.evaluated,
        count,
        time.perf_counter() - start,
        details,
    )


def dfq_cost_matrix(problem: LatencyProblem) -> tuple[tuple[int, ...], np.ndarray]:
    """(candidates, (layers, candidates) calibrated ms): the int8 weight bits and 32 (fp32)."""
    w_int = sorted({w for levels in problem.choices.w_levels for w in levels if w != FLOAT_BITS})
    if not w_int:
        return (FLOAT_BITS,), np.array(
            [[problem.layer_ms(i, FLOAT)] for i in range(len(problem.names))]
        )
    top = LayerBits(w_int[-1], 8)
    rows = [
        [problem.layer_ms(i, top), problem.layer_ms(i, FLOAT)] for i in range(len(problem.names))
    ]
    return (w_int[-1], FLOAT_BITS), np.asarray(rows, dtype=np.float64)


def _dfq(problem: LatencyProblem, config, seed: int, memo: dict | None) -> tuple[list, dict]:
    from hwnas.quant.dfq import DFQConfig
    from hwnas.quant.dfq_budget import dfq_for_budget

    candidates, cost = dfq_cost_matrix(problem)
    if len(candidates) == 1:  # int8 not offered: every layer fp32
        return [FLOAT] * len(problem.names), {"note": "int8 not offered: all fp32"}
    config = DFQConfig(seed=seed) if config is None else config
    config = dataclasses.replace(config, act_bits=8, seed=seed)
    result = dfq_for_budget(
        problem.graph,
        problem.data,
        problem.budget_ms,
        config=config,
        candidates=candidates,
        cost=cost,
        memo=memo,
    )

    def as_policy(bits: dict[str, int]) -> list[LayerBits]:
        return [FLOAT if bits[n] == FLOAT_BITS else LayerBits(bits[n], 8) for n in problem.names]

    own = as_policy(result.own_bits)
    return as_policy(result.bits), {
        "own_precisions": [option_label(b) for b in own],
        "own_latency_ms": problem.latency_ms(own),
        "repaired": bool(result.repaired),
        "delta": result.delta,
        "probes": result.probes,
        "steps": config.steps,
        "search_seconds": result.seconds,
    }
