"""LUT files, latency models and end-to-end latency predictors.

Importing ``hwnas.lut`` is light (stdlib + block specs): the LUT schema is re-exported here; the
numpy/scikit-learn parts live in submodules imported on use:

* ``hwnas.lut.schema``: the LUT file format (load, save, validate, lookups, coverage).
* ``hwnas.lut.features`` / ``regression`` / ``block_model``: block-level latency regression.
* ``hwnas.lut.reference``: reference LUTs derived from HW-NAS-Bench.
* ``hwnas.lut.predictor`` / ``fit`` / ``group_ridge``: end-to-end predictors (``fit-latency``);
  ``hwnas.lut.loading.load_predictor`` resolves a predictor file, LUT file or device name.
* ``hwnas.lut.measurements``: reading ``arch,latency_ms`` CSV files.
* ``hwnas.lut.metrics``: accuracy figures (within +-5/10 %, RMSPE, Kendall tau, Spearman).
* ``hwnas.lut.spaces``: the space interface latency models use.
"""

from __future__ import annotations

from hwnas.lut.schema import (
    KIND,
    LUT,
    SCHEMA_VERSION,
    FixedPart,
    LUTEntry,
    load_lut,
    save_lut,
    validate,
)

__all__ = [
    "KIND",
    "LUT",
    "SCHEMA_VERSION",
    "FixedPart",
    "LUTEntry",
    "load_lut",
    "save_lut",
    "validate",
]
