"""The HAQ search loop: DDPG episodes over a :class:`~hwnas.quant.haq_env.HAQEnv`.

Each episode the agent picks every layer's weight and activation bitwidths, the environment
walls the policy into the latency budget, scores it (short fine-tune, validation accuracy) and
returns ``0.1 * (accuracy - float accuracy)``; past the warm-up the agent learns from the episode
(one DDPG update per transition). The best policy by reward is the result (Wang et al., CVPR
2019). :func:`random_search` runs the same environment with uniform random actions, the baseline
HAQ's agent must beat.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwnas.graph.qparams import LayerBits
from hwnas.quant.ddpg import DDPGAgent, DDPGConfig
from hwnas.quant.haq_env import STATE_DIM, HAQEnv

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HAQConfig:
    """Search budget and agent settings.

    Attributes:
        episodes: total episodes (HAQ: 600; each costs one short fine-tune here).
        seed: seeds the agent and exploration.
        ddpg: agent hyperparameters (``warmup_episodes`` is capped at half the episodes).
    """

    episodes: int = 30
    seed: int = 0
    ddpg: DDPGConfig = field(default_factory=DDPGConfig)


@dataclass(frozen=True)
class EpisodeRecord:
    """One scored policy: per-layer bits after the wall, predicted latency, accuracy, reward."""

    episode: int
    policy: tuple[LayerBits, ...]
    latency_ms: float
    accuracy: float
    reward: float

    def to_dict(self) -> dict:
        return {
            "episode": self.episode,
            "latency_ms": self.latency_ms,
            "accuracy": self.accuracy,
            "reward": self.reward,
            "w_bits": [b.w_bits for b in self.policy],
            "a_bits": [b.a_bits for b in self.policy],
        }


@dataclass(frozen=True)
class SearchResult:
    """The best episode and the whole history."""

    best: EpisodeRecord
    history: tuple[EpisodeRecord, ...]


def _episode(env: HAQEnv, choose: Callable[[np.ndarray], float]) -> tuple[list, float, dict]:
    state = env.reset()
    transitions = []
    while True:
        action = choose(state)
        next_state, reward, done, info = env.step(action)
        transitions.append((state, action, next_state, done))
        state = next_state
        if done:
            return transitions, reward, info


def haq_search(
    env: HAQEnv,
    config: HAQConfig,
    progress: Callable[[EpisodeRecord], None] | None = None,
) -> SearchResult:
    """Run ``config.episodes`` DDPG episodes; returns the best-rewarded policy and the history."""
    if config.episodes < 1:
        raise ValueError("HAQ needs at least one episode")
    warmup = min(config.ddpg.warmup_episodes, max(config.episodes // 2, 1))
    ddpg = DDPGConfig(**{**config.ddpg.__dict__, "warmup_episodes": warmup})
    agent = DDPGAgent(STATE_DIM, env.steps_per_episode, ddpg, seed=config.seed)
    history: list[EpisodeRecord] = []
    for episode in range(config.episodes):
        transitions, reward, info = _episode(env, lambda s, e=episode: agent.act(s, e))
        agent.remember(transitions, reward)
        if episode >= warmup:
            for _ in transitions:
                agent.update()
        record = EpisodeRecord(
            episode, tuple(info["policy"]), info["latency_ms"], info["accuracy"], reward
        )
        history.append(record)
        logger.info(
            "episode %d: %.3f ms, acc %.2f, reward %.4f",
            episode,
            record.latency_ms,
            record.accuracy,
            reward,
        )
        if progress is not None:
            progress(record)
    best = max(history, key=lambda r: (r.reward, -r.latency_ms))
    return SearchResult(best, tuple(history))


def random_search(env: HAQEnv, episodes: int, seed: int = 0) -> SearchResult:
    """The same environment with uniform random actions (the baseline of HAQ's sanity check)."""
    rng = np.random.default_rng(seed)
    history = []
    for episode in range(episodes):
        _, reward, info = _episode(env, lambda s: float(rng.uniform()))
        history.append(
            EpisodeRecord(
                episode, tuple(info["policy"]), info["latency_ms"], info["accuracy"], reward
            )
        )
    best = max(history, key=lambda r: (r.reward, -r.latency_ms))
    return SearchResult(best, tuple(history))
