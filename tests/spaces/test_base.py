"""The space registry and the interface every registered space honours."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwnas.blocks.count import count_flops_params
from hwnas.blocks.export import check_onnx_parity, export_onnx
from hwnas.errors import UserError
from hwnas.spaces.base import SpaceConfig, create_space, list_spaces

SPACES = list_spaces()


def test_registry_names_and_unknown_space():
    assert {"fbnet", "ib-channel"} <= set(SPACES)
    with pytest.raises(UserError, match=r"unknown space 'nope'; known: .*fbnet.*ib-channel"):
        create_space("nope")


@pytest.mark.parametrize("name", SPACES)
def test_encodings_round_trip(name):
    space = create_space(name, SpaceConfig(32, 10, 0.25))
    rng = np.random.default_rng(0)
    for _ in range(5):
        arch = space.sample_arch(rng)
        assert space.parse_arch(space.format_arch(arch)) == arch
        value = json.loads(json.dumps(space.arch_to_json(arch)))
        assert space.arch_from_json(value) == arch
        assert space.arch_from_vector(space.arch_vector(arch)) == arch
    with pytest.raises(UserError):
        space.parse_arch("1-2-3")
    with pytest.raises(UserError):
        space.arch_from_json({"not": "an arch"})


@pytest.mark.parametrize("name", SPACES)
def test_analytic_costs_match_the_counted_network(name):
    space = create_space(name, SpaceConfig(32, 10, 0.25))
    flops, params = space.cost_table("flops"), space.cost_table("params")
    rng = np.random.default_rng(1)
    for _ in range(3):
        arch = space.sample_arch(rng)
        counted = count_flops_params(space.build_net(arch), (1, 3, 32, 32))
        vector = space.arch_vector(arch)
        assert counted == (flops.discrete(vector), params.discrete(vector))


@pytest.mark.parametrize("name", SPACES)
def test_supernet_and_standalone_nets_run(name):
    space = create_space(name, SpaceConfig(32, 10, 0.25))
    net = space.build_supernet(seed=0)
    weights = torch.rand(space.alpha_shape, requires_grad=True)
    x = torch.randn(2, 3, 16, 16)  # the supernet also runs at a proxy resolution
    out = net(x, weights)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert weights.grad is not None and torch.isfinite(weights.grad).all()
    arch = space.sample_arch(np.random.default_rng(2))
    assert space.build_net(arch, width=0.25)(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", SPACES)
def test_standalone_net_exports_to_onnx(name):
    space = create_space(name, SpaceConfig(32, 10, 0.25))
    arch = space.sample_arch(np.random.default_rng(3))
    net = space.build_net(arch, width=0.25).eval()
    data = export_onnx(net, (1, 3, 32, 32))
    assert check_onnx_parity(net, data, (1, 3, 32, 32)) < 1e-4
