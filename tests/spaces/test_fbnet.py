"""FBNet space: reference geometry at full width, widths, supernet mixing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.errors import UserError
from hwnas.spaces import fbnet_geometry as fb
from hwnas.spaces.base import SpaceConfig, create_space
from hwnas.spaces.fbnet import net_specs


def test_full_width_net_is_the_lut_geometry():
    arch = tuple(range(9)) * 2 + (0, 1, 2, 3)
    specs = net_specs(arch, 32, 100, 1.0)
    fixed = fb.fixed_specs(32, 100)
    assert specs[0] == fixed[0] and specs[-3:] == fixed[1:]
    assert specs[1:-3] == fb.arch_specs(arch, 32)


def test_widths_are_checked():
    with pytest.raises(UserError, match="width"):
        create_space("fbnet", SpaceConfig(32, 10, 0.3))
    space = create_space("fbnet", SpaceConfig(32, 10, 0.5))
    assert space.build_supernet().stem[0].out_channels == 8


def test_supernet_mixes_ops_with_the_given_weights():
    space = create_space("fbnet", SpaceConfig(32, 10, 0.25))
    net = space.build_supernet(seed=1).eval()
    x = torch.randn(2, 3, 16, 16)
    weights = torch.rand(space.alpha_shape)
    active = np.zeros(space.alpha_shape, dtype=bool)
    active[:, [0, 8]] = True
    masked = weights * torch.from_numpy(active)
    # Skipping inactive ops is the same as giving them weight zero.
    torch.testing.assert_close(net(x, masked, active=active), net(x, masked))
    # One-hot weights on op k at every layer are the network of op k with the same blocks.
    one_hot = torch.zeros(space.alpha_shape)
    one_hot[:, 2] = 1.0
    path = torch.nn.Sequential(net.stem, *(ops[2] for ops in net.layers), net.head)
    torch.testing.assert_close(net(x, one_hot), path(x))


def test_forward_path_runs_only_the_named_ops_and_matches_the_mixture():
    space = create_space("fbnet", SpaceConfig(32, 10, 0.25))
    net = space.build_supernet(seed=2).eval()
    calls = []
    for layer, ops in enumerate(net.layers):
        for k, op in enumerate(ops):
            op.register_forward_hook(lambda *a, at=(layer, k): calls.append(at))
    x = torch.randn(2, 3, 16, 16)
    arch = space.sample_arch(np.random.default_rng(0))
    onehot = torch.zeros(space.alpha_shape)
    onehot[range(fb.NUM_LAYERS), list(arch)] = 1.0
    out = net.forward_path(x, arch)
    assert calls == list(enumerate(arch))  # one op per layer, the named one
    torch.testing.assert_close(out, net(x, onehot))
    # gates are multipliers, not normalised: two ops with gates (1, 0) give the first op
    pairs = [(a, (a + 1) % 9) for a in arch]
    gates = onehot.clone().requires_grad_()
    calls.clear()
    mixed = net.forward_path(x, pairs, gates)
    assert len(calls) == 2 * fb.NUM_LAYERS
    torch.testing.assert_close(mixed, out)
    mixed.sum().backward()
    assert gates.grad[0, pairs[0][1]] != 0  # the inactive op's gate gets its credit
    with pytest.raises(ValueError, match="gates"):
        net.forward_path(x, pairs)


def test_extract_copies_the_supernet_weights_of_the_path():
    space = create_space("fbnet", SpaceConfig(32, 10, 0.25))
    net = space.build_supernet(seed=3)
    x = torch.randn(4, 3, 16, 16)
    net(x, torch.full(space.alpha_shape, 1 / 9))  # move every BN's running statistics
    arch = space.sample_arch(np.random.default_rng(1))
    child = net.extract(arch)
    assert child.training
    assert sum(p.numel() for p in child.parameters()) == sum(
        p.numel() for p in space.build_net(arch, width=0.25).parameters()
    )
    net.eval(), child.eval()
    torch.testing.assert_close(child(x), net.forward_path(x, arch))
    with torch.no_grad():
        next(child.parameters()).add_(1.0)  # a copy: the supernet is untouched
    assert not torch.equal(child(x), net.forward_path(x, arch))
