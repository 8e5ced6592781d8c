"""``hwnas.quant.dfq_act``: DFQ's output-mixing relaxation for latency (activations quantized)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import FLOAT_BITS
from hwnas.quant.dfq import DFQConfig, dfq_search
from hwnas.quant.dfq_act import ActRelaxedNet
from hwnas.quant.dfq_budget import dfq_for_budget
from hwnas.quant.qat import torch_threads
from hwnas.quant.qnet import QuantNet, _key
from hwnas.quant.quantize import DataTensors
from tests.quant.conftest import SMALL_SPECS
from tests.quant.test_dfq import mlp_problem

INT8_FP32 = (8, FLOAT_BITS)


@pytest.fixture(scope="module")
def relaxed():
    """The small conv net (grouped IB, shuffle, residual, skip, pool, fc), calibrated."""
    with torch_threads(1):
        torch.manual_seed(0)
        graph = graph_from_module(build_sequential(SMALL_SPECS).eval(), SMALL_SPECS[0].in_shape)
        x = torch.randn(16, *graph.input_shape[1:], generator=torch.Generator().manual_seed(1))
        return ActRelaxedNet(graph, INT8_FP32, 8, x, seed=0).eval(), x


def one_hot(model: ActRelaxedNet, bits: dict[str, int]) -> dict[str, torch.Tensor]:
    index = {b: j for j, b in enumerate(model.candidates)}
    out = {}
    for name, b in bits.items():
        row = torch.zeros(1, len(model.candidates))
        row[0, index[b]] = 1.0
        out[name] = row
    return out


def test_one_hot_int8_is_exactly_the_int8_quantnet(relaxed) -> None:
    model, x = relaxed
    names = model.layer_names
    with torch.no_grad():
        mixed = model(x, one_hot(model, {n: 8 for n in names}))
        reference = model.net(x)  # the calibrated all-int8 QuantNet
        assert torch.equal(mixed, reference)
        floats = model(x, one_hot(model, {n: FLOAT_BITS for n in names}))
        assert torch.equal(floats, QuantNet(model.graph, {})(x))
        assert (mixed - floats).abs().max() > 1e-4  # the two branches really differ


def test_one_hot_mixed_policies_are_the_quantnet_of_that_policy(relaxed) -> None:
    """Tensors are quantized as plan_tensors would: float layers feeding int8 ones, residual
    adds of mixed inputs, the pooled features."""
    model, x = relaxed
    rng = np.random.default_rng(0)
    for _ in range(4):
        bits = {n: int(rng.choice(INT8_FP32)) for n in model.layer_names}
        reference = QuantNet(model.graph, model.policy(bits))
        for tensor in reference.plan.bits:  # the same ranges as the relaxed net's quantizers
            q = model.net.quantizer(tensor)
            reference.quantizers[_key(tensor)].set_range(q.lo.item(), q.hi.item())
        with torch.no_grad():
            assert torch.equal(model(x, one_hot(model, bits)), reference(x))


def test_quantized_probability_follows_the_plan(relaxed) -> None:
    model, _ = relaxed
    probs = {n: torch.tensor([[0.5, 0.5]]) for n in model.layer_names}
    pi = model.integer_probs(probs)
    q = model.quantized_probs(pi)
    first = model.graph.layers[0]
    # the input is quantized iff the stem runs integer; the stem's output iff it or a consumer does
    assert float(q[model.graph.input_name]) == pytest.approx(0.5)
    assert float(q[first.out]) == pytest.approx(1 - 0.5 * 0.5)
    assert all(0.0 <= float(v) <= 1.0 for v in q.values())


def test_activation_mode_needs_integer_candidates_and_one_group(relaxed) -> None:
    model, x = relaxed
    with pytest.raises(ValueError, match="integer candidates"):
        ActRelaxedNet(model.graph, (1, FLOAT_BITS), 8, x)
    y = torch.zeros(len(x), dtype=torch.long)
    data = DataTensors(x, y, x, y, x, y)
    config = DFQConfig(steps=1, act_bits=8, channel_groups=2)
    with pytest.raises(ValueError, match="channel_groups"):
        dfq_search(model.graph, data, 1.0, config, INT8_FP32)


@pytest.fixture(scope="module")
def mlp():
    with torch_threads(1):
        return mlp_problem()


def test_looser_latency_budget_gives_fewer_integer_layers(mlp) -> None:
    """Per-layer ms (integer cheaper everywhere), budgets from all-integer to all-float.

    The integer op is 3 bits (weights and activations) so that it costs the MLP accuracy
    and the loss constraint bites: int8 is lossless on it, and DFQ then rightly takes int8
    everywhere under any budget.
    """
    with torch_threads(1):
        graph, data = mlp
        cost = np.array([[0.5, 1.0], [0.6, 1.0], [0.2, 1.0]])  # (layers, (int, fp32)) ms
        config = DFQConfig(steps=30, act_bits=3)
        memo: dict = {}
        budgets = (cost[:, 0].sum() + 0.01, cost[:, 1].sum())
        outs = [
            dfq_for_budget(graph, data, b, config, (3, FLOAT_BITS), cost, searches=3, memo=memo)
            for b in budgets
        ]
    integer = [sum(b != FLOAT_BITS for b in o.bits.values()) for o in outs]
    assert integer[0] == 3 and integer[1] < integer[0], integer
    assert all(o.cost <= o.budget for o in outs)
    assert outs[1].delta <= 0.0 and outs[1].cost > outs[0].cost  # room: no loss increase
