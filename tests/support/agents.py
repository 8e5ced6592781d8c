"""Start real agent processes for tests."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class TCPAgent:
    port: int
    token: str
    token_file: Path
    proc: subprocess.Popen


@contextmanager
def tcp_agent(tmp: Path, *extra: str) -> Iterator[TCPAgent]:
    """A real ``python -m device_agents start`` process on 127.0.0.1, on a free port."""
    token_file = tmp / "token"
    if not token_file.exists():
        subprocess.run(
            [sys.executable, "-m", "device_agents", "token", str(token_file)],
            check=True,
            cwd=ROOT,
            env=_env(),
            capture_output=True,
        )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "device_agents",
            "start",
            "--port",
            "0",
            "--token-file",
            str(token_file),
            *extra,
        ],
        cwd=ROOT,
        env=_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        match = re.search(r"listening on [\d.]+:(\d+)", line)
        assert match, f"agent did not start: {line!r}"
        yield TCPAgent(int(match.group(1)), token_file.read_text().strip(), token_file, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env
