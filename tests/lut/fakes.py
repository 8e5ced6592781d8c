"""A deterministic stand-in for ``AgentClient`` for fast tests of build/validate logic."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

FINGERPRINT = {
    "cpu_model": "Fake CPU",
    "machine": "x86_64",
    "cores_logical": 2,
    "runtimes": {"onnxruntime": "1.32.0"},
}


@dataclass
class FakeMeasurement:
    samples_ms: tuple
    runtime: dict = field(default_factory=lambda: {"name": "onnxruntime", "version": "1.32.0"})
    settings: dict = field(default_factory=lambda: {"threads": 1, "core": 1, "affinity": [1]})
    fingerprint: dict = field(default_factory=lambda: dict(FINGERPRINT))


class FakeClient:
    """Times a model as ``latency(model, call_index)`` ms, every sample alike.

    Args:
        latency: (model bytes, how many times this model was measured before) -> ms.
        fail_after: raise a DeviceError on this measure call (1-based), like a dropped link.
    """

    def __init__(
        self,
        latency: Callable[[bytes, int], float],
        fail_after: int = 0,
        fingerprint: dict | None = None,
    ) -> None:
        self.latency = latency
        self.fail_after = fail_after
        self.calls: list[bytes] = []
        self._fingerprint = dict(fingerprint or FINGERPRINT)

    def fingerprint(self, core: int | None = None) -> dict:
        return dict(self._fingerprint)

    def measure(
        self,
        model: bytes,
        *,
        warmup: int,
        repeats: int,
        threads: int = 1,
        core: int | None = None,
        runtime: str | None = None,
        min_time_ms: float = 0.0,
    ) -> FakeMeasurement:
        from hwnas.errors import DeviceError

        self.calls.append(model)
        if self.fail_after and len(self.calls) >= self.fail_after:
            raise DeviceError("agent at fake: the agent closed the connection")
        value = self.latency(model, self.calls.count(model) - 1)
        runs = max(repeats, min(math.ceil(min_time_ms / value), 100_000)) if value > 0 else repeats
        return FakeMeasurement(tuple([value] * runs), fingerprint=dict(self._fingerprint))
