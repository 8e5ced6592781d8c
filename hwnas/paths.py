"""Where hwnas keeps things: XDG config/data/cache directories and the files shipped with it.

* config: ``$XDG_CONFIG_HOME/hwnas`` (default ``~/.config/hwnas``): the device registry.
* data: ``$XDG_DATA_HOME/hwnas`` (default ``~/.local/share/hwnas``): LUTs the user built.
* cache: ``$XDG_CACHE_HOME/hwnas`` (default ``~/.cache/hwnas``): exported block files, datasets.
* shipped: ``luts/`` (reference LUTs) and ``search/`` (recipes) at the project root, installed as
  the ``hwnas.luts`` and ``hwnas.recipes`` packages.
"""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    base = os.environ.get(var) or str(Path.home() / default)
    return Path(base) / "hwnas"


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache")


def _shipped(subpackage: str, folder: str) -> Path:
    """Directory of shipped files: ``<checkout>/<folder>`` in a source tree, else the installed
    ``hwnas/<subpackage>`` (pyproject maps the top-level folders there)."""
    here = Path(__file__).resolve().parent
    source = here.parent / folder
    if source.is_dir() and (here.parent / "pyproject.toml").is_file():
        return source
    return here / subpackage


def shipped_luts_dir() -> Path:
    return _shipped("luts", "luts")


def recipes_dir() -> Path:
    return _shipped("recipes", "search")


def user_luts_dir() -> Path:
    return data_dir() / "luts"
