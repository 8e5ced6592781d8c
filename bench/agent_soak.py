"""Soak: a TCP agent keeps serving its host while strangers flood it with garbage connections.

On 127.0.0.1 only. A real agent process (``python -m device_agents start``) serves one
authenticated host, which measures a small ONNX model over and over: first alone (baseline),
then while ``--threads`` threads open ``--connections`` garbage connections (bytes, half JSON,
wrong tokens, oversized first lines, silent ones, a few that idle for a second), then alone again.
Every few seconds during the flood a *new* host connects (retrying while the agent says busy).

Figures: connections tried and how the agent answered them; host measurements completed and
failed per phase; their request-latency inflation during the flood against the quiet phases
before and after it (a shared machine's load drifts: the bracket evens it out); the agent's
resident memory and threads before, at peak and after; the time to serve a new host after it.
Target (issue #17): every host measurement completes during and after a flood of >= 10,000
connections, and the agent's memory returns to within 10 % of its start.

Run: ``python bench/agent_soak.py [--connections 10000] [--threads 32] [--max-flood-s 240]``
"""

from __future__ import annotations

import argparse
import itertools
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import write_result  # noqa: E402
from hwnas.blocks.export import spec_to_onnx  # noqa: E402
from hwnas.blocks.specs import ConvSpec  # noqa: E402
from hwnas.devices.connect import open_device  # noqa: E402
from hwnas.devices.registry import DeviceConfig  # noqa: E402
from hwnas.errors import DeviceError  # noqa: E402

HOST = "127.0.0.1"
KINDS = ("bytes", "half_json", "wrong_token", "oversized", "silent")
IDLE_EVERY = 50  # one connection in 50 idles for IDLE_S before hanging up
IDLE_S = 1.0
SETTLE_S = 8.0  # after the flood: longer than the agent's auth deadline (5 s)
PAYLOADS = {
    "bytes": b"\x00\xff\xfe\x10 garbage\n",
    "half_json": b'{"v": 1, "op": "au',
    "wrong_token": b'{"v": 1, "id": 1, "op": "auth", "token": "' + b"0" * 64 + b'"}\n',
    "oversized": b"x" * 8192 + b"\n",
    "silent": b"",
}


