"""Interleaved rounds, extra rounds for unstable models, and robust statistics."""

from __future__ import annotations

import pytest

from hwnas.lut.timing import (
    TimingSettings,
    chunked,
    is_stable,
    needs_round,
    robust_stats,
    time_models,
)
from tests.lut.fakes import FakeClient


def test_robust_stats_drop_disturbed_rounds_but_keep_the_minimum() -> None:
    rounds = [[1.0, 1.1, 1.2], [2.0, 2.1, 2.2], [1.02, 1.05, 1.1]]
    stats = robust_stats(rounds, clean=0.05)
    assert stats["rounds"] == 3 and stats["rounds_kept"] == 2 and stats["n"] == 6
    assert stats["min_ms"] == 1.0
    assert stats["median_ms"] == pytest.approx(1.075)
    assert stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"] <= 1.2
    everything = robust_stats(rounds, clean=10.0)
    assert everything["rounds_kept"] == 3 and everything["median_ms"] == pytest.approx(1.1)
    with pytest.raises(ValueError):
        robust_stats([[1.0], []])


def test_stability_compares_the_two_fastest_rounds() -> None:
    assert is_stable([[1.0]], 0.03)
    assert is_stable([[1.0, 1.5], [1.02], [3.0]], 0.03)
    assert not is_stable([[1.0], [1.1], [2.0]], 0.03)


def test_time_models_makes_one_call_per_model() -> None:
    client = FakeClient(lambda model, i: {b"a": 1.0, b"b": 2.0}[model] + i)
    settings = TimingSettings(warmup=3, repeats=4)
    first = time_models(client, [b"a", b"b"], settings)
    second = time_models(client, [b"a", b"b"], settings)
    assert client.calls == [b"a", b"b", b"a", b"b"]
    assert first.samples == [[1.0] * 4, [2.0] * 4] and second.samples == [[2.0] * 4, [3.0] * 4]
    assert first.runtime["name"] == "onnxruntime" and first.device_s >= 0


def test_needs_round_base_passes_then_only_unstable_models() -> None:
    settings = TimingSettings(rounds=3, max_extra_rounds=2, agree=0.03)
    assert needs_round([], 0, settings) and not needs_round([], 1, settings)
    assert needs_round([[1.0], [1.0]], 2, settings)  # base pass: always
    stable = [[1.0], [1.01], [1.5]]
    unstable = [[1.0], [1.2], [1.5]]
    assert not needs_round(stable, 3, settings) and needs_round(unstable, 3, settings)
    assert not needs_round(unstable, 4, settings)  # it must first get round 3
    assert not needs_round([*unstable, [1.3], [1.4]], 5, settings)  # extra rounds are bounded


def test_chunked() -> None:
    assert chunked([1, 2, 3, 4, 5], 2) == [[1, 2], [3, 4], [5]]
    assert chunked([], 3) == []
