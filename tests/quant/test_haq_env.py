"""``hwnas.quant.haq_env``: action mapping, action wall, device choices, episodes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import LayerBits
from hwnas.graph.wcodes import weight_bytes
from hwnas.quant.haq_env import (
    STATE_DIM,
    BitChoices,
    HAQEnv,
    WeightChoices,
    action_to_level,
    device_choices,
    enforce_budget,
    layer_infos,
    min_cost,
)
from tests.quant.conftest import SMALL_SPECS


def test_uniform_actions_give_equal_bins() -> None:
    levels = tuple(range(2, 9))
    actions = np.random.default_rng(0).uniform(size=70_000)
    counts = np.bincount([action_to_level(a, levels) for a in actions], minlength=9)[2:]
    np.testing.assert_allclose(counts / len(actions), 1 / 7, atol=0.01)
    assert action_to_level(0.0, levels) == 2 and action_to_level(1.0, levels) == 8
    assert action_to_level(0.49, (8, 32)) == 8 and action_to_level(0.51, (8, 32)) == 32


def _table(n: int, seed: int) -> tuple[BitChoices, callable]:
    """HAQ-like cost: grows with weight and activation bits, per-layer size."""
    rng = np.random.default_rng(seed)
    size = rng.uniform(1, 10, n)
    choices = BitChoices(((*range(2, 9),),) * n, ((*range(2, 9),),) * n)

    def cost(i: int, b: LayerBits) -> float:
        return float(size[i] * (b.w_bits + 0.5 * b.a_bits))

    return choices, cost


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 8), seed=st.integers(0, 10_000), ratio=st.floats(0.2, 1.2))
def test_wall_ends_within_budget_whenever_budget_reaches_min_cost(
    n: int, seed: int, ratio: float
) -> None:
    choices, cost = _table(n, seed)
    rng = np.random.default_rng(seed + 1)
    policy = [LayerBits(int(rng.integers(2, 9)), int(rng.integers(2, 9))) for _ in range(n)]
    full = sum(cost(i, LayerBits(8, 8)) for i in range(n))
    budget = ratio * full
    cheapest, _ = min_cost(choices, cost, n)
    walled = enforce_budget(policy, choices, cost, budget)
    total = sum(cost(i, b) for i, b in enumerate(walled))
    if budget >= cheapest:
        assert total <= budget + 1e-9
    else:
        assert total == pytest.approx(cheapest)
    if sum(cost(i, b) for i, b in enumerate(policy)) <= budget:
        assert walled == policy  # a policy that fits is left alone
    # the wall only lowers bits on a monotone table
    assert all(w.w_bits <= p.w_bits and w.a_bits <= p.a_bits for w, p in zip(walled, policy))


def test_haq_preserve_ratios_land_just_below_the_budget() -> None:
    choices, cost = _table(20, 3)
    full = sum(cost(i, LayerBits(8, 8)) for i in range(20))
    for ratio in (0.6, 0.4, 0.3):
        walled = enforce_budget([LayerBits(8, 8)] * 20, choices, cost, ratio * full)
        total = sum(cost(i, b) for i, b in enumerate(walled))
        assert ratio * full * 0.9 < total <= ratio * full


def test_wall_skips_steps_that_do_not_save_latency() -> None:
    # int8 slower than fp32 for layer 0, faster for layer 1 (as measured on some runtimes)
    table = [{"fp32": 1.0, "int8": 1.5}, {"fp32": 2.0, "int8": 1.0}]
    choices = device_choices(2, integer=True)

    def cost(i: int, b: LayerBits) -> float:
        return table[i][b.precision]

    walled = enforce_budget([LayerBits(32, 32)] * 2, choices, cost, 2.5)
    assert walled == [LayerBits(32, 32), LayerBits(8, 8)]
    walled = enforce_budget([LayerBits(8, 8), LayerBits(32, 32)], choices, cost, 2.0)
    assert walled == [LayerBits(32, 32), LayerBits(8, 8)]  # moves *up* to the cheaper float


def test_device_choices() -> None:
    float_only = device_choices(4, integer=False)
    assert all(o == [LayerBits(32, 32)] for o in map(float_only.options, range(4)))
    deploy = device_choices(4, integer=True, w_max=7)
    assert deploy.options(1) == [LayerBits(32, 32), LayerBits(7, 8)]
    sim = device_choices(4, integer=True, w_max=8, simulate_bits=True)
    assert LayerBits(2, 2) in sim.options(1) and LayerBits(32, 32) in sim.options(1)
    assert sim.options(0) == [LayerBits(32, 32), LayerBits(8, 8)]  # first/last keep 8 bits
    assert sim.options(3) == [LayerBits(32, 32), LayerBits(8, 8)]


def test_episode_walks_two_steps_per_layer_and_walls() -> None:
    graph = graph_from_module(build_sequential(SMALL_SPECS), SMALL_SPECS[0].in_shape)
    layers = layer_infos(graph)
    choices = device_choices(len(layers), integer=True, simulate_bits=True)
    seen = []

    def evaluate(policy):
        seen.append(policy)
        return 90.0 - sum(8 - min(b.w_bits, 8) for b in policy)

    def cost(i, b):
        return 1.0 if b.is_float else 0.5

    budget = 0.5 * len(layers) + 3  # at most 6 float layers
    env = HAQEnv(layers, choices, cost, budget, evaluate, reference_accuracy=90.0)
    state = env.reset()
    assert state.shape == (STATE_DIM,) and state.dtype == np.float32
    assert np.all((state >= 0) & (state <= 1))
    done, steps = False, 0
    while not done:
        state, reward, done, info = env.step(0.99)  # the top level: float everywhere
        steps += 1
    assert steps == 2 * len(layers)
    assert sum(b.is_float for b in info["policy"]) == 6  # walled from all-float
    assert info["latency_ms"] <= budget and len(seen) == 1
    assert reward == pytest.approx(0.1 * (info["accuracy"] - 90.0))


# -- size mode (HAQ's k-means experiments): one weight-bit action per layer ----------------------


def test_size_actions_map_to_bits_as_haqs_formula() -> None:
    levels = WeightChoices.uniform(1).levels[0]
    assert levels == tuple(range(2, 9))
    for a in np.linspace(0.001, 0.999, 997):
        haq = int(np.floor(2 - 0.5 + a * (8 - 2 + 1) + 0.5))  # round half up, as in python 2
        assert action_to_level(a, levels) == haq


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 10),
    seed=st.integers(0, 10_000),
    ratio=st.floats(0.05, 1.1),
    coding=st.sampled_from(["kmeans", "linear"]),
)
def test_size_wall_ends_within_budget_whenever_budget_reaches_min_size(
    n: int, seed: int, ratio: float, coding: str
) -> None:
    rng = np.random.default_rng(seed)
    params = rng.integers(20, 5000, n)
    cout = rng.integers(1, 64, n)
    choices = WeightChoices.uniform(n)

    def cost(i: int, bits: int) -> float:
        return float(weight_bytes(int(params[i]), int(cout[i]), bits, coding))

    policy = [int(b) for b in rng.integers(2, 9, n)]
    budget = ratio * sum(cost(i, 8) for i in range(n))
    smallest, cheapest = min_cost(choices, cost, n)
    assert cheapest == [2] * n
    walled = enforce_budget(policy, choices, cost, budget)
    total = sum(cost(i, b) for i, b in enumerate(walled))
    if budget >= smallest:
        assert total <= budget
    else:
        assert walled == [2] * n
    assert all(w <= p for w, p in zip(walled, policy))
    if sum(cost(i, b) for i, b in enumerate(policy)) <= budget:
        assert walled == policy
    else:  # HAQ's wall: sweeps from the last layer, one bit less per layer and sweep, so the
        # layers above the floor dropped K or K + 1 bits, the K + 1 ones at the end
        drops = [p - w for w, p in zip(walled, policy) if w > 2]
        assert drops == sorted(drops) and (not drops or drops[-1] - drops[0] <= 1)


def test_size_wall_lowers_last_layer_first_by_one_bit() -> None:
    choices = WeightChoices.uniform(3)

    def cost(i: int, bits: int) -> float:
        return 10.0 * bits

    assert enforce_budget([8, 8, 8], choices, cost, 230) == [8, 8, 7]
    assert enforce_budget([8, 8, 8], choices, cost, 220) == [8, 7, 7]
    assert enforce_budget([8, 8, 8], choices, cost, 210) == [7, 7, 7]
    assert enforce_budget([8, 8, 8], choices, cost, 200) == [7, 7, 6]
    assert enforce_budget([3, 8, 2], choices, cost, 60) == [2, 2, 2]


def test_size_episode_takes_one_action_per_layer() -> None:
    graph = graph_from_module(build_sequential(SMALL_SPECS), SMALL_SPECS[0].in_shape)
    layers = layer_infos(graph)
    n = len(layers)
    choices = WeightChoices.uniform(n)
    seen = []

    def evaluate(policy):
        seen.append(list(policy))
        return 80.0 - sum(8 - b for b in policy)

    def cost(i, bits):
        return float(weight_bytes(layers[i].params, layers[i].cout, bits, "kmeans"))

    budget = sum(cost(i, 6) for i in range(n))
    env = HAQEnv(layers, choices, cost, budget, evaluate, 80.0, metric="size_bytes")
    assert env.steps_per_episode == n
    env.reset()
    flags = []
    done = False
    while not done:
        flags.append(env.state()[8])
        _, reward, done, info = env.step(0.99)  # 8 bits everywhere: over the budget
    assert flags == [1.0] * n and len(seen) == 1
    assert info["size_bytes"] == info["cost"] <= budget
    assert all(b in range(2, 9) for b in info["policy"]) and min(info["policy"]) < 8
    assert reward == pytest.approx(0.1 * (info["accuracy"] - 80.0))