def start_agent(tmp: Path) -> tuple[subprocess.Popen, int, Path]:
    token = tmp / "token"
    argv = [sys.executable, "-m", "device_agents"]
    subprocess.run([*argv, "token", str(token)], check=True, cwd=ROOT, capture_output=True)
    log = (tmp / "agent.log").open("wb")
    proc = subprocess.Popen(
        [*argv, "start", "--host", HOST, "--port", "0", "--token-file", str(token)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    line = proc.stderr.readline().decode()  # type: ignore[union-attr]
    match = re.search(r"listening on [\d.]+:(\d+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"agent did not start: {line!r}")
    threading.Thread(target=_copy, args=(proc.stderr, log), daemon=True).start()
    return proc, int(match.group(1)), token


def _copy(src, dst) -> None:
    for chunk in iter(lambda: src.read1(65536), b""):
        dst.write(chunk)
    dst.close()


def agent_status(pid: int) -> dict[str, int]:
    """Resident memory (KiB) and thread count of the agent, from /proc."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(("VmRSS:", "Threads:")):
                key, value = line.split(":", 1)
                out["rss_kib" if key == "VmRSS" else "threads"] = int(value.split()[0])
    return out


def stranger(port: int, n: int) -> str:
    """Garbage connection number ``n``; returns how the agent answered it."""
    kind = KINDS[n % len(KINDS)]
    try:
        sock = socket.create_connection((HOST, port), timeout=10)
    except OSError as exc:
        return f"connect_{type(exc).__name__}"
    with sock:
        try:
            if n % IDLE_EVERY == 0:
                time.sleep(IDLE_S)
            sock.sendall(PAYLOADS[kind])
            sock.shutdown(socket.SHUT_WR)
            data = sock.recv(4096)
        except socket.timeout:
            return "no_answer"
        except OSError:
            return "reset"
    for code in ("busy", "unauthorized", "timeout"):
        if f'"code":"{code}"'.encode() in data:
            return code
    return "closed_silently" if not data else "other"


def flood(port: int, total: int, threads: int, max_s: float, outcomes: Counter) -> float:
    """``total`` garbage connections from ``threads`` threads, for at most ``max_s``."""
    counter = itertools.count()
    lock = threading.Lock()
    deadline = time.monotonic() + max_s

    def run() -> None:
        while time.monotonic() < deadline:
            n = next(counter)
            if n >= total:
                return
            code = stranger(port, n)
            with lock:
                outcomes[code] += 1

    started = time.monotonic()
    workers = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(max_s + 30)
    return time.monotonic() - started


def measure_phase(host, model: bytes, count: int, until=None) -> dict:
    """Up to ``count`` measurements (stop early once ``until()`` is true); request times in ms."""
    wall_ms, device_ms, failures = [], [], []
    for _ in range(count):
        if until is not None and until():
            break
        t0 = time.perf_counter()
        try:
            m = host.measure(model, warmup=2, repeats=20)
        except DeviceError as exc:
            failures.append(str(exc))
            continue
        wall_ms.append((time.perf_counter() - t0) * 1e3)
        device_ms.append(m.stats.median_ms)
    return {
        "request_ms": wall_ms,  # popped before writing; the quiet phases' pool
        "completed": len(wall_ms),
        "failed": len(failures),
        "failures": failures[:5],
        "request_ms_median": float(np.median(wall_ms)) if wall_ms else None,
        "request_ms_p90": float(np.percentile(wall_ms, 90)) if wall_ms else None,
        "device_median_ms": float(np.median(device_ms)) if device_ms else None,
    }


def new_host(device: DeviceConfig, model: bytes) -> dict:
    """Connect a fresh host (retrying while busy), say hello and measure once; seconds taken."""
    t0 = time.monotonic()
    try:
        with open_device(device, timeout_s=60, busy_wait_s=60) as client:
            client.measure(model, warmup=1, repeats=5)
        return {"ok": True, "seconds": time.monotonic() - t0}
    except DeviceError as exc:
        return {"ok": False, "seconds": time.monotonic() - t0, "error": str(exc)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--max-flood-s", type=float, default=240.0)
    ap.add_argument("--baseline", type=int, default=30, help="measurements before and after")
    ap.add_argument("--probe-every-s", type=float, default=3.0, help="new host during the flood")
    ap.add_argument("--name", default="agent_soak")
    args = ap.parse_args()

    model = spec_to_onnx(ConvSpec(h=32, w=32, cin=16, cout=16, kernel=3))
    with tempfile.TemporaryDirectory() as tmp_dir:
        proc, port, token = start_agent(Path(tmp_dir))
        device = DeviceConfig("soak", "tcp", host=HOST, port=port, token_file=str(token))
        try:
            figures = soak(proc, device, model, args)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    path = write_result(args.name, figures)
    summary = figures["summary"]
    for key, value in summary.items():
        print(f"{key:>40}: {value}")
    print(f"wrote {path}")


def soak(proc: subprocess.Popen, device: DeviceConfig, model: bytes, args) -> dict:
    with open_device(device, timeout_s=120) as host:
        measure_phase(host, model, 5)  # warm the agent's caches before taking the baseline
        baseline = measure_phase(host, model, args.baseline)
        memory_before = agent_status(proc.pid)

        outcomes: Counter = Counter()
        peak = dict(memory_before)
        done = threading.Event()
        flood_s: list[float] = []

        def run_flood() -> None:
            flood_s.append(
                flood(device.port or 0, args.connections, args.threads, args.max_flood_s, outcomes)
            )
            done.set()

        def sample() -> None:
            while not done.wait(0.25):
                for key, value in agent_status(proc.pid).items():
                    peak[key] = max(peak[key], value)

        flooder = threading.Thread(target=run_flood)
        sampler = threading.Thread(target=sample, daemon=True)
        probes: list[dict] = []

        def probe() -> None:
            while not done.wait(args.probe_every_s):
                probes.append(new_host(device, model))

        prober = threading.Thread(target=probe, daemon=True)
        flooder.start()
        sampler.start()
        prober.start()
        during = measure_phase(host, model, 100_000, until=done.is_set)
        flooder.join(args.max_flood_s + 60)
        prober.join(120)

        t0 = time.monotonic()
        first_after = new_host(device, model)
        first_after["seconds_after_flood"] = time.monotonic() - t0
        after = measure_phase(host, model, args.baseline)
    time.sleep(SETTLE_S)
    memory_after = agent_status(proc.pid)

    tried = sum(outcomes.values())
    completed = baseline["completed"] + during["completed"] + after["completed"]
    failed = baseline["failed"] + during["failed"] + after["failed"]
    rss_ratio = memory_after["rss_kib"] / memory_before["rss_kib"]
    # the quiet reference brackets the flood (before and after), as the machine's load drifts
    base_ms = float(np.median(baseline.pop("request_ms") + after.pop("request_ms")))
    during.pop("request_ms")
    summary = {
        "target": ">= 10,000 connections; every host measurement completes; RSS within 10 %",
        "connections_tried": tried,
        "flood_seconds": round(flood_s[0], 2) if flood_s else None,
        "connections_per_second": round(tried / flood_s[0], 1) if flood_s else None,
        "host_measurements_completed": completed,
        "host_measurements_failed": failed,
        "host_measurements_during_flood": during["completed"],
        "request_ms_quiet_median": round(base_ms, 3),
        "request_latency_inflation_during": round(during["request_ms_median"] / base_ms, 3)
        if during["request_ms_median"]
        else None,
        "device_median_inflation_during": round(
            during["device_median_ms"] / baseline["device_median_ms"], 3
        )
        if during["device_median_ms"]
        else None,
        "new_host_probes_during_flood_ok": sum(p["ok"] for p in probes),
        "new_host_probes_during_flood": len(probes),
        "new_host_seconds_after_flood": round(first_after["seconds_after_flood"], 3),
        "agent_rss_kib_before": memory_before["rss_kib"],
        "agent_rss_kib_peak": peak["rss_kib"],
        "agent_rss_kib_after": memory_after["rss_kib"],
        "agent_rss_after_over_before": round(rss_ratio, 4),
        "agent_threads_before_peak_after": [
            memory_before["threads"],
            peak["threads"],
            memory_after["threads"],
        ],
        "met": tried >= 10_000 and failed == 0 and first_after["ok"] and rss_ratio <= 1.10,
    }
    return {
        "summary": summary,
        "settings": {
            "connections": args.connections,
            "threads": args.threads,
            "max_flood_s": args.max_flood_s,
            "kinds": list(KINDS),
            "idle_every": IDLE_EVERY,
            "idle_s": IDLE_S,
            "settle_s": SETTLE_S,
            "measure": {"warmup": 2, "repeats": 20, "model": "conv3x3 16->16 @ 32x32, ONNX"},
            "agent_limits": "defaults: 32 unauthenticated, 8 per address, 16 sessions, 5 s auth",
        },
        "outcomes": dict(outcomes.most_common()),
        "phases": {"baseline": baseline, "during_flood": during, "after_flood": after},
        "new_host_during_flood": {
            "seconds": [round(p["seconds"], 3) for p in probes],
            "errors": [p["error"] for p in probes if not p["ok"]][:5],
        },
        "new_host_after_flood": first_after,
    }


if __name__ == "__main__":
    main()
