"""``open_device`` against a busy TCP agent: the busy message, and retries until there is room."""

from __future__ import annotations

import logging
import socket
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from hwnas.devices.client import AgentBusy, AgentClient
from hwnas.devices.connect import open_device
from hwnas.devices.registry import DeviceConfig
from hwnas.errors import DeviceError
from tests.support.agents import tcp_agent

FULL = ("--max-unauthenticated", "2", "--max-per-address", "2", "--auth-timeout", "300")


class Lines:
    """A fake channel that answers every request with the next canned line."""

    label = "agent at 192.0.2.1:7788"

    def __init__(self, *lines: bytes) -> None:
        self.lines = list(lines)

    def send(self, data: bytes) -> None:
        pass

    def recv_line(self, timeout_s: float) -> bytes:
        return self.lines.pop(0)

    def close(self) -> None:
        pass


def test_a_connection_level_busy_reply_is_not_dropped_as_stale() -> None:
    busy = b'{"v":1,"id":null,"ok":false,"error":{"code":"busy","message":"too many x"}}\n'
    client = AgentClient(Lines(busy), "dev")  # type: ignore[arg-type]
    with pytest.raises(
        AgentBusy, match=r"^agent at 192.0.2.1:7788 is busy: too many x; try again$"
    ):
        client.request("auth", token="t")
    stale = b'{"v":1,"id":99,"ok":true,"result":{}}\n'
    client = AgentClient(Lines(stale, b'{"v":1,"id":1,"ok":true,"result":{"a":1}}\n'), "dev")  # type: ignore[arg-type]
    assert client.request("hello") == {"a": 1}


def device(agent) -> DeviceConfig:
    return DeviceConfig(
        "busy", "tcp", host="127.0.0.1", port=agent.port, token_file=str(agent.token_file)
    )


def hold_every_place(stack: ExitStack, port: int) -> None:
    for _ in range(2):
        stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=60))
    with socket.create_connection(("127.0.0.1", port), timeout=60) as probe:
        assert b'"busy"' in probe.makefile("rb").readline()


def test_busy_agent_is_retried_until_it_has_room(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="hwnas.devices.connect")
    result: dict = {}

    def host(agent) -> None:
        try:
            with open_device(device(agent), timeout_s=60, busy_wait_s=300) as client:
                result["hello"] = client.hello()
        except DeviceError as exc:  # reported below
            result["error"] = exc

    with tcp_agent(tmp_path, *FULL) as agent:
        with ExitStack() as strangers:
            hold_every_place(strangers, agent.port)
            thread = threading.Thread(target=host, args=(agent,))
            thread.start()
            deadline = time.monotonic() + 120
            while not any("is busy" in r.getMessage() for r in caplog.records):
                assert time.monotonic() < deadline and thread.is_alive(), result
                time.sleep(0.05)
        thread.join(300)  # the strangers hung up: the next try gets in
    assert "error" not in result and result["hello"]["protocol_version"] == 1
    first = next(r for r in caplog.records if "is busy" in r.getMessage())
    assert first.levelno == logging.WARNING
    assert first.getMessage().startswith(
        f"agent at 127.0.0.1:{agent.port} is busy: too many unauthenticated connections; try again"
    )


def test_busy_agent_gives_up_after_the_wait(tmp_path: Path) -> None:
    with tcp_agent(tmp_path, *FULL) as agent, ExitStack() as strangers:
        hold_every_place(strangers, agent.port)
        with (
            pytest.raises(DeviceError, match=r"is busy: .*; try again \(still busy after \d+ tr"),
            open_device(device(agent), timeout_s=60, busy_wait_s=0.5),
        ):
            pass
