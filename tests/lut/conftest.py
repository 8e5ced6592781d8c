"""Fixtures for LUT tests: the HW-NAS-Bench FBNet CSVs (HW-NAS-Bench / HELP, MIT licence)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hwnas.lut.measurements import ArchTable, read_arch_csv
from hwnas.lut.spaces import LatencySpace, get_space
from tests.support.paths import fbnet_data_dir


@pytest.fixture(scope="session")
def fbnet_data() -> Path:
    """Folder with raspi4.csv, pixel3.csv, samsung_a50.csv, gold_6240.csv (set HWNAS_FBNET_DATA)."""
    found = fbnet_data_dir()
    if found is not None:
        return found
    pytest.skip("HW-NAS-Bench FBNet CSVs not found; set HWNAS_FBNET_DATA to their folder")


@pytest.fixture(scope="session")
def fbnet() -> LatencySpace:
    return get_space("fbnet")


@pytest.fixture(scope="session")
def device_table(fbnet_data, fbnet):
    """``device_table("gold_6240")`` -> (ArchTable, archs as an int array)."""
    cache: dict[str, tuple[ArchTable, np.ndarray]] = {}

    def load(name: str) -> tuple[ArchTable, np.ndarray]:
        if name not in cache:
            table = read_arch_csv(fbnet_data / f"{name}.csv", fbnet, require_latency=True)
            cache[name] = (table, np.asarray(table.archs))
        return cache[name]

    return load
