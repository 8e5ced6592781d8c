"""A real TCP agent under a flood of strangers: hosts stay served, strangers hear ``busy``.

The agents here have small limits and a long auth timeout, so that a few silent connections hold
every unauthenticated place for the whole test: what is refused and what is served does not
depend on timing. The agent's stderr is a pipe nobody reads (see ``tcp_agent``) and it logs at
DEBUG, as an agent whose log is not drained would.
"""

from __future__ import annotations

import json
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from hwnas.devices.connect import open_device
from hwnas.devices.registry import DeviceConfig
from hwnas.errors import DeviceError
from tests.support.agents import TCPAgent, tcp_agent
from tests.support.models import conv_relu_onnx

GARBAGE = (
    b"\x00\xff\xfe not json\n",
    b'{"v": 1, "op": "au',  # half a message, then the stranger hangs up
    b'{"v": 1, "id": 1, "op": "auth", "token": "' + b"0" * 64 + b'"}\n',
    b"x" * 6000 + b"\n",  # an oversized first line
)
SMALL = ("--max-unauthenticated", "4", "--max-per-address", "4", "--auth-timeout", "300")


def device(agent: TCPAgent) -> DeviceConfig:
    return DeviceConfig(
        "tcp-flood", "tcp", host="127.0.0.1", port=agent.port, token_file=str(agent.token_file)
    )


def first_reply(sock: socket.socket) -> dict | None:
    """The first line the agent sends on ``sock``, or ``None`` if it closes without one."""
    data = b""
    while b"\n" not in data:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return json.loads(data.split(b"\n")[0]) if b"\n" in data else None


def stranger(port: int, payload: bytes) -> str:
    """One garbage connection; returns the error code the agent answered, or ``closed``."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # refused before it finished sending
            pass
        reply = first_reply(sock)
    return reply["error"]["code"] if reply else "closed"


def flood(port: int, threads: int, per_thread: int) -> Counter:
    """``threads x per_thread`` garbage connections from many threads; counts the answers."""
    outcomes: Counter = Counter()
    lock = threading.Lock()

    def run(i: int) -> None:
        for j in range(per_thread):
            code = stranger(port, GARBAGE[(i + j) % len(GARBAGE)])
            with lock:
                outcomes[code] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(300)
    return outcomes


@contextmanager
def silent_strangers(port: int, count: int) -> Iterator[None]:
    """``count`` connections that never send a byte, then one more that must be told busy."""
    with ExitStack() as stack:
        for _ in range(count):
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=60))
        with socket.create_connection(("127.0.0.1", port), timeout=60) as probe:
            reply = first_reply(probe)  # the agent admits in order: the silent ones are in
        assert reply is not None and reply["error"]["code"] == "busy", reply
        yield


@pytest.fixture()
def agent(tmp_path: Path) -> Iterator[TCPAgent]:
    with tcp_agent(tmp_path, *SMALL, "--log-level", "DEBUG") as a:
        yield a


def test_flood_leaves_an_authenticated_client_served(agent: TCPAgent) -> None:
    model = conv_relu_onnx(size=16)
    with open_device(device(agent), timeout_s=120) as host:
        host.measure(model, warmup=1, repeats=3)
        with silent_strangers(agent.port, 4):
            outcomes: Counter = Counter()
            flooding = threading.Thread(
                target=lambda: outcomes.update(flood(agent.port, threads=8, per_thread=150))
            )
            flooding.start()
            served = 0
            while flooding.is_alive() and served < 200:  # measure while the flood runs
                served += host.measure(model, warmup=0, repeats=2).stats.n == 2
            flooding.join(300)
            assert not flooding.is_alive()
            assert sum(outcomes.values()) == 8 * 150
            assert set(outcomes) <= {"busy", "closed"} and outcomes["busy"] > 0, outcomes
            m = host.measure(model, warmup=1, repeats=3)  # the session outlived the flood
            assert m.stats.n == 3 and served >= 1
            with (
                pytest.raises(DeviceError, match=r"is busy: too many unauthenticated .*try again"),
                open_device(device(agent), timeout_s=60, busy_wait_s=0),
            ):
                pass
        with open_device(device(agent), timeout_s=60) as late:  # places freed: a new host gets in
            assert late.hello()["protocol_version"] == 1
    assert agent.proc.poll() is None


def test_garbage_without_a_full_house_is_answered_and_forgotten(agent: TCPAgent) -> None:
    outcomes = flood(agent.port, threads=4, per_thread=40)
    assert sum(outcomes.values()) == 160
    assert set(outcomes) <= {"unauthorized", "busy", "closed"} and outcomes["unauthorized"] > 0
    with silent_strangers(agent.port, 4):  # all 4 places free again: nothing leaked
        pass


def test_per_address_cap(tmp_path: Path) -> None:
    extra = ("--max-unauthenticated", "8", "--max-per-address", "2", "--auth-timeout", "300")
    with tcp_agent(tmp_path, *extra) as agent, ExitStack() as stack:
        for _ in range(2):
            stack.enter_context(socket.create_connection(("127.0.0.1", agent.port), timeout=60))
        with socket.create_connection(("127.0.0.1", agent.port), timeout=60) as probe:
            reply = first_reply(probe)
    assert reply is not None and reply["error"] == {
        "code": "busy",
        "message": "too many unauthenticated connections from 127.0.0.1",
    }


def test_auth_deadline_is_for_the_whole_message(tmp_path: Path) -> None:
    """A stranger trickling a byte at a time is cut off, however often it sends."""
    with (
        tcp_agent(tmp_path, "--auth-timeout", "2") as agent,
        socket.create_connection(("127.0.0.1", agent.port), timeout=60) as sock,
    ):
        sock.settimeout(0.25)
        data, sent = b"", 0
        while sent < 120 and b"\n" not in data:  # 120 bytes at 4 per second: 30 s > 2 s
            try:
                sock.sendall(b" ")
                sent += 1
                data += sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
    assert sent < 120
    assert json.loads(data.split(b"\n")[0])["error"]["code"] == "timeout"


def test_sessions_have_their_own_limit(tmp_path: Path) -> None:
    with (
        tcp_agent(tmp_path, "--max-clients", "1") as agent,
        open_device(device(agent), timeout_s=60) as first,
    ):
        with (
            pytest.raises(DeviceError, match="is busy: too many authenticated sessions; try"),
            open_device(device(agent), timeout_s=60, busy_wait_s=0),
        ):
            pass
        assert first.hello()["protocol_version"] == 1
