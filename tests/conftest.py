"""Shared pytest set-up: every test gets its own hwnas config/data dirs (never the user's)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest_plugins = ("tests.support.fixtures",)

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def shared_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One XDG cache dir for the whole session (exported ONNX files are reused across tests)."""
    return tmp_path_factory.mktemp("xdg-cache")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, shared_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point XDG config/data (per test) and cache (per session) away from the user's home."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared_cache_dir))
    return tmp_path
