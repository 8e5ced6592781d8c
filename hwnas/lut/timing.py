"""Timing models on a device in rounds spread out in time, with robust statistics.

On a shared or throttled machine the speed drifts: within one call samples agree, but slow phases
of seconds to tens of seconds (another process on the core, the hypervisor taking the vCPU) make
every model measured during them 10-40 % slower, and a fast phase may follow. Measured on this
project's x86 VMs: with all rounds of a model within one second, whole groups of networks came out
30 % slow together. So build-lut and validate time every model in ``rounds`` *passes* over all
models (each model once per pass, one timed call of ``repeats`` runs), so that a model's rounds
lie a pass apart (a minute or more): a slow phase spoils one round, not all of them. A model whose
two fastest rounds disagree by more than ``agree`` gets extra rounds in later passes. Statistics:

* ``min_ms``: the fastest sample over all rounds, the most reproducible figure on a noisy host
  (two timings of the same 100 FBNet networks on a 16-core VM agreed within 5 % for 96 % of them
  in a quiet hour, medians for 50 %; in a busy hour 54 % and 29 %).
* ``median_ms``/``p10_ms``/``p90_ms``/``n``: over the samples of the *undisturbed* rounds, those
  whose median is within ``clean`` of the best round's median (on a quiet device: all rounds).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass(frozen=True)
class TimingSettings:
    """How each model is timed (all counts per round).

    Attributes:
        warmup: untimed runs before the timed runs of each round.
        repeats: timed runs per round (at least).
        min_time_ms: the agent keeps timing past ``repeats`` until the round's runs add up to
            this (0: exactly ``repeats``). Fast blocks then get hundreds of runs for a few ms of
            device time, which steadies their minimum and median; slow networks are unaffected.
        rounds: rounds (passes over all models) per model.
        max_extra_rounds: at most this many more rounds for a model whose best rounds disagree.
        agree: relative tolerance between the two fastest round minima.
        clean: a round is undisturbed if its median is within this of the best round median.
        threads: runtime threads (1: one pinned core).
        core: core to pin to (None: the agent's default).
        runtime: runtime name (None: the format's default).
    """

    warmup: int = 5
    repeats: int = 20
    min_time_ms: float = 0.0
    rounds: int = 3
    max_extra_rounds: int = 3
    agree: float = 0.03
    clean: float = 0.05
    threads: int = 1
    core: Optional[int] = None
    runtime: Optional[str] = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def robust_stats(rounds: Sequence[Sequence[float]], clean: float = 0.05) -> dict[str, Any]:
    """Statistics of per-round samples (ms); see the module docstring."""
    if not rounds or not all(len(r) for r in rounds):
        raise ValueError("every round needs at least one sample")
    medians = [float(np.median(r)) for r in rounds]
    best = min(medians)
    kept = [r for r, m in zip(rounds, medians) if m <= best * (1 + clean)]
    pooled = np.concatenate([np.asarray(r, float) for r in kept])
    p10, median, p90 = np.percentile(pooled, [10, 50, 90])
    return {
        "median_ms": float(median),
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        "min_ms": float(min(min(r) for r in rounds)),
        "n": int(pooled.size),
        "rounds": len(rounds),
        "rounds_kept": len(kept),
    }


def is_stable(rounds: Sequence[Sequence[float]], agree: float) -> bool:
    """True when the two fastest rounds' minima agree within ``agree`` (or only one round)."""
    mins = sorted(min(r) for r in rounds)
    return len(mins) < 2 or mins[1] <= mins[0] * (1 + agree)


@dataclass
class CallsTiming:
    """The raw outcome of one call per model: its samples (ms), and what the device said."""

    samples: list[list[float]]
    device_s: float
    runtime: dict
    settings: dict
    fingerprint: dict


def time_models(
    client: Any,
    models: Sequence[bytes],
    settings: TimingSettings,
    clock: Callable[[], float] = time.monotonic,
) -> CallsTiming:
    """One timed call per model on ``client`` (an ``AgentClient``), in order: one round each.

    Each call warms up with ``settings.warmup`` runs (the agent may have dropped the session since
    the model's last round), then times ``settings.repeats`` runs (more for a fast model, up to
    ``settings.min_time_ms`` of timed runs).
    """
    samples: list[list[float]] = []
    spent = 0.0
    last: Any = None
    for model in models:
        t0 = clock()
        last = client.measure(
            model,
            warmup=settings.warmup,
            repeats=settings.repeats,
            min_time_ms=settings.min_time_ms,
            threads=settings.threads,
            core=settings.core,
            runtime=settings.runtime,
        )
        spent += clock() - t0
        samples.append([float(s) for s in last.samples_ms])
    return CallsTiming(
        samples=samples,
        device_s=spent,
        runtime=dict(last.runtime) if last else {},
        settings=dict(last.settings) if last else {},
        fingerprint=dict(last.fingerprint) if last else {},
    )


def chunked(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive chunks of at most ``size``."""
    size = max(1, size)
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def needs_round(rounds: Sequence[Sequence[float]], index: int, settings: TimingSettings) -> bool:
    """Whether a model with ``rounds`` so far should be timed in pass ``index``.

    Passes ``0 .. rounds-1`` time every model; later passes (at most ``max_extra_rounds``) time
    only models that have exactly ``index`` rounds and whose fastest rounds still disagree.
    """
    if len(rounds) != index:
        return False
    return index < settings.rounds or (
        index < settings.rounds + settings.max_extra_rounds
        and not is_stable(rounds, settings.agree)
    )
