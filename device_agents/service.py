"""Request handling: what each protocol operation does, independent of the transport.

One :class:`Agent` serves every connection of a process. Work that touches the runtime (``measure``
and ``infer``) runs under one lock, so concurrent requests queue and never overlap: a measurement is
never disturbed by another one on the same device.

``measure`` pins the calling thread to one core (``sched_setaffinity``) before the runtime session
is created, runs ``warmup`` untimed inferences, then ``repeats`` timed ones (and more, while the
timed runs add up to less than ``min_time_ms``: a 0.05 ms block gets hundreds of runs, a 50 ms
network its ``repeats``), and returns the raw samples in milliseconds. Statistics are the host's
business. Older hosts do not send ``min_time_ms``; it defaults to 0 (exactly ``repeats`` runs).
"""

from __future__ import annotations

import base64
import binascii
import gc
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

from device_agents import PROTOCOL_VERSION, __version__
from device_agents.arrays import decode_array, encode_array
from device_agents.fingerprint import fingerprint
from device_agents.protocol import ProtocolError
from device_agents.runners import (
    FORMAT_RUNTIMES,
    LOADERS,
    LoadedModel,
    available_runtimes,
    detect_format,
)

log = logging.getLogger(__name__)

LIMITS = {
    "warmup": (0, 100_000),
    "repeats": (1, 100_000),
    "threads": (1, 256),
    "time_budget_s": (0.001, 3600.0),
    "min_time_ms": (0.0, 600_000.0),
    "seed": (0, 2**31 - 1),
}
DEFAULTS = {
    "warmup": 10,
    "repeats": 50,
    "threads": 1,
    "time_budget_s": 300.0,
    "min_time_ms": 0.0,
    "seed": 0,
}
MAX_RUNS = LIMITS["repeats"][1]  # timed runs per request, whatever min_time_ms asks
MAX_CACHED_MODEL_BYTES = 256 * 1024 * 1024
MAX_CACHED_SESSIONS = 256  # a LUT build interleaves rounds over a few hundred block models
CACHE_MEMORY_SHARE = 1 / 8
"""Share of the device's physical memory the cached runtime sessions may hold. A session costs
about 1.5x its model file in resident memory (onnxruntime, 6.5 MB FBNet networks: 9.7 MB each),
so without this bound a LUT build's 200 cached networks took 3.9 GB: fine on a 24 GB host, out
of memory on a 2 GB Raspberry Pi."""
SESSION_MEMORY_FACTOR = 1.5
UNKNOWN_MEMORY = 2 * 1024**3  # assumed when /proc/meminfo cannot be read


