"""DARTS search-network geometry: cells, edges, strides and the specs each op runs."""

from __future__ import annotations

import pytest

from hwnas.blocks.specs import FactorizedReduceSpec, PoolSpec, SepConvSpec
from hwnas.spaces import darts_geometry as dg


def test_cells_follow_the_darts_search_network() -> None:
    cells = dg.cells(16, 8, 32)
    assert [c.reduction for c in cells] == [False, False, True, False, False, True, False, False]
    assert [c.c for c in cells] == [16, 16, 32, 32, 32, 64, 64, 64]
    assert [c.h_out for c in cells] == [32, 32, 16, 16, 16, 8, 8, 8]
    assert cells[0].s0 == cells[0].s1 == (32, 48)  # stem: 3 x C channels
    assert cells[3].reduction_prev and cells[3].s0 == (32, 64) and cells[3].s1 == (16, 128)
    assert cells[-1].c_out == 256


def test_edges_and_reduction_strides() -> None:
    cell = dg.cells()[2]
    edges = dg.edges(cell)
    assert len(edges) == 14
    assert [e.stride for e in edges if e.source < 2] == [2] * 8
    assert all(e.stride == 1 for e in edges if e.source >= 2)


def test_edge_op_specs() -> None:
    red = dg.cells()[2]
    e_in = dg.edges(red)[0]  # from input 0, stride 2, at 32x32 with C=32
    e_mid = dg.edges(red)[-1]  # from node 3 (state 5): stride 1 at 16x16
    assert dg.edge_op_spec(red, e_in, "none") is None
    assert dg.edge_op_spec(red, e_mid, "skip_connect") is None  # identity
    assert dg.edge_op_spec(red, e_in, "skip_connect") == FactorizedReduceSpec(32, 32, 32, 32)
    sep = dg.edge_op_spec(red, e_in, "sep_conv_5x5")
    assert sep == SepConvSpec(h=32, w=32, cin=32, cout=32, kernel=5, stride=2)
    assert sep.out_shape == (1, 32, 16, 16)
    pool = dg.edge_op_spec(red, e_mid, "avg_pool_3x3")
    assert pool == PoolSpec(h=16, w=16, cin=32, kind="avg", kernel=3, stride=1)
    dil = dg.edge_op_spec(red, e_mid, "dil_conv_5x5")
    assert dil.out_shape == (1, 32, 16, 16) and dil.dilation == 2
    with pytest.raises(ValueError, match="unknown DARTS op"):
        dg.edge_op_spec(red, e_mid, "conv_7x1_1x7")


def test_every_edge_op_keeps_the_cell_shape() -> None:
    for cell in dg.cells():
        for edge in dg.edges(cell):
            for op in dg.PRIMITIVES:
                spec = dg.edge_op_spec(cell, edge, op)
                if spec is not None:
                    assert spec.out_shape == (1, cell.c, cell.h_out, cell.h_out), (cell, edge, op)


def test_distinct_op_specs_and_fixed_parts() -> None:
    specs = dg.op_specs()
    # 3 stride-1 shapes x 6 ops + 2 stride-2 shapes x 7 ops (factorized-reduce skip)
    assert len(specs) == 3 * 6 + 2 * 7
    fixed = dg.fixed_specs()
    assert fixed[0].cout == 48 and fixed[-1].cin == 256 and fixed[-1].cout == 10
    assert len(fixed) == 2 + 2 * 8 + 1
    assert isinstance(fixed[1 + 2 * 3], FactorizedReduceSpec)  # cell 3 input 0
