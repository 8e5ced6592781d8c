"""Shared by benchmark scripts: write a figure file with the command, date and machine.

``write_result(name, figures, command)`` writes ``bench/results/<name>.json``::

    {"name": ..., "command": ..., "date": ISO-8601 UTC, "machine": {...}, "figures": {...}}

``machine`` holds the platform, CPU model, core count, Python and the versions of the key
packages that are installed (a missing package is simply left out).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

RESULTS_DIR = Path(__file__).resolve().parent / "results"
KEY_PACKAGES = ("numpy", "scipy", "scikit-learn", "torch", "onnx", "onnxruntime", "ai-edge-litert")


def cpu_model() -> str:
    """The CPU model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith(("model name", "hardware", "processor\t: ")):
                    value = line.split(":", 1)[1].strip()
                    if value and not value.isdigit():
                        return value
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Fingerprint of this machine and software stack."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }
    for package in KEY_PACKAGES:
        try:
            info[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return info


def write_result(name: str, figures: dict[str, Any], command: Optional[str] = None) -> Path:
    """Write ``bench/results/<name>.json`` and return its path.

    Args:
        name: the benchmark's name (file stem).
        figures: the measured figures (JSON-serialisable).
        command: how to reproduce them (default: this process's command line).
    """
    document = {
        "name": name,
        "command": command or " ".join(["python", *sys.argv]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "figures": figures,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def budgets_at(problem: Any, metrics: list[str], fraction: float) -> Any:
    """``problem`` with one budget per metric at ``fraction`` of that metric's feasible range."""
    import dataclasses

    from hwnas.costs.models import make_constraints

    limits = {}
    for metric in metrics:
        low, high = problem.costs[metric].bounds()
        limits[metric] = low + fraction * (high - low)
    return dataclasses.replace(problem, constraints=make_constraints(problem.costs, limits))
