"""The device registry: named devices in ``$XDG_CONFIG_HOME/hwnas/devices.json``.

Built-in devices always exist: ``local`` (this machine, one pinned core, the agent as a
subprocess) and the reference devices ``pi4`` and ``pixel3``, which have shipped LUTs
(HW-NAS-Bench) but no agent: they can be predicted for, never measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hwnas.errors import UserError
from hwnas.paths import config_dir

SCHEMA_VERSION = 1
TRANSPORTS = ("local", "tcp", "ssh", "exec", "reference")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class DeviceConfig:
    """How to reach one device. Only the fields of its ``transport`` are set."""

    name: str
    transport: str
    host: str | None = None  # tcp, ssh
    port: int | None = None  # tcp, ssh
    user: str | None = None  # ssh
    token_file: str | None = None  # tcp
    key_file: str | None = None  # ssh
    known_hosts: str | None = None  # ssh: extra known_hosts file (hwnas' own by default)
    python: str = "python3"  # ssh: interpreter on the device
    remote_dir: str | None = None  # ssh: agent cache on the device (default ~/.cache/hwnas/agents)
    command: str | None = None  # exec
    push: bool = False  # exec: the command starts a Python; hwnas sends the agent's code
    runtime: str | None = None  # default runtime for measurements
    core: int | None = None  # core to pin to (default: the agent's default core)
    description: str = ""

    @property
    def measurable(self) -> bool:
        return self.transport != "reference"

    def describe(self) -> str:
        t = self.transport
        if t == "tcp":
            return f"tcp {self.host}:{self.port}"
        if t == "ssh":
            return f"ssh {self.user}@{self.host}:{self.port}"
        if t == "exec":
            return f"exec {self.command!r}" + (" (agent pushed)" if self.push else "")
        return self.description or t

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, "", False)}


BUILTIN: dict[str, DeviceConfig] = {
    "local": DeviceConfig(
        "local", "local", description="this machine, one pinned core, agent as a subprocess"
    ),
    "pi4": DeviceConfig(
        "pi4", "reference", description="Raspberry Pi 4: reference LUT from HW-NAS-Bench, no agent"
    ),
    "pixel3": DeviceConfig(
        "pixel3", "reference", description="Pixel 3: reference LUT from HW-NAS-Bench, no agent"
    ),
}


def registry_path() -> Path:
    return config_dir() / "devices.json"


def load_devices() -> dict[str, DeviceConfig]:
    """Built-in devices plus the user's, by name."""
    devices = dict(BUILTIN)
    path = registry_path()
    if not path.exists():
        return devices
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"device registry {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or data.get("kind") != "hwnas-devices":
        raise UserError(f"device registry {path} is not an hwnas device file")
    if data.get("schema_version") != SCHEMA_VERSION:
        raise UserError(f"device registry {path} has schema_version {data.get('schema_version')!r}")
    fields = {f.name for f in dataclasses.fields(DeviceConfig)}
    for record in data.get("devices", []):
        unknown = set(record) - fields
        if unknown:
            raise UserError(f"device registry {path}: unknown fields {sorted(unknown)}")
        device = DeviceConfig(**record)
        devices[device.name] = device
    return devices


def get_device(name: str) -> DeviceConfig:
    devices = load_devices()
    if name not in devices:
        raise UserError(f"unknown device {name!r}; known: {', '.join(sorted(devices))}")
    return devices[name]


def add_device(device: DeviceConfig, replace: bool = False) -> None:
    """Register ``device``; refuses built-in names, bad names and (unless ``replace``) duplicates."""
    if not _NAME.match(device.name):
        raise UserError(
            f"bad device name {device.name!r}: use lower-case letters, digits, '.', '_' or '-'"
        )
    if device.name in BUILTIN:
        raise UserError(f"{device.name!r} is a built-in device and cannot be redefined")
    if device.transport not in TRANSPORTS[1:4]:
        raise UserError(f"unknown transport {device.transport!r}")
    devices = _user_devices()
    if device.name in devices and not replace:
        raise UserError(f"device {device.name!r} exists; remove it first or pass --replace")
    devices[device.name] = device
    _save(devices)


def remove_device(name: str) -> None:
    if name in BUILTIN:
        raise UserError(f"{name!r} is a built-in device and cannot be removed")
    devices = _user_devices()
    if name not in devices:
        raise UserError(
            f"unknown device {name!r}; registered: {', '.join(sorted(devices)) or 'none'}"
        )
    del devices[name]
    _save(devices)


def _user_devices() -> dict[str, DeviceConfig]:
    return {k: v for k, v in load_devices().items() if k not in BUILTIN}


def _save(devices: dict[str, DeviceConfig]) -> None:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "schema_version": SCHEMA_VERSION,
        "kind": "hwnas-devices",
        "devices": [devices[n].to_dict() for n in sorted(devices)],
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".devices-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
