"""Fixtures for the run-layer tests: a trained run directory, one torch thread."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.quant.trained_run import trained_run


@pytest.fixture(scope="session")
def trained_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained FBNet (width 0.25, 16 px, digits) run directory, built once per session."""
    return trained_run(tmp_path_factory.mktemp("trained"))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small models on a shared 2-core machine: 1 thread is 5-30x faster than 2 under load."""
    from hwnas.quant.qat import torch_threads

    with torch_threads(1):
        yield
