"""HAQ's DDPG agent (Lillicrap et al., ICLR 2016) with HAQ's settings (``lib/rl/ddpg.py``).

* Actor: MLP 10 -> 300 -> 300 -> 1, ReLU, sigmoid output (the action in [0, 1]).
* Critic: the state and the action are projected to 300 units each and summed, ReLU, 300 -> 300,
  ReLU, -> 1.
* Adam (actor lr 1e-4, critic lr 1e-3), soft target updates tau = 0.01, batch 64, replay memory
  of 128 episodes, discount 1 (the reward is given once per episode and copied to each of its
  transitions).
* Exploration: uniform random actions for the warm-up episodes, then a normal around the actor's
  action truncated to [0, 1], sigma = 0.5 * 0.99 ** (episode - warmup).
* The critic target subtracts a moving average of the rewards (alpha = 0.5) as a baseline.
* One update per stored transition after each episode (past the warm-up).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class DDPGConfig:
    """DDPG hyperparameters (HAQ's defaults)."""

    hidden: int = 300
    lr_actor: float = 1e-4
    lr_critic: float = 1e-3
    tau: float = 0.01  # soft target update
    batch_size: int = 64
    replay_episodes: int = 128  # memory holds this many episodes of transitions
    warmup_episodes: int = 20  # uniform random actions first
    sigma: float = 0.5  # initial exploration noise
    sigma_decay: float = 0.99  # per episode after the warm-up
    moving_alpha: float = 0.5  # reward baseline
    discount: float = 1.0


class Actor(nn.Module):
    def __init__(self, state_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
            nn.Sigmoid(),
        )

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.net(state)


class Critic(nn.Module):
    def __init__(self, state_dim: int, hidden: int) -> None:
        super().__init__()
        self.state_in = nn.Linear(state_dim, hidden)
        self.action_in = nn.Linear(1, hidden)
        self.out = nn.Sequential(
            nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.out(self.state_in(state) + self.action_in(action))


class ReplayMemory:
    """A ring buffer of transitions (state, action, reward, next state, done) in numpy arrays."""

    def __init__(self, capacity: int, state_dim: int) -> None:
        self.capacity = capacity
        self.states = np.zeros((capacity, state_dim), np.float32)
        self.next_states = np.zeros((capacity, state_dim), np.float32)
        self.scalars = np.zeros((capacity, 3), np.float32)  # action, reward, done
        self.size = 0
        self.pos = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self, state: np.ndarray, action: float, reward: float, next_state: np.ndarray, done: bool
    ) -> None:
        self.states[self.pos] = state
        self.next_states[self.pos] = next_state
        self.scalars[self.pos] = (action, reward, float(done))
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def batch(self, idx: np.ndarray) -> tuple[np.ndarray, ...]:
        """(states, actions (B, 1), rewards (B, 1), next states, dones (B, 1)) at ``idx``."""
        sc = self.scalars[idx]
        return (
            self.states[idx],
            sc[:, :1].copy(),
            sc[:, 1:2].copy(),
            self.next_states[idx],
            sc[:, 2:].copy(),
        )


class DDPGAgent:
    """Acts on HAQ states and learns from finished episodes.

    Args:
        state_dim: length of a state vector (10 for HAQ).
        steps_per_episode: transitions per episode (2 x layers), sizes the replay memory.
        config: hyperparameters.
        seed: seeds the networks' init and all sampling.
    """

    def __init__(
        self, state_dim: int, steps_per_episode: int, config: DDPGConfig, seed: int = 0
    ) -> None:
        self.config = config
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        self.actor = Actor(state_dim, config.hidden)
        self.critic = Critic(state_dim, config.hidden)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=config.lr_actor)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.lr_critic)
        self.memory = ReplayMemory(config.replay_episodes * steps_per_episode, state_dim)
        self.moving_average: float | None = None

    def act(self, state: np.ndarray, episode: int) -> float:
        """Action in [0, 1] for ``state`` during episode ``episode`` (0-based)."""
        c = self.config
        if episode < c.warmup_episodes:
            return float(self.rng.uniform())
        with torch.no_grad():
            mean = float(self.actor(torch.from_numpy(state)[None]).item())
        sigma = c.sigma * c.sigma_decay ** (episode - c.warmup_episodes)
        return self._truncated_normal(mean, sigma)

    def greedy(self, state: np.ndarray) -> float:
        """The actor's action without exploration noise."""
        with torch.no_grad():
            return float(self.actor(torch.from_numpy(state)[None]).item())

    def _truncated_normal(self, mean: float, sigma: float) -> float:
        for _ in range(100):
            value = self.rng.normal(mean, sigma)
            if 0.0 <= value <= 1.0:
                return float(value)
        return float(np.clip(mean, 0.0, 1.0))

    def remember(
        self, transitions: list[tuple[np.ndarray, float, np.ndarray, bool]], reward: float
    ) -> None:
        """Store one episode's (state, action, next state, done), each with the episode reward."""
        for state, action, next_state, done in transitions:
            self.memory.add(state, action, reward, next_state, done)

    def update(self) -> None:
        """One critic and one actor gradient step on a random batch, then soft target updates."""
        c = self.config
        if len(self.memory) < c.batch_size:
            return
        idx = self.rng.choice(len(self.memory), size=c.batch_size, replace=False)
        s, a, r, s2, done = (torch.from_numpy(x) for x in self.memory.batch(idx))
        mean_r = float(r.mean())
        if self.moving_average is None:
            self.moving_average = mean_r
        self.moving_average += c.moving_alpha * (mean_r - self.moving_average)
        with torch.no_grad():
            next_q = self.critic_target(s2, self.actor_target(s2))
            target = (r - self.moving_average) + c.discount * (1.0 - done) * next_q
        critic_loss = nn.functional.mse_loss(self.critic(s, a), target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        actor_loss = -self.critic(s, self.actor(s)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        with torch.no_grad():
            for net, target_net in (
                (self.actor, self.actor_target),
                (self.critic, self.critic_target),
            ):
                torch._foreach_lerp_(list(target_net.parameters()), list(net.parameters()), c.tau)
