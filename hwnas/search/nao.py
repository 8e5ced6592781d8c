"""NAO-WS under the device's budgets (Luo, Tian, Qin, Chen, Liu, "Neural Architecture
Optimization", NeurIPS 2018; METHODS.md §8), on the ``fbnet`` layers and the ``darts`` cells.

1. **Pool**: ``pool_size`` distinct random architectures, each repaired to meet every budget
   (and, with ``pool_fill``, filled onto it) with random preferences, as random search samples.
2. **Rounds** (``rounds``; the budget's ``steps`` split evenly): a single-path supernet is
   trained, each step on one pool architecture drawn uniformly (NAO-WS); then every pool
   architecture is evaluated with the shared weights on the same first ``eval_images``
   validation images (BN on batch statistics).
3. **Between rounds**: the controller (:mod:`hwnas.search.nao_model`) is trained on the pool:
   head 0 on the min-max normalised accuracy, one head per constraint on the exact cost / limit.
   The ``seed_archs`` best move up ``f_acc - cost_weight * mean_c f_cost_c`` (step sizes 1, 2,
   ...) and are decoded until ``new_archs`` are accepted. A decode is counted and dropped when
   it is already known, when its exact cost (LUT / analytic) breaks a budget
   (``info["rejected_over_budget"]``), or (``predictor_check``) when its score, accuracy
   predicted and cost exact, is not above its seed's. Accepted ones replace the pool's worst.
4. The best pool architecture at the last evaluation is the method's own: feasible by
   construction (every pool member is). ``optimize = False`` skips step 3: the best of the
   initial random pool under the same training (the benchmark's null control).

Hardware awareness: a learned cost head gives the step its direction (the decoder is discrete:
the exact cost has no gradient in embedding space); the exact cost gives the verdict and the
cost side of the check (the LUT prices any decoded architecture, so nothing over budget enters
the pool). Measured on the synthetic space of METHODS.md §8.3 (``tests/search/test_nao.py``,
tables 0-3): the plain step's decodes averaged below their seeds on 3 of 4 tables (the decoder
copies through attention; a common shift of its memory changes tokens nearly at random), the
predictor-checked ones (hwnas' addition) beat them on 3 of 4; raising ``cost_weight`` from 0 to
4 cut the over-budget share of decodes from 81 % to 18 % on one table and raised it from 46 %
to 70 % on another. NAO's step is weak; feasibility never depends on it.

Tokens: ``fbnet``: the 22 op indices (vocabulary 9); no symmetric augmentation, every layer's op
is its own. ``darts``: per node ``(source 1, op 1, source 2, op 2)``, 2 cells x 4 nodes = 32
tokens, vocabulary 5 sources + 7 ops, read in (source, op) pairs; sources legal per node, the two
of a node distinct, and the two pairs of a node swappable (NAO's augmentation). Not done: NAO's
final brief retraining of the top 5 to rerank, and checkpoints (an interrupted search restarts).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from hwnas.errors import UserError
from hwnas.search import nao_model as nm
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult, Tried
from hwnas.search.derive import Trace, make_feasible
from hwnas.search.trainer import BatchStream, cosine_lr, make_sgd, set_lr
from hwnas.spaces import darts_genotype as gt
from hwnas.spaces.base import Arch

log = logging.getLogger(__name__)
_SOURCES = gt.STEPS + 1  # darts: sources 0..4 are tokens 0..4, ops 1..7 are tokens 5..11
_ONES = torch.ones(len(gt.CELL_TYPES) * gt.STEPS, 2)  # darts: a weight per (node, pick)
VERDICTS = ("new", "seen", "rejected_over_budget", "rejected_by_predictor")


@dataclass(frozen=True)
class NAOConfig:
    """NAO-WS settings; the paper's value in brackets where the default is scaled for a CPU.

    Attributes:
        rounds: pool evaluations, one after each share of the steps [5: every 30 of 150 epochs].
        pool_size: architectures in the pool [600].
        seed_archs: best pool architectures moved in embedding space [100].
        new_archs: new architectures wanted per round [300].
        max_step_size: largest step size eta, tried as 1, 2, ... [50].
        controller_epochs: controller epochs per round, continuing the last round's [1000].
        controller_lr: Adam learning rate [1e-3; 1000 epochs of 6 batches].
        controller_batch, controller_weight_decay, grad_clip, trade_off: [100, 1e-4, 5, 0.8].
        embedding, hidden, mlp_layers, mlp_width, dropout: model sizes [48, 96, 3, 200, 0.1].
        cost_weight: mu in ``f_acc - mu * mean_c f_cost_c`` (0: the accuracy head alone).
        predictor_check: keep only decodes the predictor scores above their seed (hwnas).
        pool_fill: fill the pool's samples onto the budget (as random search does).
        optimize: False: no embedding optimisation (the null control).
    """

    rounds: int = 4
    pool_size: int = 100
    seed_archs: int = 25
    new_archs: int = 50
    max_step_size: int = 50
    controller_epochs: int = 100
    controller_lr: float = 3e-3
    controller_batch: int = 50
    controller_weight_decay: float = 1e-4
    grad_clip: float = 5.0
    trade_off: float = 0.8
    embedding: int = 48
    hidden: int = 96
    mlp_layers: int = 3
    mlp_width: int = 200
    dropout: float = 0.1
    cost_weight: float = 0.5
    predictor_check: bool = True
    pool_fill: bool = True
    optimize: bool = True

    def __post_init__(self) -> None:
        if self.rounds < 1 or self.pool_size < 2 or self.controller_epochs < 1:
            raise UserError("nao: rounds >= 1, pool_size >= 2 and controller_epochs >= 1")
        if not 1 <= self.seed_archs <= self.pool_size or not 1 <= self.new_archs < self.pool_size:
            raise UserError("nao: 1 <= seed_archs <= pool_size and 1 <= new_archs < pool_size")
        if self.max_step_size < 1 or self.cost_weight < 0 or not 0 <= self.trade_off <= 1:
            raise UserError("nao: max_step_size >= 1, cost_weight >= 0, 0 <= trade_off <= 1")


@dataclass(frozen=True)
class Encoding:
    """A space's token form (:class:`~hwnas.search.nao_model.TokenSpec`) and converters."""

    spec: nm.TokenSpec
    tokens: Callable[[Arch], np.ndarray]
    arch: Callable[[np.ndarray], Arch]


