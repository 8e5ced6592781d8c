"""The emulated Raspberry Pi 4 (tests/support/emulated_pi.py) runs what the device agent needs.

Inside qemu-user: an aarch64 Python 3.11 that sees a Cortex-A72 ``/proc/cpuinfo``, imports numpy,
onnxruntime and ai_edge_litert, runs an ONNX Conv+Relu and a TFLite FULLY_CONNECTED model to the
host's numbers (1e-5), and talks JSON lines over stdin/stdout the way ``device_agents stdio``
will. The rootfs is built once per session by the ``emulated_pi`` fixture (~15-40 s).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.support import emulated_pi as emulated_pi_module
from tests.support.emulated_pi import PI4_MODEL, EmulatedPi, debian_mirror, pi4_cpuinfo
from tests.support.tiny_tflite import fully_connected_tflite

_CPUINFO = "import json; print(json.dumps(open('/proc/cpuinfo').read()))"


def _guest_json(pi: EmulatedPi, *argv: str) -> object:
    """Run the guest ``python3 *argv`` and parse the JSON on the last line of its stdout."""
    done = pi.run(argv)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_guest_is_aarch64_python_311(emulated_pi: EmulatedPi) -> None:
    code = (
        "import json, platform, sys; print(json.dumps([platform.machine(), sys.version_info[:2]]))"
    )
    assert _guest_json(emulated_pi, "-c", code) == ["aarch64", [3, 11]]


def test_cpuinfo_is_cortex_a72(emulated_pi: EmulatedPi) -> None:
    text = _guest_json(emulated_pi, "-c", _CPUINFO)
    assert re.findall(r"CPU implementer\s*: (\S+)", text)[0] == "0x41"  # Arm Ltd
    assert set(re.findall(r"CPU part\s*: (\S+)", text)) == {"0xd08"}  # Cortex-A72


def test_cpuinfo_is_raspberry_pi_4(emulated_pi: EmulatedPi) -> None:
    if emulated_pi.cpuinfo_source == "qemu":
        pytest.skip("this qemu (8.1+) serves its own /proc/cpuinfo and ignores ROOT/proc/cpuinfo")
    text = _guest_json(emulated_pi, "-c", _CPUINFO)
    assert text == pi4_cpuinfo()
    assert re.search(r"^Model\s*: (.+)$", text, re.M).group(1) == PI4_MODEL
    assert re.search(r"^Hardware\s*: (\S+)$", text, re.M).group(1) == "BCM2835"
    assert len(re.findall(r"^processor\s*:", text, re.M)) == 4


def test_runtimes_import_without_warnings(emulated_pi: EmulatedPi) -> None:
    # -W error: under qemu's default "max" CPU, numpy's matmul raises spurious FP warnings.
    code = (
        "import json, numpy as np, onnxruntime as ort, ai_edge_litert\n"
        "from ai_edge_litert.interpreter import Interpreter\n"
        "a = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)\n"
        "print(json.dumps([np.__version__, ort.__version__, ort.get_available_providers(),"
        " float((a @ a).sum())]))"
    )
    numpy_version, ort_version, providers, total = _guest_json(
        emulated_pi, "-W", "error", "-c", code
    )
    assert int(numpy_version.split(".")[0]) >= 2
    assert int(ort_version.split(".")[0]) >= 1
    assert "CPUExecutionProvider" in providers
    a = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    assert total == pytest.approx(float((a @ a).sum()), rel=1e-4)


def _conv_relu_onnx(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    weight = np.random.default_rng(1).standard_normal((8, 3, 3, 3)).astype(np.float32)
    bias = np.random.default_rng(2).standard_normal(8).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_relu",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 8, 16, 16])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


_RUN_ONNX = """
import sys, numpy as np, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
np.save(sys.argv[3], session.run(None, {"x": np.load(sys.argv[2])})[0])
print('"ok"')
"""


def test_onnx_conv_relu_matches_host(emulated_pi: EmulatedPi, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model, x_path, y_path = tmp_path / "conv_relu.onnx", tmp_path / "x.npy", tmp_path / "y.npy"
    _conv_relu_onnx(model)
    x = np.random.default_rng(3).standard_normal((1, 3, 16, 16)).astype(np.float32)
    np.save(x_path, x)
    assert _guest_json(emulated_pi, "-c", _RUN_ONNX, str(model), str(x_path), str(y_path)) == "ok"
    guest = np.load(y_path)
    host = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert guest.shape == (1, 8, 16, 16) and guest.dtype == np.float32
    assert 0.1 < float(np.mean(guest == 0)) < 0.9  # the Relu really clipped part of the output
    np.testing.assert_allclose(guest, host[0], rtol=0, atol=1e-5)


_RUN_TFLITE = """
import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.load(sys.argv[2]))
interpreter.invoke()
np.save(sys.argv[3], interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
print('"ok"')
"""


def test_tflite_fully_connected_matches_host(emulated_pi: EmulatedPi, tmp_path: Path) -> None:
    litert = pytest.importorskip("ai_edge_litert.interpreter")
    rng = np.random.default_rng(4)
    weight = rng.standard_normal((10, 32)).astype(np.float32)
    bias = rng.standard_normal(10).astype(np.float32)
    x = rng.standard_normal((1, 32)).astype(np.float32)
    model, x_path, y_path = tmp_path / "fc.tflite", tmp_path / "x.npy", tmp_path / "y.npy"
    model.write_bytes(fully_connected_tflite(weight, bias, relu=True))
    np.save(x_path, x)
    assert _guest_json(emulated_pi, "-c", _RUN_TFLITE, str(model), str(x_path), str(y_path)) == "ok"
    guest = np.load(y_path)

    interpreter = litert.Interpreter(model_path=str(model), num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    host = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert guest.shape == (1, 10)
    np.testing.assert_allclose(guest, host, rtol=0, atol=1e-5)
    np.testing.assert_allclose(guest, np.maximum(x @ weight.T + bias, 0), rtol=0, atol=1e-4)


_ECHO_AGENT = """
import json, platform, sys
for line in sys.stdin:
    request = json.loads(line)
    reply = {"id": request["id"], "echo": request["payload"], "machine": platform.machine()}
    sys.stdout.write(json.dumps(reply) + "\\n")
    sys.stdout.flush()
"""


def _read_line(process: subprocess.Popen[str], timeout_s: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise TimeoutError(f"no reply from the emulated agent within {timeout_s} s")
    return process.stdout.readline()


def test_json_lines_round_trip_over_stdio(emulated_pi: EmulatedPi) -> None:
    argv = emulated_pi.command(["-u", "-c", _ECHO_AGENT])
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            for request_id, payload in enumerate([{"op": "ping"}, [1.5, "é", None], "x" * 5000]):
                process.stdin.write(json.dumps({"id": request_id, "payload": payload}) + "\n")
                process.stdin.flush()
                reply = json.loads(_read_line(process, timeout_s=60))
                assert reply == {"id": request_id, "echo": payload, "machine": "aarch64"}
            process.stdin.close()  # closing stdin ends the agent
            assert process.wait(timeout=60) == 0, process.stderr.read()
        finally:
            process.kill()


def test_shell_command_runs_pushed_code_in_a_clean_env(
    emulated_pi: EmulatedPi, tmp_path: Path
) -> None:
    (tmp_path / "agent_pkg").mkdir()
    (tmp_path / "agent_pkg" / "__init__.py").write_text(
        "import json, os, platform\nSEEN = [platform.machine(), sorted(os.environ)]\n"
    )
    pi = emulated_pi.with_pythonpath(tmp_path)
    argv = ["-c", "import json, agent_pkg; print(json.dumps(agent_pkg.SEEN))"]
    shell = pi.shell_command(argv)
    assert shlex.split(shell) == pi.command(argv)
    env = {**os.environ, "HWNAS_HOST_ONLY": "1"}
    done = subprocess.run(shell, shell=True, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    machine, guest_env = json.loads(done.stdout)
    assert machine == "aarch64"
    assert "HWNAS_HOST_ONLY" not in guest_env  # env -i: nothing leaks from the host
    assert {"HOME", "PYTHONPATH", "QEMU_CPU"} <= set(guest_env)


def test_debian_mirror_parses_apt_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    deb822 = (
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n"
    )
    assert emulated_pi_module._deb822_uris(deb822) == [
        ("http://mirror.example/debian", ["bookworm", "bookworm-updates"]),
        ("http://mirror.example/debian-security", ["bookworm-security"]),
    ]
    one_line = (
        "deb [arch=amd64 signed-by=/k.gpg] https://m.example/debian bookworm main\n#deb x y\n"
    )
    assert emulated_pi_module._one_line_uris(one_line) == [
        ("https://m.example/debian", ["bookworm"])
    ]
    monkeypatch.setenv("HWNAS_DEBIAN_MIRROR", "http://override.example/debian/")
    assert debian_mirror() == "http://override.example/debian"
