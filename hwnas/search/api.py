"""The search-method interface: what a method gets, what it returns, and the ``METHODS`` registry.

A method is a function ``run(problem, config, hooks) -> SearchResult``:

* ``problem`` (:class:`SearchProblem`): a space, training/validation tensors, the constraints
  (each a cost model and a limit; the method never sees a device) and a :class:`SearchBudget`;
* ``config``: the method's own frozen dataclass of hyperparameters (``MethodSpec.config_cls``);
* ``hooks`` (:class:`Hooks`): progress reporting and a checkpoint store for resuming.

It returns its own derived discrete architecture (which may violate a budget: the shared
repair step in :mod:`hwnas.search.finalize` fixes that, and the report shows both), its
preferences over the architecture parameters, and a JSON-ready history.
Register with ``METHODS.add(name, MethodSpec(...))`` in the method's module, and name that module
in ``METHODS``' built-in table (the registry imports it by name when the method is first asked
for; this module never imports a method). The registry-parametrized smoke test then runs it on a
toy problem.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from hwnas.errors import UserError
from hwnas.registry import Registry

if TYPE_CHECKING:
    import numpy as np
    import torch

    from hwnas.costs.models import Constraint, CostModel
    from hwnas.search.checkpoint import CheckpointStore
    from hwnas.spaces.base import Arch, Space


@dataclass(frozen=True)
class SearchBudget:
    """Compute a search may spend, shared by every method (so baselines get the same budget).

    Attributes:
        steps: training steps in total (supernet steps, or candidate steps summed).
        warmup_steps: weight-only steps before architecture parameters move (supernet methods).
        batch_size: images per step.
        lr: initial weight learning rate (SGD, momentum, cosine decay to 0 over ``steps``).
        momentum: SGD momentum.
        weight_decay: L2 on weights.
        eval_every: steps between validation evaluations (0: only at the end).
        eval_images: validation images per evaluation (the first ones of the val split).
        checkpoint_every: steps between checkpoint writes (and always on Ctrl-C).
        seed: seeds weight init, batch order and every random choice.
    """

    steps: int = 200
    warmup_steps: int = 40
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    eval_every: int = 50
    eval_images: int = 500
    checkpoint_every: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or not 0 <= self.warmup_steps < self.steps:
            raise UserError("search budget: steps >= 1, batch_size >= 1, 0 <= warmup_steps < steps")


@dataclass(frozen=True)
class SearchData:
    """Tensors the search trains and validates on: images (N, 3, H, W) float32, labels (N,) int64.

    ``source`` names what they were drawn from without the run seed (dataset, folder,
    resolution, sizes); results that depend only on that, such as DCA's lookup graph, are then
    shared by every seed's split. Empty: only these very tensors identify the data.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    source: str = ""


@dataclass(frozen=True)
class SearchProblem:
    """Everything a method may use.

    Attributes:
        space: the search space instance.
        data: training and validation tensors.
        constraints: budgets the returned architecture must meet.
        budget: the compute budget.
        costs: every cost model available (for reporting the costs of tried architectures).
    """

    space: Space
    data: SearchData
    constraints: tuple[Constraint, ...]
    budget: SearchBudget
    costs: dict[str, CostModel] = field(default_factory=dict)

    def arch_costs(self, arch: Arch) -> dict[str, float]:
        """Exact cost of ``arch`` under every available cost model (metric -> value)."""
        return {m: float(model.discrete(arch)) for m, model in self.costs.items()}


@dataclass(frozen=True)
class Tried:
    """One architecture the method looked at (for the accuracy-vs-latency plot)."""

    arch: str
    costs: dict[str, float]
    val_accuracy: Optional[float]
    note: str = ""


@dataclass(frozen=True)
class SearchResult:
    """What a method returns.

    Attributes:
        arch: the method's own derived architecture, before any shared repair or fill (it may
            violate a budget; the pipeline repairs it and reports both).
        history: JSON rows, one per logged step (``step`` plus method-specific numbers, e.g.
            ``disparity_<metric>``).
        tried: architectures evaluated along the way.
        snapshots: ``{"step": t, "alpha": [...]}`` samples of the architecture parameters.
        info: method-specific facts for the report (JSON-ready).
        values: preferences shaped like the architecture parameters (higher: more wanted),
            which rank repair's and fill's changes; None: the method has none (fill then does
            not apply to its architecture).
    """

    arch: Arch
    history: tuple[dict, ...] = ()
    tried: tuple[Tried, ...] = ()
    snapshots: tuple[dict, ...] = ()
    info: dict = field(default_factory=dict)
    values: Optional[np.ndarray] = None


