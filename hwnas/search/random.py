"""Random search under the same constraints and training budget (the baseline of Li and
Talwalkar, "Random Search and Reproducibility for NAS", UAI 2019).

Each candidate is a uniform sample of the space made feasible by the shared repair step with
random preferences (:mod:`hwnas.search.derive`) and, with ``fill_samples`` (the default), pushed
onto the budget by fill, so candidates use the budget as fully as a filled searched network
does. Sampling near the budget is part of this baseline (a uniform sample that is merely
feasible is mostly far below a tight budget); the winner is returned as the method's own
architecture, and it expresses no preferences (the pipeline never fills it again). The
``budget.steps`` training steps are split evenly over ``candidates`` networks, trained at the
space's search width; the one with the best validation accuracy wins.

With ``seconds`` set (an equal-wall-clock baseline: give it the time the compared method took),
candidates of ``budget.steps // candidates`` steps each are trained one after another until that
time is spent (at least one, at most ``max_candidates``), so a faster machine or a cheaper
candidate buys more samples, as it would for a user running random search for that long.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from hwnas.errors import UserError
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult, Tried
from hwnas.search.finalize import finalize
from hwnas.search.trainer import TrainConfig, evaluate, train_model
from hwnas.spaces.base import Arch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RandomSearchConfig:
    """Attributes:
    candidates: networks trained and compared (each gets ``budget.steps // candidates`` steps).
    fill_samples: push each feasible sample onto the budget (fill); False: repair only.
    seconds: wall-clock budget of the search (None: exactly ``candidates`` candidates).
    max_candidates: bound on the candidates trained within ``seconds``.
    """

    candidates: int = 5
    fill_samples: bool = True
    seconds: Optional[float] = None
    max_candidates: int = 1000

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.max_candidates < 1:
            raise UserError("random search needs at least 1 candidate")
        if self.seconds is not None and self.seconds <= 0:
            raise UserError("random search: seconds must be > 0")


def sample_feasible(problem: SearchProblem, rng: np.random.Generator, fill: bool = True) -> Arch:
    """A uniform sample of the space, repaired (and, ``fill``, filled) to meet every budget with
    random preferences: the shared step every method's architecture goes through
    (:func:`~hwnas.search.finalize.finalize`), on any relaxation (darts genotypes included)."""
    arch = problem.space.sample_arch(rng)
    values = rng.random(problem.space.alpha_shape)
    return finalize(problem, arch, values, fill).arch


class _Sub(Hooks):
    """Progress of one candidate mapped onto the whole search; no per-candidate checkpoints
    (an interrupted candidate is trained again from its start)."""

    def __init__(self, parent: Hooks, offset: int, total: int) -> None:
        super().__init__(stop_requested=parent.stop_requested)
        self.parent, self.offset, self.total = parent, offset, total

    def progress(self, done: int, total: int, status: dict | None = None) -> None:
        self.parent.progress(self.offset + done, self.total, status)


def run(problem: SearchProblem, config: RandomSearchConfig, hooks: Hooks) -> SearchResult:
    b, space = problem.budget, problem.space
    per = max(1, b.steps // config.candidates)
    rng = np.random.default_rng(b.seed)
    timed = config.seconds is not None
    total = config.max_candidates if timed else config.candidates
    tried: list[dict] = []
    if hooks.checkpoint is not None and (loaded := hooks.checkpoint.load("search")) is not None:
        tried = loaded[1]["tried"]
    archs: list[Arch] = [sample_feasible(problem, rng, config.fill_samples) for _ in tried]
    n = b.eval_images
    start = time.perf_counter()
    for i in range(len(tried), total):
        if timed and i > 0 and time.perf_counter() - start >= config.seconds:
            break
        archs.append(sample_feasible(problem, rng, config.fill_samples))
        net = space.build_net(archs[i], width=space.config.search_width, seed=b.seed + i)
        train = TrainConfig(
            steps=per,
            batch_size=b.batch_size,
            lr=b.lr,
            momentum=b.momentum,
            weight_decay=b.weight_decay,
            checkpoint_every=0,
            seed=b.seed + i,
        )
        train_model(
            net,
            problem.data.train_x,
            problem.data.train_y,
            train,
            _Sub(hooks, i * per, per * (len(archs) if timed else total)),
        )
        acc = evaluate(net, problem.data.val_x[:n], problem.data.val_y[:n])
        tried.append(
            {
                "arch": space.format_arch(archs[i]),
                "costs": problem.arch_costs(archs[i]),
                "val_accuracy": acc,
                "note": f"candidate {i}, {per} steps",
            }
        )
        log.info("candidate %d: val accuracy %.4f", i, acc)
        if hooks.checkpoint is not None:
            hooks.checkpoint.save("search", {}, {"step": (i + 1) * per, "tried": tried})
    best = int(np.argmax([t["val_accuracy"] for t in tried]))
    info = {
        "candidates": len(tried),
        "steps_per_candidate": per,
        "best": best,
        "seconds_budget": config.seconds,
    }
    return SearchResult(archs[best], (), tuple(Tried(**t) for t in tried), (), info)


METHODS.add(
    "random",
    MethodSpec(
        run,
        RandomSearchConfig,
        ("choice", "channel", "edge", "cell"),
        "random search: feasible samples trained briefly, best on validation",
    ),
)