def physical_memory() -> int:
    """Bytes of physical memory (``MemTotal``), or ``UNKNOWN_MEMORY`` where it is not readable."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return UNKNOWN_MEMORY


class Agent:
    """Serves protocol requests (see :mod:`device_agents.protocol`).

    Args:
        cores: cores a request may pin to; ``None`` means the process' allowed cores. The default
            core is the first of ``cores`` if given, else the last allowed core.
        max_sessions: runtime sessions kept alive between requests (least recently used first
            out); re-measuring a cached model skips loading it again.
        cache_bytes: memory the cached sessions and model files may take together (estimated
            from file sizes; model files get a quarter, at most ``MAX_CACHED_MODEL_BYTES``);
            default ``CACHE_MEMORY_SHARE`` of physical memory. The most recently used model and
            session always stay, whatever their size.
    """

    def __init__(
        self,
        cores: Optional[List[int]] = None,
        max_sessions: int = MAX_CACHED_SESSIONS,
        cache_bytes: Optional[int] = None,
    ) -> None:
        allowed = _allowed_cores()
        if cores:
            bad = [c for c in cores if allowed is not None and c not in allowed]
            if bad:
                raise ValueError(
                    f"cores {bad} are not available to this process (allowed: {allowed})"
                )
        self.cores = list(cores) if cores else allowed
        self.default_core = (cores[0] if cores else allowed[-1]) if self.cores else None
        self.max_sessions = max_sessions
        if cache_bytes is None:
            cache_bytes = int(physical_memory() * CACHE_MEMORY_SHARE)
        self.model_cache_bytes = min(MAX_CACHED_MODEL_BYTES, cache_bytes // 4)
        self.session_cache_bytes = cache_bytes - self.model_cache_bytes
        self._lock = threading.Lock()
        self._models: OrderedDict[str, bytes] = OrderedDict()
        self._sessions: OrderedDict[Tuple[str, str, int, str], LoadedModel] = OrderedDict()
        self._session_bytes: Dict[Tuple[str, str, int, str], int] = {}

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, message: Dict[str, Any]) -> Dict[str, Any]:
        """Run one decoded request; returns the ``result`` object or raises ProtocolError."""
        op = message["op"]
        if op == "hello":
            return self.hello()
        if op == "fingerprint":
            return fingerprint(self._core(message), self.cores)
        if op == "measure":
            return self.measure(message)
        if op == "infer":
            return self.infer(message)
        if op == "auth":
            return {"authenticated": True}  # transports without a token accept it as a no-op
        raise ProtocolError(
            "unknown_op",
            f"unknown op {op!r}; known: hello, fingerprint, measure, infer",
        )

    def hello(self) -> Dict[str, Any]:
        return {
            "agent_version": __version__,
            "protocol_version": PROTOCOL_VERSION,
            "runtimes": available_runtimes(),
            "cores": self.cores,
            "default_core": self.default_core,
            "pid": os.getpid(),
        }

    # -- measure / infer ----------------------------------------------------------------------
    def measure(self, message: Dict[str, Any]) -> Dict[str, Any]:
        settings = {name: _number(message, name, DEFAULTS[name]) for name in DEFAULTS}
        warmup, repeats, threads = (
            int(settings["warmup"]),
            int(settings["repeats"]),
            int(settings["threads"]),
        )
        core = self._core(message)
        with self._lock, _pinned(core) as affinity:
            started = time.monotonic()
            model, runtime, sha = self._model(message)
            t0 = time.perf_counter()
            loaded = self._session(sha, model, runtime, threads, message.get("options") or {})
            load_ms = (time.perf_counter() - t0) * 1e3
            inputs = loaded.make_inputs(int(settings["seed"]))
            samples, truncated = _time_runs(
                loaded,
                inputs,
                warmup,
                repeats,
                float(settings["time_budget_s"]),
                float(settings["min_time_ms"]),
            )
            fp = fingerprint(core, self.cores)
            finished = time.monotonic()
        return {
            "samples_ms": samples,
            "truncated": truncated,
            "model_sha256": sha,
            "runtime": {
                "name": runtime,
                "version": available_runtimes().get(runtime, "unknown"),
            },
            "settings": {
                "warmup": warmup,
                "repeats": repeats,
                "min_time_ms": float(settings["min_time_ms"]),
                "threads": threads,
                "core": core,
                "affinity": affinity,
                "seed": int(settings["seed"]),
                "options": message.get("options") or {},
                "inputs": loaded.input_specs,
            },
            "load_ms": load_ms,
            "window_s": [started, finished],  # CLOCK_MONOTONIC: shows that requests never overlap
            "fingerprint": fp,
        }

    def infer(self, message: Dict[str, Any]) -> Dict[str, Any]:
        threads = int(_number(message, "threads", 1))
        raw_inputs = message.get("inputs")
        with self._lock, _pinned(self._core(message)):
            model, runtime, sha = self._model(message)
            loaded = self._session(sha, model, runtime, threads, message.get("options") or {})
            if raw_inputs is None:
                arrays = loaded.make_inputs(int(_number(message, "seed", 0)))
            else:
                arrays = [decode_array(item) for item in _list(raw_inputs, "inputs")]
                loaded.check_inputs(arrays)
            outputs = loaded.run(arrays)
        return {
            "model_sha256": sha,
            "runtime": {
                "name": runtime,
                "version": available_runtimes().get(runtime, "unknown"),
            },
            "inputs": [
                encode_array(name["name"], a) for name, a in zip(loaded.input_specs, arrays)
            ],
            "outputs": [
                encode_array(n, np.asarray(a)) for n, a in zip(loaded.output_names, outputs)
            ],
        }

    # -- helpers --------------------------------------------------------------------------------
    def _core(self, message: Dict[str, Any]) -> Optional[int]:
        core = message.get("core")
        if core is None:
            return self.default_core
        if not isinstance(core, int) or isinstance(core, bool):
            raise ProtocolError("bad_request", "core must be an integer")
        if self.cores is not None and core not in self.cores:
            raise ProtocolError(
                "bad_core",
                f"core {core} is not available; this agent may use {self.cores}",
            )
        return core

    def _model(self, message: Dict[str, Any]) -> Tuple[bytes, str, str]:
        spec = message.get("model")
        if not isinstance(spec, dict):
            raise ProtocolError(
                "bad_request", "missing 'model': {'data_b64': ...} or {'sha256': ...}"
            )
        if "data_b64" in spec:
            if not isinstance(spec["data_b64"], str):
                raise ProtocolError("bad_request", "model.data_b64 must be a base64 string")
            try:
                data = base64.b64decode(spec["data_b64"], validate=True)
            except (binascii.Error, ValueError):
                raise ProtocolError("bad_request", "model.data_b64 is not valid base64") from None
            sha = hashlib.sha256(data).hexdigest()
            self._remember(sha, data)
        elif isinstance(spec.get("sha256"), str):
            sha = spec["sha256"]
            data = self._models.get(sha)  # type: ignore[assignment]
            if data is None:
                raise ProtocolError(
                    "unknown_model",
                    f"model {sha[:12]} is not cached here; send data_b64",
                )
            self._models.move_to_end(sha)
        else:
            raise ProtocolError("bad_request", "model needs 'data_b64' or 'sha256'")
        fmt = detect_format(data)
        runtime = message.get("runtime") or FORMAT_RUNTIMES[fmt][0]
        if runtime not in LOADERS:
            raise ProtocolError(
                "bad_request",
                f"unknown runtime {runtime!r}; known: {', '.join(LOADERS)}",
            )
        if runtime not in FORMAT_RUNTIMES[fmt]:
            raise ProtocolError("bad_request", f"a {fmt} model cannot run on {runtime}")
        if runtime not in available_runtimes():
            raise ProtocolError("no_runtime", f"{runtime} is not installed on this device")
        return data, runtime, sha

    def _remember(self, sha: str, data: bytes) -> None:
        self._models[sha] = data
        self._models.move_to_end(sha)
        while (
            sum(len(v) for v in self._models.values()) > self.model_cache_bytes
            and len(self._models) > 1
        ):
            self._models.popitem(last=False)

    def _session(
        self, sha: str, model: bytes, runtime: str, threads: int, options: Any
    ) -> LoadedModel:
        if not isinstance(options, dict):
            raise ProtocolError("bad_request", "options must be an object")
        key = (sha, runtime, threads, repr(sorted(options.items())))
        loaded = self._sessions.get(key)
        if loaded is None:
            loaded = LOADERS[runtime](model, threads, options)
            self._sessions[key] = loaded
            self._session_bytes[key] = int(len(model) * SESSION_MEMORY_FACTOR)
        self._sessions.move_to_end(key)
        while len(self._sessions) > 1 and (
            len(self._sessions) > self.max_sessions
            or sum(self._session_bytes.values()) > self.session_cache_bytes
        ):
            old, _ = self._sessions.popitem(last=False)
            del self._session_bytes[old]
        return loaded


def _time_runs(
    loaded: LoadedModel,
    inputs: List[np.ndarray],
    warmup: int,
    repeats: int,
    budget_s: float,
    min_time_ms: float = 0.0,
) -> Tuple[List[float], bool]:
    """Warm up, then time ``repeats`` runs (ms), and more until they add up to ``min_time_ms``
    (at most ``MAX_RUNS``); stops early once ``budget_s`` is spent (``truncated``)."""
    deadline = time.perf_counter() + budget_s
    for _ in range(warmup):
        loaded.run(inputs)
        if time.perf_counter() > deadline:
            break
    samples: List[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    timed_ms = 0.0
    try:
        while len(samples) < repeats or (timed_ms < min_time_ms and len(samples) < MAX_RUNS):
            t0 = time.perf_counter_ns()
            loaded.run(inputs)
            samples.append((time.perf_counter_ns() - t0) / 1e6)
            timed_ms += samples[-1]
            if time.perf_counter() > deadline:
                break
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples, len(samples) < repeats


def _allowed_cores() -> Optional[List[int]]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: no pinning
        return None


@contextmanager
def _pinned(core: Optional[int]) -> Iterator[Optional[List[int]]]:
    """Pin the calling thread to ``core`` for the block; yields the affinity actually in force."""
    if core is None or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield sorted(os.sched_getaffinity(0))
    finally:
        os.sched_setaffinity(0, previous)


def _number(message: Dict[str, Any], name: str, default: float) -> float:
    value = message.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError("bad_request", f"{name} must be a number")
    low, high = LIMITS[name]
    if not low <= value <= high:
        raise ProtocolError("bad_request", f"{name}={value} is outside [{low}, {high}]")
    return value


def _list(value: Any, name: str) -> list:
    if not isinstance(value, list):
        raise ProtocolError("bad_request", f"{name} must be a list")
    return value