class Hooks:
    """Callbacks a method calls. The default does nothing and keeps no checkpoint.

    Loops call :meth:`step_done` after every *complete* step: it reports progress and, when a
    stop was requested (Ctrl-C in the CLI) or the progress callback raises KeyboardInterrupt,
    saves a checkpoint through ``save`` first, so a resumed run repeats no half-done step.

    Args:
        progress: ``progress(done, total, status)`` after each step (status: a few numbers).
        checkpoint: where to save and load resumable state (None: no checkpoints).
        stop_requested: polled after each step; True stops the run resumably.
    """

    def __init__(
        self,
        progress: Optional[Callable[[int, int, dict], None]] = None,
        checkpoint: Optional[CheckpointStore] = None,
        stop_requested: Optional[Callable[[], bool]] = None,
    ) -> None:
        self._progress = progress
        self.checkpoint = checkpoint
        self.stop_requested = stop_requested

    def progress(self, done: int, total: int, status: Optional[dict] = None) -> None:
        if self._progress is not None:
            self._progress(done, total, status or {})

    def step_done(
        self, done: int, total: int, status: dict, save: Callable[[], None], every: int
    ) -> None:
        """Report step ``done``; checkpoint every ``every`` steps and before stopping."""
        if self.checkpoint is not None and every and done % every == 0:
            save()
        try:
            self.progress(done, total, status)
            if self.stop_requested is not None and self.stop_requested():
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            if self.checkpoint is not None:
                save()
            raise


@dataclass(frozen=True)
class MethodSpec:
    """A registered search method.

    Attributes:
        run: ``run(problem, config, hooks) -> SearchResult``.
        config_cls: frozen dataclass of its hyperparameters (all fields have defaults).
        relaxations: space relaxations it supports (``"choice"``, ``"channel"``, ``"edge"``,
            ``"cell"``).
        summary: one line for ``--help`` and error messages.
    """

    run: Callable[[SearchProblem, Any, Hooks], SearchResult]
    config_cls: type
    relaxations: tuple[str, ...]
    summary: str


METHODS: Registry[MethodSpec] = Registry(
    "search method",
    builtin={
        "darts": "hwnas.search.darts",
        "dca": "hwnas.search.dca",
        "dsnas": "hwnas.search.dsnas",
        "dso": "hwnas.search.dso",
        "fbnet-gumbel": "hwnas.search.fbnet_gumbel",
        "greedy-admm": "hwnas.search.greedy_admm",
        "ista": "hwnas.search.ista",
        "nao": "hwnas.search.nao",
        "proxyless": "hwnas.search.proxyless",
        "random": "hwnas.search.random",
        "uniform": "hwnas.search.uniform",
    },
)


def get_method(name: str) -> MethodSpec:
    """The method registered as ``name`` (a built-in's module is imported on first use)."""
    return METHODS.get(name)


def list_methods() -> list[str]:
    return METHODS.names()


DEFAULT_METHODS = ("greedy-admm", "dca")
"""Preference order of the method a run gets when it names none: the first that supports the
space's relaxation (greedy-admm on ``fbnet``/``ib-channel``, dca on ``darts``; otherwise the
first registered method that does: dso on ``dso``)."""


def default_method(space: str) -> str:
    """The method ``hwnas search`` uses on ``space`` when ``--method`` is not given."""
    from hwnas.spaces.base import space_class

    relaxation = space_class(space).relaxation
    for name in (*DEFAULT_METHODS, *list_methods()):
        if relaxation in get_method(name).relaxations:
            return name
    raise UserError(f"no search method works on space {space!r} ({relaxation} relaxation)")


def method_config(spec: MethodSpec, values: dict) -> Any:
    """Build ``spec.config_cls`` from a dict; unknown keys raise a UserError naming the known."""
    known = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(
            f"unknown method setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    return spec.config_cls(**values)


def check_supported(spec: MethodSpec, name: str, space: Space) -> None:
    if space.relaxation not in spec.relaxations:
        raise UserError(
            f"method {name!r} does not work on space {space.name!r} ({space.relaxation} "
            f"relaxation); it supports: {', '.join(spec.relaxations)}"
        )
