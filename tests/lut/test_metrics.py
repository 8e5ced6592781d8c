"""Accuracy figures on hand-checked numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.lut.metrics import accuracy, kendall_tau, rmspe, spearman, within_share

MEASURED = np.array([10.0, 20.0, 40.0, 80.0])
PREDICTED = np.array([10.4, 18.5, 45.0, 79.0])  # errors +4 %, -7.5 %, +12.5 %, -1.25 %


def test_hand_computed_figures():
    assert within_share(PREDICTED, MEASURED, 0.05) == 0.5
    assert within_share(PREDICTED, MEASURED, 0.10) == 0.75
    expected = math.sqrt((0.04**2 + 0.075**2 + 0.125**2 + 0.0125**2) / 4)
    assert rmspe(PREDICTED, MEASURED) == pytest.approx(expected)
    assert spearman(PREDICTED, MEASURED) == 1.0 and kendall_tau(PREDICTED, MEASURED) == 1.0
    swapped = np.array([10.0, 45.0, 40.0, 80.0])  # one discordant pair of 6
    assert kendall_tau(swapped, MEASURED) == pytest.approx(4 / 6)
    assert spearman(swapped, MEASURED) == pytest.approx(1 - 6 * 2 / (4 * 15))


def test_accuracy_bundle_and_edge_cases():
    figures = accuracy(PREDICTED, MEASURED)
    assert figures.n == 4 and figures.within_10pct == 0.75
    assert figures.mean_abs_pct_error == pytest.approx((0.04 + 0.075 + 0.125 + 0.0125) / 4)
    assert set(figures.to_dict()) >= {"within_5pct", "rmspe", "kendall_tau", "spearman"}
    single = accuracy([1.0], [1.0])
    assert single.within_5pct == 1.0 and math.isnan(single.spearman)
    with pytest.raises(UserError, match="2 predictions but 3 measurements"):
        rmspe([1, 2], [1, 2, 3])
    with pytest.raises(UserError, match="finite and > 0"):
        rmspe([1, 2], [1, 0])
