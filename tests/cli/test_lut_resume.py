"""Real build-lut runs: resuming after the host is killed with SIGKILL or a TCP agent dies mid-build,
refusing a journal from another device, and a build over SSH. Real agents, real onnxruntime; the
quick fbnet plan keeps them short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwnas.cli import main
from hwnas.devices.registry import DeviceConfig, add_device
from hwnas.lut.journal import journal_path, read_journal
from hwnas.lut.timing import robust_stats
from tests.support.agents import tcp_agent
from tests.support.sshd import sshd, sshd_available

ROOT = Path(__file__).resolve().parents[2]
QUICK = ["--quick", "--archs", "24", "--repeats", "3", "--rounds", "2", "--budget-minutes", "10"]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "hwnas", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _start_and_interrupt(
    args: list[str], journal: Path, groups: int, interrupt
) -> subprocess.Popen:
    """Start a build, wait until ``groups`` groups are journaled, then call ``interrupt(proc)``."""
    proc = subprocess.Popen(
        _cli(*args), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= groups + 1:
            interrupt(proc)
            break
        assert proc.poll() is None, (
            f"build ended before it could be interrupted: {proc.stderr.read()}"
        )
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("build journaled too few groups in 120 s")
    proc.wait(timeout=60)
    return proc


def _resume(args: list[str]) -> dict:
    done = subprocess.run(
        _cli(*args, "--resume", "--json"),
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _kept(journal: Path) -> dict[str, list[list[float]]]:
    """Per job id, the rounds of samples the journal holds."""
    _, groups = read_journal(journal)
    rounds: dict[str, list[list[float]]] = {}
    for group in groups:
        for job in group["jobs"]:
            rounds.setdefault(job["id"], []).append(job["samples"])
    return rounds


def test_sigkill_of_the_host_then_resume_remeasures_nothing_kept(tmp_path: Path) -> None:
    out = tmp_path / "local_fbnet.json"
    journal = journal_path(out)
    args = ["build-lut", "--device", "local", "--out", str(out), *QUICK]
    proc = _start_and_interrupt(args, journal, 3, lambda p: p.send_signal(signal.SIGKILL))
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    kept = _kept(journal)
    n_kept = sum(map(len, kept.values()))
    assert n_kept >= 3
    saved = journal.read_text()

    result = _resume(args)
    jobs = result["jobs"]
    assert result["complete"] and result["journal"] is None and not journal.exists()
    assert jobs["kept_before"] == n_kept
    # every measurement behind the LUT was either kept or taken now, never both
    assert jobs["measured"] == jobs["rounds_total"] - n_kept
    lut = json.loads(out.read_text())
    entries = {e["key"]: e for e in lut["entries"]}
    for job_id, rounds in kept.items():  # blocks finished before the kill: kept numbers, as is
        kind, _, key = job_id.partition(":")
        if kind == "block" and entries[key]["rounds"] == len(rounds):
            assert entries[key]["standalone_min_ms"] == min(min(r) for r in rounds)
            assert entries[key]["standalone_median_ms"] == robust_stats(rounds)["median_ms"]
    assert lut["models"]["calibration"]["n"] == 24

    # the same journal, as if it came from another machine: resume is refused
    header, *rest = saved.splitlines()
    fake = json.loads(header)
    fake["fingerprint"]["cpu_model"] = "ARM Cortex-A72"
    journal.write_text("\n".join([json.dumps(fake), *rest]) + "\n")
    refused = subprocess.run(
        _cli(*args, "--resume"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert "not the one the build started on" in refused.stderr
    assert "cpu_model" in refused.stderr and "ARM Cortex-A72" in refused.stderr


def test_tcp_agent_killed_mid_build_then_resume(tmp_path: Path) -> None:
    out = tmp_path / "tcp_fbnet.json"
    journal = journal_path(out)
    args = ["build-lut", "--device", "tcpdev", "--out", str(out), *QUICK]
    with tcp_agent(tmp_path) as agent:
        add_device(
            DeviceConfig(
                "tcpdev", "tcp", host="127.0.0.1", port=agent.port, token_file=str(agent.token_file)
            )
        )
        proc = _start_and_interrupt(args, journal, 2, lambda p: agent.proc.kill())
    assert proc.returncode == 2
    message = proc.stderr.read()
    assert "--resume" in message and "kept in" in message
    n_kept = sum(map(len, _kept(journal).values()))
    assert n_kept >= 2
    with tcp_agent(tmp_path) as agent:  # the agent is back (on a new port)
        add_device(
            DeviceConfig(
                "tcpdev", "tcp", host="127.0.0.1", port=agent.port, token_file=str(agent.token_file)
            ),
            replace=True,
        )
        result = _resume(args)
    assert result["complete"]
    assert result["jobs"]["kept_before"] == n_kept
    assert result["jobs"]["measured"] == result["jobs"]["rounds_total"] - n_kept


@pytest.mark.ssh
@pytest.mark.skipif(not sshd_available()[0], reason=sshd_available()[1])
def test_build_over_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # no real known_hosts may vouch for the test server
    with sshd(tmp_path / "sshd") as server:
        add_device(
            DeviceConfig(
                "sshdev",
                "ssh",
                host="127.0.0.1",
                port=server.port,
                user=server.user,
                key_file=str(server.user_key),
                known_hosts=str(server.known_hosts),
                python=sys.executable,
                remote_dir=str(tmp_path / "remote-cache"),
            )
        )
        out = tmp_path / "ssh_fbnet.json"
        assert (
            main(
                [
                    "build-lut",
                    "--device",
                    "sshdev",
                    "--out",
                    str(out),
                    *QUICK[:-2],
                    "--archs",
                    "8",
                    "--json",
                ]
            )
            == 0
        )
    built = json.loads(capsys.readouterr().out)
    assert built["complete"] and built["entries"] == 22 and built["calibration"]["n"] == 8
    lut = json.loads(out.read_text())
    assert lut["device"]["name"] == "sshdev" and lut["runtime"]["name"] == "onnxruntime"
