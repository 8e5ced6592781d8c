"""``hwnas.quant.qnet`` + ``calibrate``: the fake-quantized model, calibration, saving."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.blocks.torch_blocks import build_sequential
from hwnas.errors import UserError
from hwnas.graph.lower import graph_from_module
from hwnas.graph.qparams import LayerBits
from hwnas.quant.calibrate import CalibrationCache, calibrate
from hwnas.quant.policy import load_policy, load_state, save_policy, save_state
from hwnas.quant.qat import FinetuneConfig, accuracy, finetune
from hwnas.quant.qnet import QuantNet, numpy_forward
from tests.quant.conftest import SMALL_SPECS


@pytest.fixture(scope="module")
def module_and_graph():
    module = build_sequential(SMALL_SPECS, seed=1)
    return module, graph_from_module(module, SMALL_SPECS[0].in_shape)


def _x(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_float_policy_is_the_float_network(module_and_graph) -> None:
    module, graph = module_and_graph
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(QuantNet(graph, {})(x), module(x), rtol=0, atol=1e-5)


def test_calibrated_8bit_net_is_close_and_4bit_is_not(module_and_graph) -> None:
    module, graph = module_and_graph
    x = _x(64)
    with torch.no_grad():
        want = module(x)
    errors = {}
    for bits in (8, 4):
        net = QuantNet(graph, {layer.name: LayerBits(bits, bits) for layer in graph.layers})
        calibrate(net, [x])
        with torch.no_grad():
            errors[bits] = float((net(x) - want).norm() / want.norm())
    assert errors[8] < 0.05
    assert errors[4] > 2 * errors[8]


def test_calibration_ranges_cover_observed_values(module_and_graph) -> None:
    _, graph = module_and_graph
    x = _x(32)
    net = calibrate(QuantNet(graph, {layer.name: LayerBits(8, 8) for layer in graph.layers}), [x])
    assert net.quantizer("input").lo.item() == pytest.approx(float(x.min()), rel=1e-6)
    assert net.quantizer("input").hi.item() == pytest.approx(float(x.max()), rel=1e-6)
    low = calibrate(QuantNet(graph, {layer.name: LayerBits(3, 3) for layer in graph.layers}), [x])
    assert low.quantizer("input").hi.item() < float(x.max())  # KL-J clipped at 3 bits
    assert all(0 < r <= 1 for r in low.clip_ratios.values())
    assert min(low.clip_ratios.values()) < 1


def _ranges(net: QuantNet) -> dict[str, tuple[float, float]]:
    return {t: (q.lo.item(), q.hi.item()) for t, q in net.quantizers.items()}


def test_calibration_cache_matches_calibrating_each_policy(module_and_graph) -> None:
    _, graph = module_and_graph
    x = _x(32)
    cache = CalibrationCache(graph, [x])
    uniform = {layer.name: LayerBits(8, 8) for layer in graph.layers}
    assert _ranges(cache.apply(QuantNet(graph, uniform))) == _ranges(
        calibrate(QuantNet(graph, uniform), [x])
    )  # the cache's own observation pass: identical
    mixed = {
        layer.name: LayerBits(8, 8) if i % 2 else LayerBits(32, 32)
        for i, layer in enumerate(graph.layers)
    }
    cached, fresh = (
        _ranges(cache.apply(QuantNet(graph, mixed))),
        _ranges(calibrate(QuantNet(graph, mixed), [x])),
    )
    assert cached.keys() == fresh.keys() and cached  # the policy's plan, no more
    for tensor, (lo, hi) in fresh.items():  # upstream float layers observed at int8 weights
        step = (hi - lo) / 255
        assert cached[tensor][0] == pytest.approx(lo, abs=2 * step)
        assert cached[tensor][1] == pytest.approx(hi, abs=2 * step)
    low = {layer.name: LayerBits(3, 3) for layer in graph.layers}
    net = cache.apply(QuantNet(graph, low))
    assert net.quantizer("input").hi.item() < float(x.max())  # KL-J clipped at 3 bits
    assert net.clip_ratios == calibrate(QuantNet(graph, low), [x]).clip_ratios


def test_state_round_trip_through_files(module_and_graph, tmp_path) -> None:
    _, graph = module_and_graph
    policy = {
        layer.name: LayerBits(8, 8) if i % 2 else LayerBits(32, 32)
        for i, layer in enumerate(graph.layers)
    }
    net = calibrate(QuantNet(graph, policy), [_x()])
    json_path, npz_path = save_state(tmp_path / "q", net.to_state(), {"device": "local"})
    assert json_path.is_file() and npz_path.is_file()
    again = QuantNet.from_state(load_state(tmp_path / "q"))
    x = _x(8, seed=5).numpy()
    np.testing.assert_array_equal(numpy_forward(again, x), numpy_forward(net, x))
    names = [layer.name for layer in graph.layers]
    save_policy(
        tmp_path / "p.json",
        names,
        ["spec"] * len(names),
        [policy[n] for n in names],
        {"device": "local"},
    )
    assert load_policy(tmp_path / "p.json") == policy
    with pytest.raises(UserError, match="not a hwnas-quant-policy"):
        load_policy(json_path)


def test_finetune_lowers_the_loss_of_a_4bit_net(module_and_graph) -> None:
    _, graph = module_and_graph
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, 8, 8, generator=gen)
    y = (x[:, 0].mean(dim=(1, 2)) > 0).long() + 2 * (x[:, 1].mean(dim=(1, 2)) > 0).long()
    net = calibrate(QuantNet(graph, {layer.name: LayerBits(4, 4) for layer in graph.layers}), [x])
    before = accuracy(net, x, y)
    finetune(net, x, y, FinetuneConfig(steps=150, batch_size=32, lr=0.05))
    assert accuracy(net, x, y) > before + 20
