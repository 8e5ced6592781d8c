"""HAQ's model-size mode and its baselines on one shared problem, as library calls.

HAQ (Wang et al., CVPR 2019), k-means experiments: per layer a weight bit width in 2..8,
activations float, cost = the stored weight bytes of the policy
(:func:`hwnas.graph.wcodes.weight_bytes`, sum over layers, priced with the chosen coding),
budget in bytes, the action wall from the last layer to the first (one bit less until it
fits), reward ``0.1 * (val accuracy - float val accuracy)``, validation without fine-tuning.

Use::

    problem = size_problem(graph, data, "kmeans", budget_bytes)   # codes computed once
    found = search_size(problem, "haq", episodes=600)   # or random / greedy / uniform / dfq
    final = finetune_size(problem, found.policy, FinetuneConfig(steps=300))

Every method sees the same evaluator (memoised, shared) and the same budget; ``search_size``
reports the method's own policy, its priced size, its validation accuracy before fine-tuning
and how many distinct policies it evaluated; ``finetune_size`` is the same final fine-tune
for every method (and for any policy found elsewhere).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwnas.errors import UserError
from hwnas.graph.nodes import Graph
from hwnas.graph.qparams import FLOAT_BITS
from hwnas.graph.wcodes import KINDS, WeightCode, weight_bytes
from hwnas.quant.baselines import greedy_sensitivity, uniform_policy
from hwnas.quant.coded import CodedEvaluator, CodedNet, CodedWeights
from hwnas.quant.haq import PAPER_EPISODES, HAQConfig, haq_search, random_search, reselect
from hwnas.quant.haq_env import HAQEnv, WeightChoices, layer_infos
from hwnas.quant.qat import FinetuneConfig, accuracy, finetune

logger = logging.getLogger(__name__)

SIZE_METHODS = ("haq", "random", "greedy", "uniform", "dfq")
RESELECT_TOP = 10  # best-rewarded policies re-scored on the held-out images


@dataclass
class SizeProblem:
    """What every method shares: graph, data, coding, budget, costs, the evaluator."""

    graph: Graph
    data: Any  # hwnas.quant.quantize.DataTensors
    coding: str
    budget_bytes: float
    choices: WeightChoices
    table: CodedWeights
    evaluate: CodedEvaluator
    float_accuracy: float
    torch_device: str = "cpu"
    layer_sizes: list[tuple[int, int]] = field(default_factory=list)  # (#weights, out channels)
    select: CodedEvaluator | None = None  # on data.select_x: re-scores haq's and random's best

    def cost(self, index: int, bits: int) -> float:
        """Priced bytes of layer ``index``'s weights at ``bits`` (32: float32)."""
        n, cout = self.layer_sizes[index]
        return float(weight_bytes(n, cout, int(bits), self.coding))

    def size_bytes(self, policy: Sequence[int]) -> int:
        return int(sum(self.cost(i, b) for i, b in enumerate(policy)))

    def uniform_bytes(self, bits: int) -> int:
        return self.size_bytes([bits] * len(self.layer_sizes))

    @property
    def names(self) -> list[str]:
        return [layer.name for layer in self.graph.layers]


