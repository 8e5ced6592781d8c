"""Fixtures for the run-layer tests: the quantization tests' trained run directory and their one
torch thread (the same fixtures, imported)."""

from __future__ import annotations

from tests.quant.conftest import one_torch_thread, trained_run_dir

__all__ = ["one_torch_thread", "trained_run_dir"]
