"""The HAQ search loop: DDPG episodes over a :class:`~hwnas.quant.haq_env.HAQEnv`.

Each episode the agent picks every layer's bitwidths (latency mode: weight and activation bits;
size mode: weight bits), the environment walls the policy into the budget, scores it (latency
mode: short fine-tune; size mode: coded weights, no fine-tune; then validation accuracy) and
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

PAPER_EPISODES = 600  # HAQ's schedule (METHODS.md 6.2)


@dataclass(frozen=True)
class HAQConfig:
    """Search budget and agent settings.

    Attributes:
        episodes: total episodes (the paper: :data:`PAPER_EPISODES`).
        seed: seeds the agent and exploration.
        ddpg: agent hyperparameters (``warmup_episodes`` is capped at half the episodes).
    """

    episodes: int = PAPER_EPISODES
    seed: int = 0
    ddpg: DDPGConfig = field(default_factory=DDPGConfig)


@dataclass(frozen=True)
class EpisodeRecord:
    """One scored policy: per-layer bits after the wall, its cost, accuracy, reward.

    ``policy`` holds :class:`LayerBits` (latency mode) or ints, the weight bits (size mode);
    ``cost`` is in the unit ``metric`` names (``latency_ms`` or ``size_bytes``).
    """

    episode: int
    policy: tuple
    cost: float
    accuracy: float
    reward: float
    metric: str = "latency_ms"

    @property
    def latency_ms(self) -> float:
        """The predicted latency (latency mode only)."""
        if self.metric != "latency_ms":
            raise AttributeError(f"a {self.metric} episode has no latency_ms")
        return self.cost

    def to_dict(self) -> dict:
        out = {
            "episode": self.episode,
            self.metric: self.cost,
            "accuracy": self.accuracy,
            "reward": self.reward,
        }
        if all(isinstance(b, LayerBits) for b in self.policy):
            out["w_bits"] = [b.w_bits for b in self.policy]
            out["a_bits"] = [b.a_bits for b in self.policy]
        else:
            out["w_bits"] = [int(b) for b in self.policy]
        return out


def _record(episode: int, env: HAQEnv, info: dict, reward: float) -> EpisodeRecord:
    return EpisodeRecord(
        episode, tuple(info["policy"]), info["cost"], info["accuracy"], reward, env.metric
    )


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
        record = _record(episode, env, info, reward)
        history.append(record)
        logger.info(
            "episode %d: %s %.4g, acc %.2f, reward %.4f",
            episode,
            env.metric,
            record.cost,
            record.accuracy,
            reward,
        )
        if progress is not None:
            progress(record)
    return SearchResult(_best(history), tuple(history))


def _best(history: list[EpisodeRecord]) -> EpisodeRecord:
    """Highest reward; ties go to the cheaper policy, then the earlier episode."""
    return max(history, key=lambda r: (r.reward, -r.cost, -r.episode))


def reselect(
    result: SearchResult, score: Callable[[list], float], top: int
) -> tuple[EpisodeRecord, list[dict]]:
    """The best by ``score`` of the ``top`` best-rewarded distinct policies of ``result``.

    The best reward of hundreds of episodes, each scored on the same few validation images, is
    biased upward (the winner's curse: at 1,000 images one accuracy has a binomial std of about
    one point, more than the policies differ), so it over-states how good the chosen policy is.
    Re-scoring the top few on images the rewards never saw (``score``) and taking the best there
    removes most of that bias. Ties keep the reward order. Returns the chosen record (its
    ``accuracy`` is still the reward images') and, per re-scored policy, JSON-ready figures.
    """
    if top < 1:
        raise ValueError("reselect needs top >= 1")
    candidates: dict[tuple, EpisodeRecord] = {}
    for record in sorted(result.history, key=lambda r: (-r.reward, r.cost, r.episode)):
        candidates.setdefault(record.policy, record)
        if len(candidates) == top:
            break
    scored = [(score(list(record.policy)), record) for record in candidates.values()]
    best = max(scored, key=lambda pair: pair[0])[1]  # max keeps the first of equal scores
    return best, [
        {"episode": r.episode, "reward_accuracy": r.accuracy, "holdout_accuracy": s}
        for s, r in scored
    ]


def random_search(
    env: HAQEnv,
    episodes: int,
    seed: int = 0,
    progress: Callable[[EpisodeRecord], None] | None = None,
) -> SearchResult:
    """The same environment with uniform random actions (the baseline of HAQ's sanity check):
    random policies through the same action wall, so every one is feasible, best by reward."""
    rng = np.random.default_rng(seed)
    history = []
    for episode in range(episodes):
        _, reward, info = _episode(env, lambda s: float(rng.uniform()))
        history.append(_record(episode, env, info, reward))
        if progress is not None:
            progress(history[-1])
    return SearchResult(_best(history), tuple(history))
