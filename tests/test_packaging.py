"""pyproject lists every package explicitly (luts/ and search/ ship as hwnas.luts/hwnas.recipes)."""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_every_package_is_listed_and_shipped_folders_are_mapped() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for top in ("hwnas", "device_agents")
        for init in (ROOT / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to pyproject [tool.setuptools] packages: {sorted(found - listed)}"
    assert config["package-dir"] == {"hwnas.luts": "luts", "hwnas.recipes": "search"}
    assert any((ROOT / "luts").glob("*.json")) and any((ROOT / "search").glob("*.toml"))


def test_shipped_paths_resolve_in_a_checkout() -> None:
    from hwnas import paths

    assert paths.shipped_luts_dir() == ROOT / "luts"
    assert paths.recipes_dir() == ROOT / "search"
