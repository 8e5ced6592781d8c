"""The agent on an emulated Raspberry Pi 4 (arm64 userland, qemu-user), reached with ``--exec``.

Proves on every CI run that the device side runs with only numpy and a runtime on aarch64, with
its code pushed by the host. Timings under emulation mean nothing: these tests assert behaviour.
"""

from __future__ import annotations

import json

import numpy as np

from hwnas.cli import main
from hwnas.devices.connect import open_device
from hwnas.devices.registry import get_device
from tests.support.models import conv_relu_onnx, conv_relu_reference
from tests.support.tiny_tflite import fully_connected_tflite


def register(emulated_pi, capsys) -> str:
    command = emulated_pi.shell_command([])  # the guest python3; hwnas pushes the agent to it
    assert main(["devices", "add", "pi-emu", "--exec", command, "--push"]) == 0
    capsys.readouterr()
    return "pi-emu"


def test_probe_reports_an_aarch64_cortex_a72(emulated_pi, capsys) -> None:
    name = register(emulated_pi, capsys)
    assert main(["devices", "probe", name, "--json", "--timeout", "180"]) == 0
    fp = json.loads(capsys.readouterr().out)["fingerprint"]
    assert fp["machine"] == "aarch64"
    assert fp["cpu_model"] == "ARM Cortex-A72"
    assert fp["cpu_part"] == "0xd08" and fp["cpu_implementer"] == "0x41"
    if emulated_pi.cpuinfo_source == "rootfs":
        assert fp["board"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert set(fp["runtimes"]) == {"onnxruntime", "tflite"}
    assert "torch" not in json.dumps(fp)


def test_onnx_and_tflite_measure_and_match_the_host(emulated_pi, capsys) -> None:
    from ai_edge_litert.interpreter import Interpreter

    name = register(emulated_pi, capsys)
    onnx_model = conv_relu_onnx(cin=8, cout=8, size=8)
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((6, 10)).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    tflite_model = fully_connected_tflite(weight, bias, relu=True)
    with open_device(get_device(name), timeout_s=180) as client:
        m_onnx = client.measure(onnx_model, warmup=1, repeats=3)
        m_tfl = client.measure(tflite_model, warmup=1, repeats=3)
        x, (y,) = client.infer(onnx_model)
        xt, (yt,) = client.infer(tflite_model)
    assert m_onnx.stats.n == 3 and m_onnx.runtime["name"] == "onnxruntime"
    assert m_tfl.stats.n == 3 and m_tfl.runtime["name"] == "tflite"
    assert m_onnx.fingerprint["machine"] == "aarch64"
    np.testing.assert_allclose(y, conv_relu_reference(onnx_model, x[0]), rtol=1e-5, atol=1e-5)
    host = Interpreter(model_content=tflite_model, num_threads=1)
    host.allocate_tensors()
    host.set_tensor(host.get_input_details()[0]["index"], xt[0])
    host.invoke()
    expected = host.get_tensor(host.get_output_details()[0]["index"])
    np.testing.assert_allclose(yt, expected, rtol=1e-5, atol=1e-5)


def test_small_build_lut_round_with_resume(emulated_pi, capsys) -> None:
    name = register(emulated_pi, capsys)
    argv = ["build-lut", "--device", name, "--quick", "--archs", "0", "--rounds", "1"]
    argv += ["--repeats", "2", "--json"]
    assert main([*argv, "--budget-minutes", "0.001"]) == 0  # stops after the first group
    first = json.loads(capsys.readouterr().out)
    assert first["complete"] is False and first["jobs"]["measured"] >= 1
    assert main([*argv, "--resume"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["complete"] is True
    assert second["jobs"]["kept_before"] == first["jobs"]["measured"]  # nothing re-measured
    assert second["jobs"]["kept_before"] + second["jobs"]["measured"] == second["jobs"]["total"]
    assert second["cpu"] == "ARM Cortex-A72"
