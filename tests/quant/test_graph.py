"""``hwnas.graph.nodes`` and ``hwnas.graph.lower``: BN folding and graph semantics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from hwnas.blocks.specs import ConvSpec, DilConvSpec, IBSpec
from hwnas.blocks.torch_blocks import build_module, build_sequential
from hwnas.errors import UserError
from hwnas.graph.lower import fold_conv_bn, graph_from_module
from hwnas.graph.nodes import Add, Conv, Graph, Linear, Shuffle, reference_forward
from tests.quant.conftest import SMALL_SPECS


def test_graph_matches_torch_for_every_fbnet_op() -> None:
    module = build_sequential(SMALL_SPECS, seed=3)
    graph = graph_from_module(module, SMALL_SPECS[0].in_shape)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    got = reference_forward(graph, x)
    assert got.shape == (3, 10)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_graph_structure() -> None:
    graph = graph_from_module(build_sequential(SMALL_SPECS), SMALL_SPECS[0].in_shape)
    kinds = [type(n).__name__ for n in graph.nodes]
    # stem; IB g2: expand, shuffle, dw, project, add; IB s2: 3 convs; skip conv; IB e6 + add;
    # head; pool; fc
    assert kinds.count("Conv") == 1 + 3 + 3 + 1 + 3 + 1
    assert kinds.count("Shuffle") == 1 and kinds.count("Add") == 2
    assert isinstance(graph.nodes[-1], Linear) and graph.nodes[-1].out == "output"
    depthwise = [n for n in graph.nodes if isinstance(n, Conv) and n.is_depthwise]
    assert [n.kernel for n in depthwise] == [3, 5, 3]
    grouped = [n for n in graph.nodes if isinstance(n, Conv) and n.groups == 2]
    assert len(grouped) == 2  # the g2 block's expand and project
    assert graph.shapes["output"] == (1, 10)
    assert len(graph.layers) == 13


def test_fold_conv_bn_equals_conv_then_bn() -> None:
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    bn.eval()
    w, b = fold_conv_bn(conv, bn)
    x = torch.randn(2, 4, 5, 5)
    with torch.no_grad():
        want = bn(conv(x))
        got = nn.functional.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), padding=1)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_unsupported_modules_fail_loudly() -> None:
    with pytest.raises(UserError, match="cannot quantize or export"):
        graph_from_module(
            build_module(DilConvSpec(h=8, w=8, cin=4, cout=4, kernel=3)), (1, 4, 8, 8)
        )
    hswish = IBSpec(h=8, w=8, cin=4, cout=4, kernel=3, stride=1, mid=8, act="hswish")
    with pytest.raises(UserError, match="unsupported activation"):
        graph_from_module(build_module(hswish), hswish.in_shape)
    even = ConvSpec(h=8, w=8, cin=4, cout=4, kernel=4)
    with pytest.raises(UserError, match="odd"):
        graph_from_module(build_module(even), even.in_shape)


def test_shape_errors_are_reported() -> None:
    w = np.zeros((4, 3, 3, 3), np.float32)
    conv = Conv("c", "input", "output", w, np.zeros(4, np.float32), 1, 1)
    with pytest.raises(ValueError, match="expects 3 channels"):
        Graph((conv,), (1, 5, 8, 8))
    add = Add("a", "input", "missing", "output")
    with pytest.raises(ValueError, match="before they are written"):
        Graph((add,), (1, 3, 4, 4))
    with pytest.raises(ValueError, match="groups"):
        Graph((Shuffle("s", "input", "output", 2),), (1, 3, 4, 4))
