"""The SSH transport against a real sshd on 127.0.0.1 (started by the fixture)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from hwnas.cli import main
from hwnas.devices.connect import open_device
from hwnas.devices.registry import DeviceConfig
from hwnas.errors import DeviceError
from tests.support.models import conv_relu_onnx, conv_relu_reference
from tests.support.sshd import sshd, sshd_available

ok, why = sshd_available()
pytestmark = [pytest.mark.ssh, pytest.mark.skipif(not ok, reason=why)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    with sshd(tmp_path_factory.mktemp("sshd")) as s:
        yield s


@pytest.fixture
def fake_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ~/.ssh/known_hosts of the real user may vouch for the test server."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def config(server, tmp_path: Path, **kw) -> DeviceConfig:
    fields = dict(
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        key_file=str(server.user_key),
        known_hosts=str(server.known_hosts),
        python=sys.executable,  # the device's Python must have numpy + onnxruntime
        remote_dir=str(tmp_path / "remote-cache"),
    )
    fields.update(kw)
    return DeviceConfig("sshdev", "ssh", **fields)


def test_measure_and_infer_over_ssh(server, tmp_path: Path, fake_home: Path) -> None:
    model = conv_relu_onnx(size=20)
    with open_device(config(server, tmp_path), timeout_s=30) as client:
        fp = client.fingerprint()
        m = client.measure(model, warmup=2, repeats=10)
        x, (y,) = client.infer(model)
    assert fp["machine"] and fp["runtimes"]["onnxruntime"]
    assert m.stats.n == 10 and m.stats.median_ms > 0
    np.testing.assert_allclose(y, conv_relu_reference(model, x[0]), rtol=1e-5, atol=1e-5)
    pushed = list((tmp_path / "remote-cache").iterdir())
    assert len(pushed) == 1 and (pushed[0] / "COMPLETE").exists()
    assert (pushed[0] / "device_agents" / "service.py").exists()


def test_agent_code_is_pushed_once_per_version(server, tmp_path: Path, fake_home: Path) -> None:
    cfg = config(server, tmp_path)
    with open_device(cfg, timeout_s=30):
        pass
    marker = next((tmp_path / "remote-cache").iterdir()) / "COMPLETE"
    stamp = marker.stat().st_mtime_ns
    with open_device(cfg, timeout_s=30) as client:
        assert client.hello()["protocol_version"] == 1
    assert marker.stat().st_mtime_ns == stamp


def test_unknown_host_key_is_refused(server, tmp_path: Path, fake_home: Path) -> None:
    with (
        pytest.raises(DeviceError, match="unknown host key"),
        open_device(config(server, tmp_path, known_hosts=None), timeout_s=10),
    ):
        pass


def test_changed_host_key_is_refused(server, tmp_path: Path, fake_home: Path) -> None:
    forged = tmp_path / "forged_known_hosts"
    other = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    forged.write_text(f"[127.0.0.1]:{server.port} ssh-ed25519 {other}\n")
    with (
        pytest.raises(DeviceError, match="CHANGED"),
        open_device(config(server, tmp_path, known_hosts=str(forged)), timeout_s=10),
    ):
        pass


def test_trust_new_host_records_the_key(server, tmp_path: Path, fake_home: Path) -> None:
    cfg = config(server, tmp_path, known_hosts=None)
    with open_device(cfg, timeout_s=30, trust_new_host=True):
        pass
    with open_device(cfg, timeout_s=30) as client:  # now known: no trust flag needed
        assert client.hello()["protocol_version"] == 1


def test_connection_refused_names_host_and_cause(server, tmp_path: Path, fake_home: Path) -> None:
    from tests.support.sshd import _free_port

    with (
        pytest.raises(DeviceError, match=r"127\.0\.0\.1:\d+.*(refused|Unable to connect)"),
        open_device(config(server, tmp_path, port=_free_port()), timeout_s=5),
    ):
        pass


def test_missing_python_on_device_is_reported(server, tmp_path: Path, fake_home: Path) -> None:
    with (
        pytest.raises(DeviceError, match=r"closed the connection.*(not found|No such file)"),
        open_device(config(server, tmp_path, python="/nonexistent/python3"), timeout_s=10),
    ):
        pass


def test_cli_devices_add_then_measure(server, tmp_path: Path, fake_home: Path, capsys) -> None:
    model_path = tmp_path / "m.onnx"
    model_path.write_bytes(conv_relu_onnx(size=16))
    argv = [
        "devices", "add", "pi-ssh",
        "--ssh", f"{server.user}@127.0.0.1:{server.port}",
        "--key", str(server.user_key),
        "--known-hosts", str(server.known_hosts),
        "--python", sys.executable,
        "--remote-dir", str(tmp_path / "remote-cache"),
    ]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["measure", str(model_path), "--device", "pi-ssh", "--repeats", "8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "pi-ssh" and out["n"] == 8
    assert out["p10_ms"] <= out["median_ms"] <= out["p90_ms"]
    assert out["fingerprint"]["cpu_model"]
