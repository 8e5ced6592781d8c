"""Random search under the same constraints and training budget (the baseline of Li and
Talwalkar, "Random Search and Reproducibility for NAS", UAI 2019).

Each candidate is a uniform sample of the space pushed onto the budget by the same repair-and-fill
step Greedy-ADMM's derivation uses, with random preferences (:mod:`hwnas.search.derive`), so
candidates are feasible and use the budget as fully as the searched architectures do. The
``budget.steps`` training steps are split evenly over ``candidates`` networks, trained at the
space's search width; the one with the best validation accuracy wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from hwnas.errors import UserError
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult, Tried
from hwnas.search.derive import make_feasible
from hwnas.search.trainer import TrainConfig, evaluate, train_model
from hwnas.spaces.base import Arch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RandomSearchConfig:
    """Attributes:
    candidates: networks trained and compared (each gets ``budget.steps // candidates`` steps).
    """

    candidates: int = 5

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise UserError("random search needs at least 1 candidate")


def sample_feasible(problem: SearchProblem, rng: np.random.Generator) -> Arch:
    """A uniform sample of the space, repaired and filled to meet every constraint."""
    space = problem.space
    arch = space.sample_arch(rng)
    values = rng.random(space.alpha_shape)
    start = space.arch_vector(arch)
    if space.relaxation == "channel":
        start = space.cost_table("flops").keep_from_counts(start)
    return make_feasible(space, start, values, problem.constraints)


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
    archs = [sample_feasible(problem, rng) for _ in range(config.candidates)]
    tried: list[dict] = []
    if hooks.checkpoint is not None and (loaded := hooks.checkpoint.load("search")) is not None:
        tried = loaded[1]["tried"]
    n = b.eval_images
    for i in range(len(tried), config.candidates):
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
            _Sub(hooks, i * per, per * config.candidates),
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
    info = {"candidates": config.candidates, "steps_per_candidate": per, "best": best}
    return SearchResult(archs[best], (), tuple(Tried(**t) for t in tried), (), info)


METHODS.add(
    "random",
    MethodSpec(
        run,
        RandomSearchConfig,
        ("choice", "channel"),
        "random search: feasible samples trained briefly, best on validation",
    ),
)
