"""``--exec`` devices: any command that runs the agent on stdio, with or without pushing its code."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest

from hwnas.cli import main
from hwnas.devices.connect import open_device
from hwnas.devices.registry import DeviceConfig
from hwnas.errors import DeviceError
from tests.support.models import conv_relu_onnx, conv_relu_reference

ROOT = Path(__file__).resolve().parents[2]
PY = shlex.quote(sys.executable)


@pytest.fixture(autouse=True)
def agent_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands run with the test's environment; make the installed agent importable for them."""
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    )


def exec_device(command: str, push: bool = False) -> DeviceConfig:
    return DeviceConfig("ex", "exec", command=command, push=push)


def test_installed_agent_over_exec_measures_and_infers() -> None:
    model = conv_relu_onnx(size=12)
    with open_device(exec_device(f"{PY} -m device_agents stdio"), timeout_s=30) as client:
        m = client.measure(model, warmup=2, repeats=6)
        x, (y,) = client.infer(model)
    assert m.stats.n == 6
    np.testing.assert_allclose(y, conv_relu_reference(model, x[0]), rtol=1e-5, atol=1e-5)


def test_pushed_agent_runs_from_a_versioned_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH")  # the target must not see the host's copy
    cache = tmp_path / "target-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    device = exec_device(f"env -u PYTHONPATH {PY} -I", push=True)
    with open_device(device, timeout_s=30) as client:
        fp = client.fingerprint()
    (tag_dir,) = (cache / "hwnas" / "agents").iterdir()
    assert (tag_dir / "COMPLETE").exists() and (tag_dir / "device_agents" / "service.py").exists()
    assert fp["agent_version"] == tag_dir.name.split("-")[0]
    stamp = (tag_dir / "COMPLETE").stat().st_mtime_ns
    with open_device(device, timeout_s=30) as client:
        assert client.measure(conv_relu_onnx(size=8), repeats=3).stats.n == 3
    assert (tag_dir / "COMPLETE").stat().st_mtime_ns == stamp  # unpacked once


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("/nonexistent/agent-binary stdio", "cannot start"),
        (f"{PY} -c 'import sys; sys.exit(3)'", "closed the connection .exit status 3"),
        (f"{PY} -c 'import sys; sys.stderr.write(\"no numpy here\\n\")'", "no numpy here"),
        # echo may exit before or after the request is written: both paths must say the same.
        ("echo hello", "not an hwnas agent.*printed b'hello|printed b'hello.*not an hwnas agent"),
        ("sh -c 'echo hello; sleep 5'", "not an hwnas agent.*printed b'hello"),
        ("cat", "not an hwnas agent"),
    ],
)
def test_bad_commands_give_clear_errors(command: str, message: str) -> None:
    with pytest.raises(DeviceError, match=message), open_device(exec_device(command), timeout_s=10):
        pass


def test_silent_command_times_out() -> None:
    with (
        pytest.raises(DeviceError, match="no answer within 2 s"),
        open_device(exec_device("sleep 30"), timeout_s=2),
    ):
        pass


def test_cli_add_probe_measure(tmp_path: Path, capsys) -> None:
    assert main(["devices", "add", "board", "--exec", f"{PY} -m device_agents stdio"]) == 0
    assert main(["devices", "probe", "board", "--json"]) == 0
    probe = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert probe["transport"] == "exec" and probe["fingerprint"]["runtimes"]
    model = tmp_path / "m.onnx"
    model.write_bytes(conv_relu_onnx(size=8))
    assert main(["measure", str(model), "--device", "board", "--repeats", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4
