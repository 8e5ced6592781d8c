"""Open a connection to a registered device and get an :class:`AgentClient` for it."""

from __future__ import annotations

import logging
import random
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hwnas.devices.bundle import BOOTSTRAP, bootstrap_line
from hwnas.devices.channels import Channel, ProcessChannel, SocketChannel, local_agent_argv
from hwnas.devices.client import DEFAULT_TIMEOUT_S, AgentBusy, AgentClient, AgentError
from hwnas.devices.registry import DeviceConfig, get_device
from hwnas.errors import DeviceError, UserError

log = logging.getLogger(__name__)

BUSY_WAIT_S = 60.0  # how long a busy TCP agent is tried again before giving up
BUSY_FIRST_DELAY_S = 0.25  # first back-off; doubles up to BUSY_MAX_DELAY_S, with jitter
BUSY_MAX_DELAY_S = 5.0
BUSY_MAX_TRIES = 100


def open_channel(device: DeviceConfig, timeout_s: float, trust_new_host: bool = False) -> Channel:
    """A live channel to ``device``'s agent (for TCP, not yet authenticated)."""
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
    busy_wait_s: float = BUSY_WAIT_S,
) -> Iterator[AgentClient]:
    """Context manager: an :class:`AgentClient` to the device, checked with a ``hello``.

    A TCP agent that answers ``busy`` (at capacity) is tried again with back-off for up to
    ``busy_wait_s`` seconds before the busy message is raised as a :class:`DeviceError`.
    """
    device = get_device(name_or_config) if isinstance(name_or_config, str) else name_or_config
    if device.transport == "tcp":
        client = _open_tcp(device, timeout_s, busy_wait_s)
    else:
        channel = open_channel(device, timeout_s, trust_new_host)
        client = AgentClient(channel, device.name, timeout_s=timeout_s)
    try:
        client.hello()
        yield client
    finally:
        client.close()


def _open_tcp(device: DeviceConfig, timeout_s: float, busy_wait_s: float) -> AgentClient:
    """An authenticated client of a TCP agent, retrying while the agent says ``busy``."""
    token = _read_token(device)
    started_s = time.monotonic()
    delay_s = BUSY_FIRST_DELAY_S
    for attempt in range(1, BUSY_MAX_TRIES + 1):
        channel = open_channel(device, timeout_s)
        client = AgentClient(channel, device.name, timeout_s=timeout_s)
        try:
            client.request("auth", token=token)
            return client
        except AgentBusy as exc:
            client.close()
            left_s = busy_wait_s - (time.monotonic() - started_s)
            if left_s <= 0 or attempt == BUSY_MAX_TRIES:
                raise DeviceError(f"{exc} (still busy after {attempt} tries)") from None
            wait_s = min(left_s, delay_s * random.uniform(0.5, 1.0))
            if attempt == 1:
                log.warning("%s; retrying for up to %.0f s", exc, busy_wait_s)
            log.info("%s; try %d, next in %.2f s", exc, attempt, wait_s)
            time.sleep(wait_s)
            delay_s = min(delay_s * 2, BUSY_MAX_DELAY_S)
        except AgentError as exc:
            client.close()
            raise DeviceError(
                f"{channel.label}: authentication refused ({exc.code}); check the token file"
            ) from None
        except BaseException:
            client.close()
            raise
    raise AssertionError("unreachable: the last try returns or raises")


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
