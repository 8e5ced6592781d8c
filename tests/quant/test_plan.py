"""``hwnas.graph.qparams``: which tensors an integer runtime needs quantized, at which bits."""

from __future__ import annotations

import pytest

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.graph.lower import graph_from_module
from hwnas.graph.nodes import Add, GlobalPool, Shuffle
from hwnas.graph.qparams import LayerBits, act_qparams, plan_tensors
from tests.quant.conftest import SMALL_SPECS


@pytest.fixture(scope="module")
def graph():
    return graph_from_module(build_sequential(SMALL_SPECS), SMALL_SPECS[0].in_shape)


def test_uniform_int8_quantizes_every_tensor(graph) -> None:
    plan = plan_tensors(graph, {layer.name: LayerBits(8, 8) for layer in graph.layers})
    for tensor in graph.tensors():
        assert plan.tensor_bits(tensor) == 8, tensor
    shuffle = next(n for n in graph.nodes if isinstance(n, Shuffle))
    assert plan.root(shuffle.out) == shuffle.inp and shuffle.out not in plan.bits


def test_float_policy_quantizes_nothing(graph) -> None:
    plan = plan_tensors(graph, {layer.name: LayerBits(32, 32) for layer in graph.layers})
    assert plan.bits == {}


def test_integer_layer_gets_quantized_input_and_output_only(graph) -> None:
    layer = graph.layers[4]  # the strided block's expand conv
    plan = plan_tensors(graph, {layer.name: LayerBits(6, 5)})
    assert plan.tensor_bits(layer.inp) == 5  # the smallest request wins
    assert plan.tensor_bits(layer.out) == 8
    assert set(plan.bits) == {plan.root(layer.inp), layer.out}


def test_add_and_pool_are_integer_only_when_their_inputs_are(graph) -> None:
    adds = [n for n in graph.nodes if isinstance(n, Add)]
    pool = next(n for n in graph.nodes if isinstance(n, GlobalPool))
    head = graph.layers[-2]
    plan = plan_tensors(graph, {head.name: LayerBits(8, 8)})
    assert plan.tensor_bits(pool.out) == 8  # head output quantized -> integer pooling
    assert plan.tensor_bits(adds[1].out) == 8  # the head's input
    assert plan.tensor_bits(adds[0].out) is None  # neither input of the first add quantized
    # the residual's two inputs quantized -> integer add
    add = adds[1]
    producer = next(n for n in graph.layers if n.out == add.b)
    consumer = next(n for n in graph.layers if n.out == add.a)  # the skip conv writes add.a
    plan = plan_tensors(graph, {producer.name: LayerBits(8, 8), consumer.name: LayerBits(8, 8)})
    assert plan.tensor_bits(add.out) == 8


def test_layer_bits_validation() -> None:
    assert LayerBits(8, 8).precision == "int8" and LayerBits(32, 32).precision == "fp32"
    assert LayerBits(3, 5).precision == "int8"
    for bad in ((32, 8), (8, 32), (1, 8), (9, 8), (16, 16)):
        with pytest.raises(ValueError):
            LayerBits(*bad)


def test_act_qparams_keep_zero_exact() -> None:
    for lo, hi, bits in ((-1.3, 2.1, 8), (0.0, 6.0, 8), (0.5, 3.0, 4), (-2.0, -0.5, 8)):
        scale, zp = act_qparams(lo, hi, bits)
        assert 0 <= zp <= 2**bits - 1
        assert scale > 0
        assert abs(zp * scale + min(lo, 0.0)) <= scale / 2 + 1e-7
