"""Where tests find the shared reference data (CI puts ``shared/`` beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fbnet_data_dir() -> Path | None:
    """The HW-NAS-Bench FBNet CSV folder: ``$HWNAS_FBNET_DATA``, else ``../shared`` beside the repo."""
    for candidate in (
        os.environ.get("HWNAS_FBNET_DATA", ""),
        ROOT.parent / "shared" / "data" / "hwnas-bench-fbnet",
    ):
        if candidate and (Path(candidate) / "raspi4.csv").is_file():
            return Path(candidate)
    return None
