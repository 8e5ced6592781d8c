"""A block-level latency model trained on a LUT's entries: prices specs that were never measured.

nn-Meter (Zhang et al., MobiSys 2021) predicts kernel latency from kernel configurations with a
regressor per device; here one regressor (``hwnas.lut.regression``) over
:func:`hwnas.lut.features.spec_features` covers every op kind. The model is stored as JSON in the
LUT under ``models["block-model"]`` and used by :class:`hwnas.lut.predictor.LUTPredictor` for
blocks the LUT lacks. Blocks that run no layer (identity skip, ``zero``) cost 0 ms by definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from hwnas.blocks.specs import BlockSpec
from hwnas.errors import UserError
from hwnas.lut.features import FEATURE_NAMES, feature_matrix, layers
from hwnas.lut.regression import (
    BoostedLatencyRegressor,
    RidgeLatencyRegressor,
    regressor_from_json,
)
from hwnas.lut.schema import LUT

BLOCK_MODEL_KIND = "hwnas-block-model"
FEATURE_SET = "spec-v1"


@dataclass(frozen=True)
class BlockLatencyModel:
    """A fitted regressor plus the precision and feature set it expects.

    Attributes:
        regressor: a fitted ``RidgeLatencyRegressor`` or ``BoostedLatencyRegressor``.
        precision: precision of the entries it was trained on (bytes features depend on it).
        n_train: number of LUT entries it was trained on.
    """

    regressor: Any
    precision: str
    n_train: int

    def predict_ms(self, specs: Sequence[BlockSpec]) -> np.ndarray:
        """Latency in ms of each spec, shape ``(len(specs),)``."""
        out = np.zeros(len(specs))
        active = [i for i, s in enumerate(specs) if layers(s)]
        if active:
            X = feature_matrix([specs[i] for i in active], self.precision)
            out[active] = self.regressor.predict(X)
        return out

    def to_json(self) -> dict:
        return {
            "kind": BLOCK_MODEL_KIND,
            "schema_version": 1,
            "feature_set": FEATURE_SET,
            "feature_names": list(FEATURE_NAMES),
            "precision": self.precision,
            "n_train": self.n_train,
            "regressor": self.regressor.to_json(),
        }

    @classmethod
    def from_json(cls, document: Any) -> BlockLatencyModel:
        if not isinstance(document, dict) or document.get("kind") != BLOCK_MODEL_KIND:
            raise UserError(f"not a {BLOCK_MODEL_KIND} document")
        if document.get("feature_set") != FEATURE_SET:
            raise UserError(
                f"block model uses feature set {document.get('feature_set')!r}; this hwnas "
                f"computes {FEATURE_SET!r}; refit it (fit_block_model)"
            )
        return cls(
            regressor_from_json(document.get("regressor")),
            str(document.get("precision", "fp32")),
            int(document.get("n_train", 0)),
        )


def fit_block_model(
    lut: LUT,
    method: str = "ridge",
    precision: Optional[str] = None,
    random_state: Optional[int] = 0,
) -> BlockLatencyModel:
    """Train a block model on the LUT's entries at ``precision`` (default: the LUT's).

    Args:
        lut: the LUT whose entries (median_ms) are the targets.
        method: ``ridge`` (relative-error ridge on the features; extrapolates linearly in MACs
            and bytes, the default) or ``boosted`` (gradient-boosted trees on log latency).
        precision: which entries to use.
        random_state: seed of the boosting's row subsampling.
    """
    precision = precision or lut.precision
    entries = [e for e in lut.entries if e.precision == precision and layers(e.spec)]
    entries = [e for e in entries if e.median_ms > 0]
    if len(entries) < 5:
        raise UserError(
            f"need at least 5 timed {precision} entries to fit a block model, got {len(entries)}"
        )
    X = feature_matrix([e.spec for e in entries], precision)
    y = np.array([e.median_ms for e in entries])
    if method == "boosted":
        regressor = BoostedLatencyRegressor(random_state=random_state)
    elif method == "ridge":
        regressor = RidgeLatencyRegressor(alpha=1.0, random_state=random_state)
    else:
        raise UserError(f"unknown block-model method {method!r}; known: boosted, ridge")
    return BlockLatencyModel(regressor.fit(X, y), precision, len(entries))
