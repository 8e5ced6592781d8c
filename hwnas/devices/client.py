"""The protocol client: requests, model upload with caching, measurements as plain data."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from device_agents import PROTOCOL_VERSION
from device_agents.arrays import decode_array, encode_array
from hwnas.devices.channels import Channel
from hwnas.devices.stats import LatencyStats, summarize
from hwnas.errors import DeviceError

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0


class AgentError(DeviceError):
    """The agent answered with an error; ``code`` is its machine-readable reason."""

    def __init__(self, label: str, code: str, message: str) -> None:
        super().__init__(f"{label}: {message} [{code}]")
        self.code = code


class AgentBusy(AgentError):
    """The agent refused the connection for capacity (``busy``); trying again later may work."""

    def __init__(self, label: str, message: str) -> None:
        DeviceError.__init__(self, f"{label} is busy: {message}; try again")
        self.code = "busy"
        self.reason = message


def agent_error(label: str, error: Any) -> AgentError:
    """The exception for an error reply's ``error`` object."""
    err = error if isinstance(error, dict) else {}
    code, message = str(err.get("code")), str(err.get("message"))
    return AgentBusy(label, message) if code == "busy" else AgentError(label, code, message)


@dataclass(frozen=True)
class Measurement:
    """One timed model: raw samples (ms), their statistics and what they were measured with."""

    samples_ms: tuple[float, ...]
    stats: LatencyStats
    model_sha256: str
    runtime: dict
    settings: dict
    fingerprint: dict
    load_ms: float
    truncated: bool
    device: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self, with_samples: bool = True) -> dict:
        out = {
            "device": self.device,
            **self.stats.to_dict(),
            "model_sha256": self.model_sha256,
            "runtime": self.runtime,
            "settings": self.settings,
            "fingerprint": self.fingerprint,
            "load_ms": self.load_ms,
            "truncated": self.truncated,
        }
        if with_samples:
            out["samples_ms"] = list(self.samples_ms)
        return out


class AgentClient:
    """Talks to one agent over a :class:`~hwnas.devices.channels.Channel`.

    Models are uploaded once per connection; later requests refer to them by sha256 (the agent
    keeps a bounded cache and says ``unknown_model`` if it dropped one, which triggers a resend).
    """

    def __init__(self, channel: Channel, device: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.channel = channel
        self.device = device
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._uploaded: set[str] = set()

    # -- plumbing -----------------------------------------------------------------------------
    def request(self, op: str, timeout_s: float | None = None, **fields: Any) -> dict:
        """Send one request and return its ``result``; raises :class:`AgentError` on an error reply."""
        rid = next(self._ids)
        line = json.dumps({"v": PROTOCOL_VERSION, "id": rid, "op": op, **fields}, allow_nan=False)
        self.channel.send(line.encode("utf-8") + b"\n")
        timeout = self.timeout_s if timeout_s is None else timeout_s
        while True:
            raw = self.channel.recv_line(timeout)
            try:
                reply = json.loads(raw)
            except ValueError:
                raise DeviceError(
                    f"{self.channel.label}: the peer is not an hwnas agent "
                    f"(protocol {PROTOCOL_VERSION}); it printed {raw[:80]!r}"
                ) from None
            if (
                not isinstance(reply, dict)
                or reply.get("v") != PROTOCOL_VERSION
                or not isinstance(reply.get("ok"), bool)
            ):
                raise DeviceError(
                    f"{self.channel.label}: the peer is not an hwnas agent "
                    f"(protocol {PROTOCOL_VERSION}); it answered {raw[:80]!r}"
                )
            if reply.get("id") == rid:
                break
            if reply.get("id") is None and not reply["ok"]:
                break  # about the connection, not a request (busy, idle timeout, too large)
            log.debug("%s: dropping stale reply %r", self.channel.label, reply.get("id"))
        if not reply["ok"]:
            raise agent_error(self.channel.label, reply.get("error"))
        return reply["result"]

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations -----------------------------------------------------------------------------
    def hello(self) -> dict:
        return self.request("hello")

    def fingerprint(self, core: int | None = None) -> dict:
        return self.request("fingerprint", core=core)

    def measure(
        self,
        model: bytes,
        *,
        warmup: int = 10,
        repeats: int = 50,
        threads: int = 1,
        core: int | None = None,
        runtime: str | None = None,
        options: dict | None = None,
        time_budget_s: float = 300.0,
        seed: int = 0,
        min_time_ms: float = 0.0,
    ) -> Measurement:
        """Time ``model`` (ONNX or TFLite bytes) on the device; see :mod:`device_agents.service`."""
        fields = {
            "warmup": warmup,
            "repeats": repeats,
            "threads": threads,
            "core": core,
            "runtime": runtime,
            "options": options or {},
            "time_budget_s": time_budget_s,
            "seed": seed,
        }
        if min_time_ms > 0:  # agents before 0.2.0 ignore it and time exactly ``repeats`` runs
            fields["min_time_ms"] = min_time_ms
        timeout = self.timeout_s + 2 * time_budget_s
        result = self._with_model("measure", model, timeout, fields)
        samples = tuple(float(s) for s in result["samples_ms"])
        if not samples:
            raise DeviceError(
                f"{self.device}: the agent returned no samples (time budget too small?)"
            )
        return Measurement(
            samples_ms=samples,
            stats=summarize(samples),
            model_sha256=result["model_sha256"],
            runtime=result["runtime"],
            settings=result["settings"],
            fingerprint=result["fingerprint"],
            load_ms=float(result["load_ms"]),
            truncated=bool(result["truncated"]),
            device=self.device,
        )

    def infer(
        self,
        model: bytes,
        inputs: Sequence[np.ndarray] | None = None,
        *,
        threads: int = 1,
        runtime: str | None = None,
        options: dict | None = None,
        seed: int = 0,
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Run ``model`` once on the device; returns (inputs used, outputs)."""
        fields: dict[str, Any] = {"threads": threads, "runtime": runtime, "options": options or {}}
        if inputs is None:
            fields["seed"] = seed
        else:
            fields["inputs"] = [encode_array(f"input{i}", a) for i, a in enumerate(inputs)]
        result = self._with_model("infer", model, self.timeout_s, fields)
        return [decode_array(x) for x in result["inputs"]], [
            decode_array(x) for x in result["outputs"]
        ]

    def _with_model(self, op: str, model: bytes, timeout: float, fields: dict) -> dict:
        sha = hashlib.sha256(model).hexdigest()
        if sha in self._uploaded:
            try:
                return self.request(op, timeout, model={"sha256": sha}, **fields)
            except AgentError as exc:
                if exc.code != "unknown_model":
                    raise
        data = base64.b64encode(model).decode("ascii")
        result = self.request(op, timeout, model={"data_b64": data}, **fields)
        self._uploaded.add(sha)
        return result
