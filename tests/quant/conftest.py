"""Fixtures for the quantization tests: a small network with every FBNet op, a trained run."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwnas.blocks.specs import ConvSpec, FCSpec, GAPSpec, IBSpec, SkipSpec
from tests.quant.trained_run import trained_run

# stem, grouped IB with shuffle and residual, strided k5 IB, channel-changing skip, head, pool, fc
SMALL_SPECS = [
    ConvSpec(h=8, w=8, cin=3, cout=8, kernel=3, stride=1),
    IBSpec.fbnet(8, 8, 8, 3, 1, 1, 2),
    IBSpec.fbnet(8, 8, 16, 5, 2, 3, 1),
    SkipSpec(h=4, w=4, cin=16, cout=24, stride=1),
    IBSpec.fbnet(4, 24, 24, 3, 1, 6, 1),
    ConvSpec(h=4, w=4, cin=24, cout=32, kernel=1, stride=1),
    GAPSpec(h=4, w=4, cin=32),
    FCSpec(h=1, w=1, cin=32, cout=10),
]


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
