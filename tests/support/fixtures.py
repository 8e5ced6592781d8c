"""pytest plugin: the session-scoped ``emulated_pi`` fixture and the ``emulated_pi`` marker.

Load it from ``tests/conftest.py`` with ``pytest_plugins = ("tests.support.fixtures",)``.
The rootfs is built once per pytest session into a temporary directory (nothing is cached
between runs). Tests that use the fixture are marked ``emulated_pi`` automatically, so
``pytest -m "not emulated_pi"`` leaves them out.

The fixture skips only where the host cannot build or run the emulation (not Linux
x86_64/aarch64, qemu-user-static or mmdebstrap missing, Debian mirror or PyPI unreachable). Set
``HWNAS_REQUIRE_EMULATED_PI=1`` (CI does) to turn those skips into failures.
"""

from __future__ import annotations

import os

import pytest

from tests.support.emulated_pi import (
    EmulatedPi,
    build_rootfs,
    debian_mirror,
    host_supported,
    network_available,
    tools_available,
)

MARKER = "emulated_pi"


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``emulated_pi`` marker."""
    config.addinivalue_line(
        "markers", f"{MARKER}: needs the emulated Raspberry Pi 4 (qemu-user, ~30 s to build)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the ``emulated_pi`` fixture."""
    for item in items:
        if MARKER in getattr(item, "fixturenames", ()):
            item.add_marker(MARKER)


def _unavailable(reason: str) -> None:
    message = f"emulated Raspberry Pi unavailable: {reason}"
    if os.environ.get("HWNAS_REQUIRE_EMULATED_PI") == "1":
        pytest.fail(f"{message} (HWNAS_REQUIRE_EMULATED_PI=1)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def emulated_pi(tmp_path_factory: pytest.TempPathFactory) -> EmulatedPi:
    """A freshly built emulated Raspberry Pi 4 (arm64 bookworm, numpy, onnxruntime, LiteRT)."""
    mirror = debian_mirror()
    for check in (host_supported, tools_available, lambda: network_available(mirror)):
        ok, reason = check()
        if not ok:
            _unavailable(reason)
    return build_rootfs(tmp_path_factory.mktemp("emulated-pi") / "rootfs", mirror=mirror)
