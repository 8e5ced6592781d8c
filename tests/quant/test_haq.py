"""``hwnas.quant.haq`` + ``ddpg``: HAQ's DDPG toy check (METHODS.md 6.5) and agent basics."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.graph.qparams import LayerBits
from hwnas.quant.ddpg import DDPGAgent, DDPGConfig, ReplayMemory
from hwnas.quant.haq import HAQConfig, haq_search, random_search
from hwnas.quant.haq_env import BitChoices, HAQEnv, LayerInfo

# 8 layers: "sensitivity" s_l and size p_l; fake accuracy = 100 - 100 * sum s_l 4^-bits_l,
# cost = sum p_l * bits_l, budget = half the 8-bit cost (METHODS.md 6.5)
PARAMS = np.array([4, 8, 2, 6, 3, 5, 7, 2])
SENSITIVITY = np.array([300, 2, 100, 1, 400, 3, 200, 1])


def _toy_env() -> HAQEnv:
    n = len(PARAMS)
    layers = [
        LayerInfo(f"l{i}", i, int(p), int(p), 1, 3, int(9 * p), 16, False)
        for i, p in enumerate(PARAMS)
    ]
    choices = BitChoices(((*range(2, 9),),) * n, ((8,),) * n)

    def cost(i: int, b: LayerBits) -> float:
        return float(PARAMS[i] * b.w_bits)

    def accuracy(policy: list[LayerBits]) -> float:
        return 100.0 - 100.0 * sum(s * 4.0**-b.w_bits for s, b in zip(SENSITIVITY, policy))

    return HAQEnv(layers, choices, cost, 0.5 * float(PARAMS.sum() * 8), accuracy, 100.0)


@pytest.mark.slow
def test_ddpg_beats_random_search_and_gives_sensitive_layers_more_bits() -> None:
    env = _toy_env()
    ddpg = haq_search(env, HAQConfig(episodes=200, seed=0))
    rand = random_search(env, 200, seed=0)
    assert ddpg.best.reward > rand.best.reward
    assert ddpg.best.latency_ms <= env.budget
    bits = np.array([b.w_bits for b in ddpg.best.policy])
    sensitive = SENSITIVITY >= 100
    assert bits[sensitive].mean() >= bits[~sensitive].mean() + 1.5
    late = np.mean([r.reward for r in ddpg.history[-20:]])
    assert late > np.mean([r.reward for r in rand.history])  # the agent learnt, not just luck


def test_actor_actions_and_exploration_stay_in_unit_interval() -> None:
    agent = DDPGAgent(10, 4, DDPGConfig(warmup_episodes=2), seed=0)
    state = np.random.default_rng(0).uniform(size=10).astype(np.float32)
    actions = [agent.act(state, e) for e in range(40)]
    assert all(0.0 <= a <= 1.0 for a in actions)
    assert 0.0 <= agent.greedy(state) <= 1.0


def test_updates_move_the_critic_towards_the_rewards() -> None:
    agent = DDPGAgent(10, 2, DDPGConfig(batch_size=8), seed=0)
    rng = np.random.default_rng(0)
    for _ in range(16):
        s = rng.uniform(size=10).astype(np.float32)
        agent.remember([(s, 0.3, s, True)], reward=-1.0)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    agent.update()
    assert agent.moving_average == pytest.approx(-1.0)
    assert any(not np.allclose(a, b.detach()) for a, b in zip(before, agent.critic.parameters()))


def test_replay_memory_is_a_ring() -> None:
    memory = ReplayMemory(3, 2)
    for i in range(5):
        memory.add(np.full(2, i, np.float32), i / 10, -i, np.zeros(2, np.float32), i == 4)
    assert len(memory) == 3
    states, actions, rewards, _, dones = memory.batch(np.arange(3))
    assert sorted(states[:, 0].tolist()) == [2.0, 3.0, 4.0]
    assert sorted(rewards.ravel().tolist()) == [-4.0, -3.0, -2.0]
    assert dones.sum() == 1 and actions.shape == (3, 1)


def test_reselect_rescores_the_top_rewarded_distinct_policies() -> None:
    from hwnas.quant.haq import EpisodeRecord, SearchResult, reselect

    def record(episode, policy, reward):
        return EpisodeRecord(episode, policy, 1.0, 80 + reward, reward, "size_bytes")

    history = (
        record(0, (8, 8), 0.5),
        record(1, (4, 8), 0.9),  # best reward: the winner's curse
        record(2, (4, 8), 0.9),  # the same policy again: re-scored once
        record(3, (8, 4), 0.7),
        record(4, (2, 2), 0.1),  # outside the top 3
    )
    result = SearchResult(history[1], history)
    holdout = {(8, 8): 70.0, (4, 8): 60.0, (8, 4): 75.0, (2, 2): 99.0}
    scored: list[tuple] = []

    def score(policy):
        scored.append(tuple(policy))
        return holdout[tuple(policy)]

    best, rows = reselect(result, score, top=3)
    assert best.episode == 3 and best.policy == (8, 4)
    assert sorted(scored) == [(4, 8), (8, 4), (8, 8)]
    assert [r["episode"] for r in rows] == [1, 3, 0]  # reward order
    assert rows[1] == {"episode": 3, "reward_accuracy": 80.7, "holdout_accuracy": 75.0}
    assert reselect(result, score, top=1)[0].episode == 1  # top 1: the reward's choice
    with pytest.raises(ValueError):
        reselect(result, score, top=0)
