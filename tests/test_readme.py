"""The README's two commands: CI runs exactly the test command, and both set up from scratch."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    found = dict(re.findall(r"<!-- (main|test)-command -->\s*```sh\n(.+?)\n```", text, re.S))
    assert set(found) == {"main", "test"}, "README must mark its main and test commands"
    return found


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == readme_commands()["test"]


def test_both_commands_set_up_a_fresh_machine() -> None:
    for name, command in readme_commands().items():
        assert "python3 -m venv .venv" in command, name
        assert "torch==2.13.0" in command, name  # the CPU wheel; an unpinned torch pulls CUDA
        assert "pip install" in command and "-e '.[host" in command, name