def size_problem(
    graph: Graph, data: Any, coding: str, budget_bytes: float, torch_device: str = "cpu"
) -> SizeProblem:
    """Precompute every layer's codes at 2..8 bits and the float accuracy; check the budget.

    Raises:
        UserError: unknown coding, or a budget below the all-2-bit size (names the smallest and
            largest achievable sizes).
    """
    if coding not in KINDS:
        raise UserError(f"unknown weight coding {coding!r}; known: {', '.join(KINDS)}")
    n = len(graph.layers)
    choices = WeightChoices.uniform(n)
    sizes = [(int(layer.weight.size), int(layer.weight.shape[0])) for layer in graph.layers]
    lo = sum(weight_bytes(p, c, choices.levels[i][0], coding) for i, (p, c) in enumerate(sizes))
    hi = sum(weight_bytes(p, c, choices.levels[i][-1], coding) for i, (p, c) in enumerate(sizes))
    if budget_bytes < lo:
        raise UserError(
            f"no {coding} policy fits {budget_bytes / 1000:g} kB: the smallest achievable size "
            f"is {lo / 1000:.3f} kB (every layer 2 bits), the largest {hi / 1000:.3f} kB "
            f"(every layer 8 bits)"
        )
    table = CodedWeights(graph, coding)
    logger.info("%s codes of %d layers at 2..8 bits in %.2f s", coding, n, table.seconds)
    evaluate = CodedEvaluator(table, data.val_x, data.val_y, torch_device)
    float_acc = evaluate([FLOAT_BITS] * n)
    select = None
    if getattr(data, "select_x", None) is not None:
        select = CodedEvaluator(table, data.select_x, data.select_y, torch_device)
    return SizeProblem(
        graph,
        data,
        coding,
        float(budget_bytes),
        choices,
        table,
        evaluate,
        float_acc,
        torch_device,
        sizes,
        select,
    )


@dataclass(frozen=True)
class SizeSearch:
    """One method's result before the final fine-tune.

    Attributes:
        method: ``haq``, ``random``, ``greedy`` or ``uniform``.
        policy: weight bits per layer.
        size_bytes: priced size of ``policy``.
        val_accuracy: validation accuracy % of the coded weights, no fine-tune.
        evaluated_policies: distinct policies the method scored.
        episodes: episodes run (haq, random; 0 otherwise).
        seconds: wall time of the method.
        episode_seconds: ``seconds / episodes`` (haq, random; None otherwise).
        details: method-specific (history, sensitivity table, ...), JSON-ready.
    """

    method: str
    policy: tuple[int, ...]
    size_bytes: int
    val_accuracy: float
    evaluated_policies: int
    episodes: int
    seconds: float
    episode_seconds: float | None
    details: dict

    def to_dict(self) -> dict:
        return {k: (list(v) if k == "policy" else v) for k, v in self.__dict__.items()}


def size_env(problem: SizeProblem) -> HAQEnv:
    """HAQ's environment in size mode on ``problem`` (one action per layer)."""
    return HAQEnv(
        layer_infos(problem.graph),
        problem.choices,
        problem.cost,
        problem.budget_bytes,
        problem.evaluate,
        problem.float_accuracy,
        metric="size_bytes",
    )


def search_size(
    problem: SizeProblem,
    method: str,
    episodes: int = PAPER_EPISODES,
    seed: int = 0,
    progress: Callable | None = None,
    dfq: Any = None,
    dfq_memo: dict | None = None,
) -> SizeSearch:
    """Run one method on ``problem``; ``episodes`` applies to haq and random, ``dfq`` (a
    :class:`~hwnas.quant.dfq.DFQConfig`, default: its defaults with ``seed``) to dfq, and
    ``dfq_memo`` shares DFQ's searches across budgets (see ``dfq_for_budget``).

    haq and random return their best-rewarded policy, or, where ``problem.select`` holds
    held-out images, the best there of their ``RESELECT_TOP`` best-rewarded ones
    (:func:`~hwnas.quant.haq.reselect`; ``details["reselected"]`` lists them)."""
    if method not in SIZE_METHODS:
        raise UserError(f"unknown size method {method!r}; known: {', '.join(SIZE_METHODS)}")
    problem.evaluate.reset_count()
    start = time.perf_counter()
    if method in ("haq", "random"):
        env = size_env(problem)
        if method == "haq":
            result = haq_search(env, HAQConfig(episodes=episodes, seed=seed), progress)
        else:
            result = random_search(env, episodes, seed, progress)
        seconds = time.perf_counter() - start
        best, details = result.best, {"reward_best_episode": result.best.episode}
        if problem.select is not None:
            best, details["reselected"] = reselect(result, problem.select, RESELECT_TOP)
        details.update(best_episode=best.episode, history=[r.to_dict() for r in result.history])
        return SizeSearch(
            method,
            tuple(int(b) for b in best.policy),
            problem.size_bytes(best.policy),
            best.accuracy,
            problem.evaluate.evaluated,
            len(result.history),
            seconds,
            seconds / len(result.history),
            details,
        )
    if method == "dfq":
        return _dfq(problem, seed, start, dfq, dfq_memo)
    run = greedy_sensitivity if method == "greedy" else uniform_policy
    found = run(problem.choices, problem.cost, problem.budget_bytes, problem.evaluate)
    details = dict(found.details)
    details["evaluations_counted"] = found.evaluations
    return SizeSearch(
        method,
        found.policy,
        problem.size_bytes(found.policy),
        found.accuracy,
        problem.evaluate.evaluated,
        0,
        time.perf_counter() - start,
        None,
        details,
    )


