"""The TCP transport against a real agent process: token, malformed input, timeouts, queueing."""

from __future__ import annotations

import base64
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from hwnas.devices.connect import open_device
from hwnas.devices.registry import DeviceConfig
from hwnas.errors import DeviceError
from tests.support.agents import tcp_agent
from tests.support.models import conv_relu_onnx, conv_relu_reference


class Raw:
    """A raw line client, to send what a well-behaved client never would."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.file = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def ask(self, message: dict) -> dict:
        self.send(json.dumps(message).encode() + b"\n")
        return self.recv()

    def recv(self) -> dict:
        line = self.file.readline()
        assert line, "connection closed"
        return json.loads(line)

    def closed(self) -> bool:
        return self.file.readline() == b""

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory):
    with tcp_agent(tmp_path_factory.mktemp("tcp"), "--idle-timeout", "3") as a:
        yield a


def device(agent, token_file: Path | None = None) -> DeviceConfig:
    return DeviceConfig(
        "tcp-test",
        "tcp",
        host="127.0.0.1",
        port=agent.port,
        token_file=str(token_file or agent.token_file),
    )


def test_no_token_is_refused_and_connection_closed(agent) -> None:
    c = Raw(agent.port)
    reply = c.ask({"v": 1, "id": 1, "op": "hello"})
    assert reply["ok"] is False and reply["error"]["code"] == "unauthorized"
    assert c.closed()


def test_wrong_token_is_refused(agent, tmp_path: Path) -> None:
    c = Raw(agent.port)
    reply = c.ask({"v": 1, "id": 1, "op": "auth", "token": "0" * 64})
    assert reply["error"]["code"] == "unauthorized"
    assert c.closed()
    wrong = tmp_path / "wrong"
    wrong.write_text("f" * 64)
    with (
        pytest.raises(DeviceError, match="authentication refused"),
        open_device(device(agent, wrong), timeout_s=10),
    ):
        pass


def test_garbage_before_auth_is_refused(agent) -> None:
    c = Raw(agent.port)
    c.send(b"\x00\xff garbage\n")
    assert c.recv()["error"]["code"] == "unauthorized"
    assert c.closed()


def test_oversized_auth_is_refused(agent) -> None:
    c = Raw(agent.port)
    c.send(b"x" * 10_000 + b"\n")
    assert c.recv()["error"]["code"] == "unauthorized"


def test_right_token_measures_a_real_onnx_model(agent) -> None:
    model = conv_relu_onnx(size=24)
    with open_device(device(agent), timeout_s=30) as client:
        m = client.measure(model, warmup=3, repeats=15)
        x, (y,) = client.infer(model)
    assert m.stats.n == 15 and 0 < m.stats.p10_ms <= m.stats.median_ms <= m.stats.p90_ms
    assert m.runtime["name"] == "onnxruntime"
    assert m.settings["threads"] == 1 and m.settings["affinity"] == [m.settings["core"]]
    np.testing.assert_allclose(y, conv_relu_reference(model, x[0]), rtol=1e-5, atol=1e-5)


def test_malformed_after_auth_gets_error_and_connection_goes_on(agent) -> None:
    c = Raw(agent.port)
    assert c.ask({"v": 1, "id": 1, "op": "auth", "token": agent.token})["ok"]
    c.send(b"{not json\n")
    assert c.recv()["error"]["code"] == "bad_json"
    c.send(b'{"v": 1, "id": 2, "op": "measure", "model": {"data_b64": "!!"}}\n')
    assert c.recv()["error"]["code"] == "bad_request"
    assert c.ask({"v": 1, "id": 3, "op": "hello"})["ok"]
    c.close()


def test_idle_client_is_dropped(agent) -> None:
    c = Raw(agent.port)
    assert c.ask({"v": 1, "id": 1, "op": "auth", "token": agent.token})["ok"]
    reply = c.recv()  # the agent speaks first after --idle-timeout 3 s
    assert reply["error"]["code"] == "timeout"
    assert c.closed()


def test_concurrent_measurements_queue_and_never_overlap(agent) -> None:
    model = base64.b64encode(conv_relu_onnx(size=32)).decode()
    windows: list[list[float]] = []

    def client(i: int) -> None:
        c = Raw(agent.port)
        c.ask({"v": 1, "id": 0, "op": "auth", "token": agent.token})
        r = c.ask(
            {
                "v": 1,
                "id": i,
                "op": "measure",
                "model": {"data_b64": model},
                "warmup": 5,
                "repeats": 40,
            }
        )
        windows.append(r["result"]["window_s"])
        c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(windows) == 3
    windows.sort()
    for (_, end), (start, _) in zip(windows, windows[1:]):
        assert start >= end, f"measurements overlapped: {windows}"
    assert agent.proc.poll() is None  # and the agent is still serving
