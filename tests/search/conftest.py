"""Shared fixtures: one torch thread per test, and tiny real search problems on ``digits``."""

from __future__ import annotations

import pytest
import torch

from hwnas.costs.latency import load_latency_predictor
from hwnas.costs.models import make_constraints, make_cost_models
from hwnas.data import DataConfig, load_dataset
from hwnas.search.api import SearchBudget, SearchData, SearchProblem
from hwnas.spaces.base import SpaceConfig, create_space
from hwnas.spaces.darts import DartsSpace


@pytest.fixture(autouse=True)
def one_torch_thread():
    """On a shared 2-core machine more threads oversubscribe (and run many times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits_data() -> SearchData:
    """sklearn digits at their native 8 x 8 (the supernets run at any resolution)."""
    splits = load_dataset(DataConfig("digits", resolution=8, seed=0))
    return SearchData(*splits.train.tensors, *splits.val.tensors)


@pytest.fixture(scope="session")
def pi4():
    return load_latency_predictor("pi4", "fbnet")


@pytest.fixture
def make_problem(digits_data, pi4):
    """``make_problem(space, fraction=0.5, steps=6, **budget)``: a latency budget at ``fraction``
    of the space's feasible range on the Pi 4 reference LUT, digits data, a tiny budget."""

    def make(space_name: str, fraction: float = 0.5, steps: int = 6, **budget) -> SearchProblem:
        return _problem(space_name, digits_data, pi4, fraction, steps, **budget)

    return make


def _problem(
    space_name: str, data: SearchData, predictor, fraction: float, steps: int, **budget
) -> SearchProblem:
    if space_name == "darts":  # no reference LUT prices darts: a 3-cell net, a FLOPs budget
        space = DartsSpace(SpaceConfig(32, 10, 0.25), cells=3)
        costs, metric = make_cost_models(space), "flops"
    elif space_name == "dso":  # no reference LUT prices dso either: a FLOPs budget
        space = create_space(space_name, SpaceConfig(32, 10, 0.25))
        costs, metric = make_cost_models(space), "flops"
    else:
        space = create_space(space_name, SpaceConfig(32, 10, 0.25))
        costs, metric = make_cost_models(space, predictor), "latency_ms"
    low, high = costs[metric].bounds()
    limits = {metric: low + fraction * (high - low)}
    options = {
        "steps": steps,
        "warmup_steps": 2,
        "batch_size": 16,
        "eval_every": 3,
        "eval_images": 32,
        "checkpoint_every": 2,
        **budget,
    }
    return SearchProblem(
        space, data, make_constraints(costs, limits), SearchBudget(**options), costs
    )