def _dfq(
    problem: SizeProblem, seed: int, start: float, config: Any, memo: dict | None
) -> SizeSearch:
    """DFQ (:mod:`hwnas.quant.dfq_budget`) over the same widths and priced sizes.

    ``policy`` is what fits: DFQ's own argmax, or its repair if the loosest loss constraint
    still missed the budget (``details``: ``own_policy``, ``repaired``, the probes).
    """
    from hwnas.quant.dfq import DFQConfig
    from hwnas.quant.dfq_budget import dfq_for_budget

    widths = problem.choices.levels[0]
    cost = [[problem.cost(i, b) for b in widths] for i in range(len(problem.names))]
    found = dfq_for_budget(
        problem.graph,
        problem.data,
        problem.budget_bytes,
        config=config or DFQConfig(seed=seed, device=problem.torch_device),
        candidates=widths,
        cost=cost,
        memo=memo,
    )
    policy = tuple(int(found.bits[n]) for n in problem.names)
    own = [int(found.own_bits[n]) for n in problem.names]
    return SizeSearch(
        "dfq",
        policy,
        problem.size_bytes(policy),
        problem.evaluate(list(policy)),
        problem.evaluate.evaluated,
        0,
        time.perf_counter() - start,
        None,
        {
            "own_policy": own,
            "own_size_bytes": problem.size_bytes(own),
            "repaired": found.repaired,
            "delta": found.delta,
            "probes": [list(p) for p in found.probes],
        },
    )


@dataclass(frozen=True)
class FinetunedSize:
    """A policy after the shared final fine-tune.

    Attributes:
        policy: weight bits per layer.
        size_bytes: priced size.
        codes: layer name -> WeightCode reproducing the fine-tuned model's weights exactly.
        accuracy: ``{"val": {"before": , "after": }, "test": {...}}`` in %.
        steps: fine-tune SGD steps.
        net: the fine-tuned :class:`CodedNet` (``coded_graph()`` gives weights and biases).
    """

    policy: tuple[int, ...]
    size_bytes: int
    codes: dict[str, WeightCode]
    accuracy: dict
    steps: int
    net: Any


def finetune_size(
    problem: SizeProblem, policy: Sequence[int], config: FinetuneConfig
) -> FinetunedSize:
    """Fine-tune ``policy`` (linear: STE; k-means: shared centroids) and encode the result."""
    data = problem.data
    net = CodedNet(problem.table, dict(zip(problem.names, policy))).to(problem.torch_device)
    before = {
        "val": accuracy(net, data.val_x, data.val_y),
        "test": accuracy(net, data.test_x, data.test_y),
    }
    finetune(net, data.train_x, data.train_y, config)
    after = {
        "val": accuracy(net, data.val_x, data.val_y),
        "test": accuracy(net, data.test_x, data.test_y),
    }
    return FinetunedSize(
        tuple(int(b) for b in policy),
        problem.size_bytes(policy),
        net.weight_codes(),
        {k: {"before": before[k], "after": after[k]} for k in ("val", "test")},
        config.steps,
        net,
    )
