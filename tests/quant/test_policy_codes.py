"""``hwnas.quant.policy``: weight codes on disk (bit-planes, priced size, checked on load)."""

from __future__ import annotations

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.graph.wcodes import encode, weight_bytes
from hwnas.quant.policy import load_codes, save_codes
from tests.graph.test_wcodes import small_graph


def test_save_load_codes_roundtrip(tmp_path) -> None:
    graph = small_graph()
    codes = {
        layer.name: encode(layer.weight, bits, kind)
        for layer, bits, kind in zip(
            graph.layers, (2, 5, 8, 3), ("linear", "kmeans", "linear", "kmeans")
        )
    }
    save_codes(tmp_path / "policy", codes)
    loaded = load_codes(tmp_path / "policy")
    assert list(loaded) == list(codes)
    for name, code in codes.items():
        got = loaded[name]
        assert (got.bits, got.kind) == (code.bits, code.kind)
        np.testing.assert_array_equal(got.codes, code.codes)
        np.testing.assert_array_equal(got.table, code.table)
    big = np.random.default_rng(0).standard_normal((64, 64, 3, 3)).astype(np.float32)
    save_codes(tmp_path / "big", {"w": encode(big, 2, "linear")})
    stored = (tmp_path / "big.npz").stat().st_size
    assert stored < 1.1 * weight_bytes(big.size, 64, 2) + 1000 < big.nbytes / 10
    (tmp_path / "bad.json").write_text('{"kind": "other"}')
    with pytest.raises(UserError):
        load_codes(tmp_path / "bad")
