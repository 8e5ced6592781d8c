"""The latency view of spaces agrees with the space geometry modules."""

from __future__ import annotations

import pytest

from hwnas.errors import UserError
from hwnas.lut.spaces import LATENCY_SPACES, get_space
from hwnas.spaces import fbnet_geometry as fb


def test_fbnet_matches_its_geometry():
    space = get_space("fbnet")
    arch = (0, 1, 2, 3, 4, 5, 6, 7, 8) * 2 + (8, 7, 3, 0)
    assert space.arch_specs(arch) == fb.arch_specs(arch)
    assert list(space.fixed_specs) == fb.fixed_specs()
    assert space.choices == (9,) * 22 and space.option_names[5][8] == "skip"
    assert space.parse_arch(space.format_arch(arch)) == arch
    assert space.describe() == {"space": "fbnet", "resolution": 32, "num_classes": 100}


def test_other_geometry_and_errors():
    space = get_space("fbnet", 64, 10)
    assert space.option_specs(0, 0)[0].h == 64 and space.fixed_specs[-1].cout == 10
    with pytest.raises(ValueError, match="option 9 at slot 0 is out of range"):
        space.check((9,) + (0,) * 21)
    with pytest.raises(UserError, match=r"unknown space 'nas201'; known: .*fbnet"):
        get_space("nas201")
    assert "fbnet" in LATENCY_SPACES
