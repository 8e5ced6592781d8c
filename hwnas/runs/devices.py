"""The device commands that talk to an agent: ``hwnas measure``, ``hwnas devices probe`` and the
probe of ``hwnas devices add``. Results are plain dicts (what ``--json`` prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from hwnas.devices.registry import DeviceConfig


def measure_file(
    path: Path,
    device_name: str,
    warmup: int,
    repeats: int,
    threads: int,
    core: Optional[int] = None,
    runtime: Optional[str] = None,
    samples: bool = False,
) -> dict:
    """Time the model file ``path`` on a registered device (core/runtime default to its own)."""
    from hwnas.devices.connect import open_device
    from hwnas.devices.registry import get_device

    device = get_device(device_name)
    with open_device(device) as client:
        m = client.measure(
            path.read_bytes(),
            warmup=warmup,
            repeats=repeats,
            threads=threads,
            core=core if core is not None else device.core,
            runtime=runtime or device.runtime,
        )
    return {"model": str(path), **m.to_dict(with_samples=samples)}


def probe_device(name: str, timeout_s: float) -> dict:
    """The agent's hello and the device's fingerprint."""
    from hwnas.devices.connect import open_device
    from hwnas.devices.registry import get_device

    device = get_device(name)
    with open_device(device, timeout_s=timeout_s) as client:
        hello = client.hello()
        fp = client.fingerprint(device.core)
    return {"device": device.name, "transport": device.transport, "agent": hello, "fingerprint": fp}


def fingerprint_new(device: DeviceConfig, trust_new_host: bool = False) -> dict[str, Any]:
    """The fingerprint of a device not registered yet (``hwnas devices add`` checks it answers)."""
    from hwnas.devices.connect import open_device

    with open_device(device, trust_new_host=trust_new_host) as client:
        return client.fingerprint(device.core)
