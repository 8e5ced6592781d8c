"""Fixtures for the export tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Small models on a shared 2-core machine: 1 thread is 5-30x faster than 2 under load."""
    from hwnas.quant.qat import torch_threads

    with torch_threads(1):
        yield
