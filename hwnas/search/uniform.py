"""Hand-designed baseline: MobileNetV2-like uniform blocks, scaled until they fit (no search).

MobileNetV2 (Sandler et al., CVPR 2018) uses the same block everywhere (3x3 depthwise,
expansion 6) and meets a budget with a width multiplier. Here:

* channel spaces (``ib-channel``): every block gets ``mid = t * 6 * cin`` channels of the 3x3
  kernel (rounded to the search granularity, at least one item where the block has no residual);
  the largest ``t`` in (0, 1] meeting every constraint is found by bisection (costs grow with t).
* layer-wise spaces (``fbnet``, whose op list fixes the widths): the largest uniform op of the
  MobileNetV2 ladder k3_e6, k3_e3, k3_e1 that fits; if none fits, the e1 network made shallower,
  turning the last non-first layers of the stages into skips until it fits (depth scaling).

It uses none of the training budget; the pipeline retrains its result like any other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwnas.errors import UserError
from hwnas.search.api import METHODS, Hooks, MethodSpec, SearchProblem, SearchResult
from hwnas.spaces.base import Arch

LADDER = (3, 2, 0)  # fbnet op indices of k3_e6, k3_e3, k3_e1
SKIP = 8
BISECTION_STEPS = 40


@dataclass(frozen=True)
class UniformConfig:
    """No hyperparameters: the rule is fixed (see the module docstring)."""


def _fits(problem: SearchProblem, arch: Arch) -> bool:
    return all(c.satisfied(arch) for c in problem.constraints)


def _channel_arch(problem: SearchProblem, t: float) -> Arch:
    space = problem.space
    table = space.cost_table("flops")
    g = table.granularity
    counts = np.zeros_like(table.max_units)
    for b, max_mid in enumerate(table.max_units[:, 0]):
        items = round(t * max_mid / g)
        counts[b, 0] = g * max(items, 1 if table.required[b] else 0)
    return space.arch_from_vector(counts)


def _choice_arch(problem: SearchProblem) -> tuple[Arch, str]:
    space = problem.space
    n = space.alpha_shape[0]
    for op in LADDER:
        arch = space.arch_from_vector(np.full(n, op))
        if _fits(problem, arch):
            return arch, f"uniform op {op}"
    from hwnas.spaces import fbnet_geometry as fb

    ops = np.full(n, LADDER[-1])
    starts = np.cumsum([0, *fb.STAGE_LAYERS[:-1]])
    # Deepest positions first: the last layer of every stage, then the one before...
    order = [
        s + k
        for k in range(max(fb.STAGE_LAYERS) - 1, 0, -1)
        for s, size in zip(starts, fb.STAGE_LAYERS)
        if k < size
    ]
    for position in order:
        ops[position] = SKIP
        arch = space.arch_from_vector(ops)
        if _fits(problem, arch):
            return arch, f"uniform k3_e1, {int((ops == SKIP).sum())} layers skipped"
    raise UserError("the uniform baseline cannot meet these budgets in this space")


def run(problem: SearchProblem, config: UniformConfig, hooks: Hooks) -> SearchResult:
    if problem.space.relaxation == "choice":
        arch, rule = _choice_arch(problem)
        hooks.progress(1, 1, {})
        return SearchResult(arch, info={"rule": rule})
    low, high = 0.0, 1.0
    if not _fits(problem, _channel_arch(problem, low)):
        raise UserError("the uniform baseline cannot meet these budgets in this space")
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if _fits(problem, _channel_arch(problem, mid)) else (low, mid)
    if _fits(problem, _channel_arch(problem, high)):
        low = high
    hooks.progress(1, 1, {})
    return SearchResult(_channel_arch(problem, low), info={"rule": f"k3, mid = {low:.4f} * 6 cin"})


METHODS.add(
    "uniform",
    MethodSpec(
        run,
        UniformConfig,
        ("choice", "channel"),
        "hand-designed MobileNetV2-like uniform blocks scaled to fit (no search)",
    ),
)