def encoding(problem: SearchProblem) -> Encoding:
    """The token encoding of ``problem.space`` (module docstring)."""
    space = problem.space
    if space.relaxation == "choice":
        legal = np.ones(space.alpha_shape, dtype=bool)
        return Encoding(nm.TokenSpec(legal), space.arch_vector, space.arch_from_vector)
    if space.relaxation != "cell":
        raise UserError(f"nao searches fbnet layers or darts cells, not space {space.name!r}")
    legal = np.zeros((2 * gt.PAIRS, _SOURCES + gt.NUM_OPS - 1), dtype=bool)
    for p in range(gt.PAIRS):
        legal[2 * p, : (p // 2) % gt.STEPS + 2] = True
        legal[2 * p + 1, _SOURCES:] = True
    nodes = range(0, 2 * gt.PAIRS, 4)
    spec = nm.TokenSpec(
        legal, 2, tuple((t, t + 2) for t in nodes), tuple((t, t + 2, 2) for t in nodes)
    )

    def tokens(arch: Arch) -> np.ndarray:
        return np.array([v for s, o in arch for v in (s, _SOURCES + o - 1)], dtype=np.int64)

    def arch(row: np.ndarray) -> Arch:
        pairs = [(int(row[t]), int(row[t + 1]) - _SOURCES + 1) for t in range(0, len(row), 2)]
        out = tuple(p for i in range(0, len(pairs), 2) for p in sorted(pairs[i : i + 2]))
        gt.check_genotype(out)
        return out

    return Encoding(spec, tokens, arch)


def _feasible(problem: SearchProblem, rng: np.random.Generator, fill: bool) -> Arch:
    """A uniform sample, repaired (and filled) with random preferences to meet every budget."""
    space = problem.space
    arch, values = space.sample_arch(rng), rng.random(space.alpha_shape)
    if space.relaxation == "cell":
        from hwnas.search.cell_repair import make_feasible_cells

        return make_feasible_cells(arch, values, problem.constraints, fill, Trace())
    return make_feasible(space, space.arch_vector(arch), values, problem.constraints, fill)


def _forward(problem: SearchProblem, net: nn.Module, x: torch.Tensor, arch: Arch) -> torch.Tensor:
    """Logits of ``arch``'s single path through the supernet (only its ops run)."""
    if problem.space.relaxation == "cell":  # per node its two (source, op) pairs, weight 1
        return net.forward_sparse(x, [arch[i : i + 2] for i in range(0, len(arch), 2)], _ONES)
    return net.forward_path(x, arch)


@torch.no_grad()
def _accuracies(problem, net, pool) -> np.ndarray:
    """Shared-weight accuracy of every pool architecture on the same validation images."""
    n = problem.budget.eval_images
    x, y = problem.data.val_x[:n], problem.data.val_y[:n]
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.momentum = 0.0  # batch statistics, running ones untouched
    try:
        return np.array(
            [float((_forward(problem, net, x, a).argmax(1) == y).float().mean()) for a in pool]
        )
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum


def _unit(values: np.ndarray) -> np.ndarray:
    """Min-max normalisation into [0, 1] (0.5 where all values are equal)."""
    span = values.max() - values.min()
    return np.full_like(values, 0.5) if span == 0 else (values - values.min()) / span


def _of_budget(problem: SearchProblem, archs: list) -> np.ndarray:
    """Exact cost / limit of every architecture and constraint, (N, C)."""
    return np.array([[c.value(a) / c.limit for c in problem.constraints] for a in archs])


def _grow(problem, config, code, model, opt, gen, pool, accs) -> tuple[list, dict]:
    """Train the controller on the pool and decode new feasible architectures from its best."""
    tokens = np.stack([code.tokens(a) for a in pool])
    targets = np.concatenate([_unit(accs)[:, None], _of_budget(problem, pool)], axis=1)
    settings = nm.FitSettings(
        config.controller_epochs, config.controller_batch, config.controller_lr,
        config.controller_weight_decay, config.grad_clip, config.trade_off,
    )  # fmt: skip
    fitted = nm.fit(model, opt, tokens, targets, settings, gen)
    heads = len(problem.constraints)
    weights = np.array([1.0] + [-config.cost_weight / max(heads, 1)] * heads)
    order = np.argsort(-accs, kind="stable")[: config.seed_archs]
    seeds = tokens[order]
    known, new = set(pool), []

    def accept(row: np.ndarray, gain: float) -> str:
        arch = code.arch(row)
        if arch in known:
            return "seen"
        known.add(arch)
        if not all(c.satisfied(arch) for c in problem.constraints):
            return "rejected_over_budget"
        if config.predictor_check and gain <= 0:
            return "rejected_by_predictor"
        new.append(arch)
        return "new"

    def exact(rows: np.ndarray) -> np.ndarray:  # the LUT prices any decoded arch exactly
        return _of_budget(problem, [code.arch(row) for row in rows])

    heads_exact = exact if problem.constraints else None
    stats = nm.generate(
        model, seeds, weights, config.new_archs, accept, config.max_step_size, heads_exact
    )
    stats.update(fitted, reconstruction=nm.reconstruction(model, tokens))
    stats["pairwise_train"] = nm.pairwise_accuracy(nm.predict(model, tokens)[:, 0], accs)
    return new, stats


def _initial_pool(problem: SearchProblem, config: NAOConfig, rng: np.random.Generator) -> list:
    """Up to ``pool_size`` distinct feasible samples (20 draws per place at most)."""
    pool: list[Arch] = []
    for _ in range(20 * config.pool_size):
        arch = _feasible(problem, rng, config.pool_fill)
        if arch not in pool:
            pool.append(arch)
        if len(pool) == config.pool_size:
            break
    return pool


def _train(problem, net, opt, stream, pool, rng, steps: range, hooks, clip: float, r: int) -> None:
    """Single-path supernet steps, each on one pool architecture drawn uniformly (NAO-WS)."""
    b = problem.budget
    for step in steps:
        set_lr(opt, cosine_lr(b.lr, step, b.steps))
        x, y = stream.batch(step)
        arch = pool[rng.integers(len(pool))]
        loss = nn.functional.cross_entropy(_forward(problem, net, x, arch), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        status = {"round": r, "ce_train": loss.item()}
        hooks.step_done(step + 1, b.steps, status, lambda: None, 0)  # no checkpoints


def run(problem: SearchProblem, config: NAOConfig, hooks: Hooks) -> SearchResult:
    """NAO-WS (module docstring); the best pool architecture of the last round is returned."""
    space, b, data = problem.space, problem.budget, problem.data
    if min(b.eval_images, len(data.val_x)) < 1:
        raise UserError("nao evaluates its pool on validation images: eval_images >= 1")
    code, rng = encoding(problem), np.random.default_rng(b.seed)
    pool = _initial_pool(problem, config, rng)
    born = dict.fromkeys(pool, 0)  # round that added each architecture (0: the initial pool)
    torch.manual_seed(b.seed)
    net = space.build_supernet(b.seed)
    opt = make_sgd(net.parameters(), b.lr, b.momentum, b.weight_decay)
    stream = BatchStream(data.train_x, data.train_y, b.batch_size, b.seed)
    model = nm.Controller(
        code.spec, 1 + len(problem.constraints), config.embedding, config.hidden,
        config.mlp_layers, config.mlp_width, config.dropout,
    )  # fmt: skip
    copt = torch.optim.Adam(
        model.parameters(), config.controller_lr, weight_decay=config.controller_weight_decay
    )
    gen = torch.Generator().manual_seed(b.seed)
    history, seen, totals = [], {}, Counter()
    for r in range(config.rounds):
        t0 = time.perf_counter()
        steps = range(b.steps * r // config.rounds, b.steps * (r + 1) // config.rounds)
        _train(problem, net, opt, stream, pool, rng, steps, hooks, config.grad_clip, r)
        accs = _accuracies(problem, net, pool)
        seen.update({a: (float(acc), r, born[a]) for a, acc in zip(pool, accs)})
        best = int(np.argmax(accs))
        row = {"step": steps.stop, "round": r, "val_best": float(accs[best])}
        row.update(val_mean=float(accs.mean()), best_added_in_round=born[pool[best]])
        row.update({f"disparity_{c.metric}": c.disparity(pool[best]) for c in problem.constraints})
        if config.optimize and r < config.rounds - 1:
            new, stats = _grow(problem, config, code, model, copt, gen, pool, accs)
            worst = set(np.argsort(accs, kind="stable")[: len(new)].tolist())
            pool = [a for i, a in enumerate(pool) if i not in worst] + new
            born.update(dict.fromkeys(new, r + 1))
            row.update(stats)
            totals.update({k: stats.get(k, 0) for k in VERDICTS})
        history.append({**row, "seconds": time.perf_counter() - t0})
        log.info("nao round %d: best val %.4f, %s", r, accs[best], dict(totals))
    arch = pool[best]
    tried = tuple(
        Tried(space.format_arch(a), problem.arch_costs(a), acc, f"round {r}, added in {g}")
        for a, (acc, r, g) in seen.items()
    )
    info = {
        "method": "nao", "rounds": config.rounds, "optimize": config.optimize,
        "initial_pool": len(born) - totals["new"], "generated": totals["new"],
        "duplicates": totals["seen"], "rejected_over_budget": totals["rejected_over_budget"],
        "rejected_by_predictor": totals["rejected_by_predictor"],
        "best_added_in_round": born[arch], "best_val_accuracy": float(accs[best]),
    }  # fmt: skip
    return SearchResult(arch, tuple(history), tried, (), info, _preferences(problem, pool, accs))


def _preferences(problem: SearchProblem, pool: list, accs: np.ndarray) -> np.ndarray:
    """Per choice, the mean normalised accuracy of the pool architectures that make it (0 where
    none does): what repair and fill rank their changes by."""
    total, count = np.zeros(problem.space.alpha_shape), np.zeros(problem.space.alpha_shape)
    for arch, acc in zip(pool, _unit(accs)):
        vector = problem.space.arch_vector(arch)
        total[np.arange(len(vector)), vector] += acc
        count[np.arange(len(vector)), vector] += 1
    values = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    if problem.space.relaxation == "cell":
        values[:, 0] = 0.0
    return values


METHODS.add(
    "nao",
    MethodSpec(
        run,
        NAOConfig,
        ("choice", "cell"),
        "NAO-WS: encoder-predictor-decoder moves the best pool archs; decodes over budget rejected",
    ),
)
