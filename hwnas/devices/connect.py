"""Open a connection to a registered device and get an :class:`AgentClient` for it."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from contextlib import contextmanager

from hwnas.devices.bundle import BOOTSTRAP, bootstrap_line
from hwnas.devices.channels import Channel, ProcessChannel, SocketChannel, local_agent_argv
from hwnas.devices.client import DEFAULT_TIMEOUT_S, AgentClient, AgentError
from hwnas.devices.registry import DeviceConfig, get_device
from hwnas.errors import DeviceError, UserError


def open_channel(device: DeviceConfig, timeout_s: float, trust_new_host: bool = False) -> Channel:
    """A live channel to ``device``'s agent (authenticated for TCP)."""
    if device.transport == "local":
        argv, env = local_agent_argv()
        return ProcessChannel(argv, "local agent", env=env)
    if device.transport == "exec":
        argv = shlex.split(device.command or "")
        if not argv:
            raise UserError(f"device {device.name!r} has an empty --exec command")
        label = f"device {device.name} ({argv[0]})"
        if not device.push:
            return ProcessChannel(argv, label)
        channel = ProcessChannel([*argv, "-c", BOOTSTRAP], label)
        channel.send(bootstrap_line())
        return channel
    if device.transport == "tcp":
        return SocketChannel(device.host or "127.0.0.1", int(device.port or 0), timeout_s)
    if device.transport == "ssh":
        from hwnas.devices.ssh import SSHChannel

        return SSHChannel(device, timeout_s, trust_new_host=trust_new_host)
    if device.transport == "reference":
        raise UserError(
            f"device {device.name!r} is a reference LUT (published numbers); it has no agent "
            f"to measure on. Register a real device with 'hwnas devices add'."
        )
    raise UserError(f"device {device.name!r}: unknown transport {device.transport!r}")


@contextmanager
def open_device(
    name_or_config: str | DeviceConfig,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    trust_new_host: bool = False,
) -> Iterator[AgentClient]:
    """Context manager: an :class:`AgentClient` to the device, checked with a ``hello``."""
    device = get_device(name_or_config) if isinstance(name_or_config, str) else name_or_config
    channel = open_channel(device, timeout_s, trust_new_host)
    client = AgentClient(channel, device.name, timeout_s=timeout_s)
    try:
        if device.transport == "tcp":
            token = _read_token(device)
            try:
                client.request("auth", token=token)
            except AgentError as exc:
                raise DeviceError(
                    f"{channel.label}: authentication refused ({exc.code}); check the token file"
                ) from None
        client.hello()
        yield client
    finally:
        client.close()


def _read_token(device: DeviceConfig) -> str:
    if not device.token_file:
        raise UserError(f"device {device.name!r} has no --token-file")
    try:
        with open(device.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    except OSError as exc:
        raise UserError(
            f"device {device.name!r}: cannot read token file {device.token_file}: {exc.strerror}"
        ) from None
    if not token:
        raise UserError(f"device {device.name!r}: token file {device.token_file} is empty")
    return token
