"""Cost tables on hand-made numbers: discrete costs, item layout, expectations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.costs.tables import ChannelTable, ChoiceTable


def test_choice_table_discrete_and_expected():
    table = ChoiceTable(np.array([[1.0, 2.0, 4.0], [0.5, 3.0, 8.0]]), constant=10.0)
    assert table.discrete([2, 0]) == 10.0 + 4.0 + 0.5
    assert (table.minimum(), table.maximum()) == (11.5, 22.0)
    p = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.25, 0.5]], dtype=torch.float64)
    assert float(table.expected(p)) == pytest.approx(10 + 1.5 + (0.125 + 0.75 + 4.0))
    with pytest.raises(ValueError):
        table.discrete([0])


def _channel_table() -> ChannelTable:
    # 2 blocks x 2 kernel groups, 4 channels per group, items of 2 channels.
    return ChannelTable(
        unit_cost=np.array([[1.0, 2.0], [3.0, 4.0]]),
        max_units=np.array([[4, 4], [4, 4]]),
        block_cost=np.array([5.0, 7.0]),
        required=np.array([True, False]),
        constant=100.0,
        granularity=2,
    )


def test_channel_table_layout_and_discrete():
    table = _channel_table()
    assert table.num_items == 8
    assert table.item_block.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert table.item_kernel.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    assert table.item_cost.tolist() == [2.0, 2.0, 4.0, 4.0, 6.0, 6.0, 8.0, 8.0]
    counts = np.array([[2, 0], [0, 4]])
    # 100 + block 0 (required): 2*1 + 5; block 1 present: 4*4 + 7
    assert table.discrete(counts) == 100 + 2 + 5 + 16 + 7
    # an empty removable block pays no setup; a required one always does
    assert table.discrete(np.array([[2, 0], [0, 0]])) == 100 + 2 + 5
    keep = table.keep_from_counts(counts)
    assert keep.tolist() == [True, False, False, False, False, False, True, True]
    assert table.counts_from_keep(keep).tolist() == counts.tolist()
    assert table.minimum() == 100 + 2 * 1 + 5
    assert table.maximum() == 100 + 4 * (1 + 2 + 3 + 4) + 5 + 7
    with pytest.raises(ValueError, match="multiples"):
        table.keep_from_counts(np.array([[1, 0], [0, 0]]))


def test_channel_table_expectation_of_independent_items():
    table = _channel_table()
    q = torch.full((8,), 0.5, dtype=torch.float64)
    # items: sum q_i * cost_i = 0.5 * 40; setups: block 0 always (5), block 1 with 1 - 0.5^4
    expected = 100 + 20 + 5 + 7 * (1 - 0.5**4)
    assert float(table.expected(q)) == pytest.approx(expected)


def test_tables_reject_bad_shapes():
    with pytest.raises(ValueError):
        ChoiceTable(np.array([1.0, 2.0]), 0.0)
    with pytest.raises(ValueError, match="granularity"):
        ChannelTable(np.ones((1, 2)), np.array([[3, 3]]), np.zeros(1), np.zeros(1, bool), 0.0, 2)
