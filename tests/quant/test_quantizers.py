"""Fake quantizers and HAQ's KL-J clipping (METHODS.md 6.5 quantizer checks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnas.graph.qparams import act_qparams, quantize_weight, weight_scales
from hwnas.quant.quantizers import (
    ActQuantizer,
    fake_quant_act,
    fake_quant_weight,
    kl_clip_threshold,
    round_ste,
)


def test_8bit_fake_quant_of_a_small_conv_is_within_one_percent() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(4, 8, 12, 12, generator=gen))  # a conv after a ReLU, as in HAQ
    w = torch.randn(16, 8, 3, 3, generator=gen) * 0.2
    want = torch.nn.functional.conv2d(x, w, padding=1)
    xq = fake_quant_act(x, x.min(), x.max(), 8)
    got = torch.nn.functional.conv2d(xq, fake_quant_weight(w, 8), padding=1)
    rel = float((got - want).norm() / want.norm())
    assert rel < 0.01
    # and 4 bits are visibly worse: the check can fail
    x4 = fake_quant_act(x, x.min(), x.max(), 4)
    got4 = torch.nn.functional.conv2d(x4, fake_quant_weight(w, 4), padding=1)
    assert float((got4 - want).norm() / want.norm()) > 5 * rel


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_kl_threshold_is_at_most_max_abs(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for values in (
        rng.standard_normal(20_000),
        rng.laplace(size=20_000),
        rng.standard_t(2, size=20_000),
        np.abs(rng.standard_normal(5_000)),
    ):
        c = kl_clip_threshold(values, bits, symmetric=values.min() < 0)
        assert 0 < c <= np.abs(values).max()


def test_kl_threshold_clips_heavy_tails_at_low_bits() -> None:
    values = np.random.default_rng(0).standard_t(2, size=50_000)
    peak = np.abs(values).max()
    assert kl_clip_threshold(values, 2) < 0.5 * peak
    assert kl_clip_threshold(values, 2) <= kl_clip_threshold(values, 4)


def test_round_ste_passes_gradients_straight_through() -> None:
    x = torch.tensor([0.2, 1.7, -2.5], requires_grad=True)
    y = round_ste(x)
    y.sum().backward()
    assert y.tolist() == [0.0, 2.0, -2.0]  # half to even, like onnxruntime and TFLite
    assert x.grad.tolist() == [1.0, 1.0, 1.0]


@settings(max_examples=40, deadline=None)
@given(lo=st.floats(-5, 2), span=st.floats(0.01, 10), bits=st.integers(2, 8))
def test_activation_grid_has_exact_zero_and_at_most_2b_levels(
    lo: float, span: float, bits: int
) -> None:
    hi = lo + span
    x = torch.linspace(lo - 1, hi + 1, 2001)
    q = fake_quant_act(x, torch.tensor(lo), torch.tensor(hi), bits)
    assert len(torch.unique(q)) <= 2**bits
    assert float(fake_quant_act(torch.zeros(1), torch.tensor(lo), torch.tensor(hi), bits)) == 0.0
    scale, zp = act_qparams(lo, hi, bits)
    # the numpy grid parameters are the ones the torch quantizer uses
    manual = (np.clip(np.round(x.numpy() / scale) + zp, 0, 2**bits - 1) - zp) * scale
    np.testing.assert_allclose(q.numpy(), manual, rtol=0, atol=1e-6 * max(1.0, abs(lo) + span))


@pytest.mark.parametrize("bits", [2, 4, 7, 8])
def test_weight_grid_matches_numpy_export_grid(bits: int) -> None:
    w = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(bits))
    fq = fake_quant_weight(w, bits, clip_ratio=0.9).numpy()
    q, scales = quantize_weight(w.numpy(), bits, 0.9)
    assert np.abs(q).max() <= 2 ** (bits - 1) - 1
    np.testing.assert_allclose(q * scales[:, None, None, None], fq, rtol=0, atol=1e-6)
    np.testing.assert_allclose(scales, weight_scales(w.numpy(), bits, 0.9))


def test_act_quantizer_range_is_trainable() -> None:
    q = ActQuantizer(4, lo=-1.0, hi=1.0)
    x = torch.linspace(-3, 3, 101)
    loss = ((q(x) - x) ** 2).mean()
    loss.backward()
    assert q.lo.grad is not None and q.hi.grad is not None
    assert float(q.hi.grad) < 0  # widening the range reduces clipping error of |x| up to 3
    q.set_range(0.5, -0.5)  # lo > 0 and hi < 0 are pulled to 0
    assert q.lo.item() == 0.0 and q.hi.item() == 0.0
