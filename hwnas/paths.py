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


def _shipped(package: str, folder: str) -> Path:
    """Directory of shipped files: the source tree in a checkout, the installed package otherwise."""
    source = Path(__file__).resolve().parent.parent / folder
    if source.is_dir():
        return source
    from importlib import resources

    return Path(str(resources.files(package)))


def shipped_luts_dir() -> Path:
    return _shipped("hwnas.luts", "luts")


def recipes_dir() -> Path:
    return _shipped("hwnas.recipes", "search")


def user_luts_dir() -> Path:
    return data_dir() / "luts"
