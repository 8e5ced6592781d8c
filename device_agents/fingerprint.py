"""What a measurement was taken on: CPU, cores, frequency governor, temperature, OS, runtimes.

Everything is read from ``/proc`` and ``/sys`` where present (Linux, Raspberry Pi OS, Android via
Termux) and left out where not readable. :data:`IDENTITY_FIELDS` are the fields that must not
change between two sessions for their numbers to be comparable (used to refuse resuming a LUT build
on a different device); frequency and temperature are recorded but may drift.
"""

from __future__ import annotations

import os
import platform
import socket
from typing import Any, Dict, List, Optional

from device_agents import PROTOCOL_VERSION, __version__
from device_agents.runners import _dist_version, available_runtimes

IDENTITY_FIELDS = ("machine", "cpu_model", "board", "cores_logical", "runtimes")

# ARM "CPU part" ids (implementer 0x41) of cores found on boards and phones.
_ARM_PARTS = {
    "0xd03": "Cortex-A53",
    "0xd04": "Cortex-A35",
    "0xd05": "Cortex-A55",
    "0xd07": "Cortex-A57",
    "0xd08": "Cortex-A72",
    "0xd09": "Cortex-A73",
    "0xd0a": "Cortex-A75",
    "0xd0b": "Cortex-A76",
    "0xd0c": "Neoverse-N1",
    "0xd0d": "Cortex-A77",
    "0xd41": "Cortex-A78",
    "0xd44": "Cortex-X1",
    "0xd46": "Cortex-A510",
    "0xd47": "Cortex-A710",
    "0xd48": "Cortex-X2",
    "0xd4b": "Cortex-A78C",
}


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip("\x00\n ")
    except OSError:
        return None


def _cpuinfo() -> Dict[str, str]:
    """First value of each ``key : value`` line of /proc/cpuinfo."""
    info: Dict[str, str] = {}
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            info.setdefault(key.strip(), value.strip())
    return info


def cpu_model(info: Dict[str, str]) -> str:
    """Human-readable CPU model: x86 ``model name``, or the ARM core name from its part number."""
    if "model name" in info:
        return info["model name"]
    part = info.get("CPU part", "").lower()
    if info.get("CPU implementer", "").lower() == "0x41" and part in _ARM_PARTS:
        return f"ARM {_ARM_PARTS[part]}"
    return info.get("Processor") or info.get("cpu model") or platform.processor() or "unknown"


def _freq_khz(core: int) -> Dict[str, int]:
    base = f"/sys/devices/system/cpu/cpu{core}/cpufreq/"
    out = {}
    for key, name in (
        ("cur", "scaling_cur_freq"),
        ("min", "scaling_min_freq"),
        ("max", "scaling_max_freq"),
    ):
        value = _read(base + name)
        if value and value.isdigit():
            out[key] = int(value)
    return out


def _temperature_c() -> Optional[float]:
    """Thermal zone 0 (the SoC on a Raspberry Pi), in degrees Celsius, if readable."""
    value = _read("/sys/class/thermal/thermal_zone0/temp")
    try:
        return round(int(value) / 1000.0, 1) if value else None
    except ValueError:
        return None


def _os_release() -> Optional[str]:
    text = _read("/etc/os-release") or ""
    for line in text.splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip('"')
    return None


def fingerprint(core: Optional[int] = None, allowed: Optional[List[int]] = None) -> Dict[str, Any]:
    """The device fingerprint.

    Args:
        core: the core whose governor and frequency are reported (default: last allowed).
        allowed: cores the agent may use (default: this thread's current affinity).
    """
    info = _cpuinfo()
    if allowed is None:
        try:
            allowed = sorted(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            allowed = list(range(os.cpu_count() or 1))
    core = allowed[-1] if core is None else core
    board = info.get("Model") or _read("/proc/device-tree/model") or info.get("Hardware")
    result: Dict[str, Any] = {
        "agent_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(info),
        "cpu_implementer": info.get("CPU implementer"),
        "cpu_part": info.get("CPU part"),
        "board": board,
        "cores_logical": os.cpu_count(),
        "cores_allowed": allowed,
        "core": core,
        "governor": _read(f"/sys/devices/system/cpu/cpu{core}/cpufreq/scaling_governor"),
        "freq_khz": _freq_khz(core),
        "temperature_c": _temperature_c(),
        "os": platform.platform(),
        "os_release": _os_release(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": _dist_version("numpy"),
        "runtimes": available_runtimes(),
    }
    return {k: v for k, v in result.items() if v is not None}
