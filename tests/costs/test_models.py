"""Conformance of every registered cost model on every registered space (STYLE.md principle 4).

For each (space, metric): one-hot / 0-1 relaxed inputs give exactly the discrete cost, gradients
are finite and match the closed forms, the bounds are attained, and out-of-range budgets are
refused with the feasible range in the message.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.costs.latency import load_latency_predictor, load_latency_source
from hwnas.costs.models import COST_MODELS, make_constraints, make_cost_models
from hwnas.costs.tables import ChannelTable, ChoiceTable
from hwnas.errors import UserError
from hwnas.spaces.base import SpaceConfig, create_space, list_spaces

CASES = [(s, m) for s in list_spaces() for m in COST_MODELS.names()]


@pytest.fixture(scope="module")
def predictor():
    return load_latency_predictor("pi4", "fbnet")


def _model(space_name: str, metric: str, predictor, width: float = 0.25):
    space = create_space(space_name, SpaceConfig(32, 10, width))
    source = None
    if metric == "latency_ms":
        try:
            source = load_latency_source("pi4", space)
        except UserError as exc:  # a space without a shipped LUT: its latency is not testable here
            pytest.skip(str(exc))
    if space.relaxation not in ("choice", "channel", "edge"):
        pytest.skip(f"relaxation {space.relaxation!r}: conformance is tested with its space")
    return space, make_cost_models(space, source)[metric]


def _one_hot(space, arch) -> torch.Tensor:
    vector = space.arch_vector(arch)
    if space.relaxation == "choice":
        out = torch.zeros(space.alpha_shape, dtype=torch.float64)
        out[torch.arange(len(vector)), torch.from_numpy(vector)] = 1.0
        return out
    table = space.cost_table("flops")
    return torch.from_numpy(table.keep_from_counts(vector).astype(np.float64))


@pytest.mark.parametrize(("space_name", "metric"), CASES)
def test_one_hot_equals_discrete(space_name, metric, predictor):
    space, model = _model(space_name, metric, predictor)
    rng = np.random.default_rng(1)
    for _ in range(5):
        arch = space.sample_arch(rng)
        exact = model.discrete(arch)
        relaxed = float(model.expected(_one_hot(space, arch)))
        assert relaxed == pytest.approx(exact, rel=1e-12, abs=1e-9)


@pytest.mark.parametrize(("space_name", "metric"), CASES)
def test_gradient_is_finite_and_matches_closed_form(space_name, metric, predictor):
    space, model = _model(space_name, metric, predictor)
    torch.manual_seed(0)
    alpha = torch.randn(space.alpha_shape, dtype=torch.float64, requires_grad=True)
    table = model.table
    if isinstance(table, ChoiceTable):
        p = torch.softmax(alpha, dim=1)
        model.expected(p).backward()
        t = torch.from_numpy(table.values)
        # dE/dalpha_lk = p_lk (T_lk - E_l[T]) (METHODS.md §10.3)
        closed = p * (t - (p * t).sum(1, keepdim=True))
    else:
        q = torch.sigmoid(alpha)
        model.expected(q).backward()
        closed = _channel_closed_form(table, q.detach()) * q * (1 - q)
    assert torch.isfinite(alpha.grad).all()
    torch.testing.assert_close(
        alpha.grad, closed.detach(), rtol=1e-9, atol=1e-9 * float(closed.detach().abs().max())
    )


def _channel_closed_form(table: ChannelTable, q: torch.Tensor) -> torch.Tensor:
    """dE/dq_i = item_cost_i + setup_b * prod_{j in b, j != i} (1 - q_j) for removable blocks."""
    grad = torch.from_numpy(table.item_cost).clone()
    for b in range(len(table.block_cost)):
        if table.required[b]:
            continue
        members = np.flatnonzero(table.item_block == b)
        one_minus = 1 - q[members]
        for k, i in enumerate(members):
            others = torch.cat([one_minus[:k], one_minus[k + 1 :]])
            grad[i] += table.block_cost[b] * torch.prod(others)
    return grad


@pytest.mark.parametrize(("space_name", "metric"), CASES)
def test_bounds_are_attained(space_name, metric, predictor):
    space, model = _model(space_name, metric, predictor)
    low, high = model.bounds()
    rng = np.random.default_rng(2)
    for _ in range(10):
        assert low - 1e-9 <= model.discrete(space.sample_arch(rng)) <= high + 1e-9
    table = model.table
    if isinstance(table, ChoiceTable):
        cheapest = space.arch_from_vector(table.values.argmin(1))
        dearest = space.arch_from_vector(table.values.argmax(1))
    else:
        counts = np.zeros_like(table.max_units)
        for b in np.flatnonzero(table.required):
            counts[b, np.argmin(table.unit_cost[b])] = table.granularity
        cheapest = space.arch_from_vector(counts)
        dearest = space.arch_from_vector(table.max_units)
    assert model.discrete(cheapest) == pytest.approx(low)
    assert model.discrete(dearest) == pytest.approx(high)


def test_fbnet_latency_matches_published_example(predictor):
    # HW-NAS-Bench data README: all k3_e1 = 17.618579 ms on the Raspberry Pi 4.
    space, model = _model("fbnet", "latency_ms", predictor)
    assert model.discrete((0,) * 22) == pytest.approx(17.618579, abs=1e-5)
    rng = np.random.default_rng(3)
    archs = [space.sample_arch(rng) for _ in range(20)]
    expected = predictor.predict_ms(archs)
    assert [model.discrete(a) for a in archs] == pytest.approx(list(expected), abs=1e-9)


def test_ib_channel_latency_tracks_the_lut_on_fbnet_blocks(predictor):
    # A single-kernel block with mid = cin * e is an FBNet op: the linear model must stay close
    # (the Pi's latency is superlinear in the width at low resolution: about 10 % off at worst).
    _, fb_model = _model("fbnet", "latency_ms", predictor)
    ib_space, ib_model = _model("ib-channel", "latency_ms", predictor, width=1.0)
    for op, (kernel_index, expansion) in {0: (0, 1), 2: (0, 3), 3: (0, 6), 7: (1, 6)}.items():
        counts = np.zeros((22, 2), dtype=np.int64)
        for s, slot in enumerate(ib_space.slots):
            counts[s, kernel_index] = slot.cin * expansion
        ib = ib_model.discrete(ib_space.arch_from_vector(counts))
        fb = fb_model.discrete((op,) * 22)
        assert ib == pytest.approx(fb, rel=0.12)


def test_budgets_outside_the_feasible_range_are_refused(predictor):
    space = create_space("fbnet", SpaceConfig(32, 10, 0.25))
    models = make_cost_models(space, predictor)
    low, high = models["latency_ms"].bounds()
    with pytest.raises(UserError, match=rf"{low:.4g} \.\. {high:.4g}"):
        make_constraints(models, {"latency_ms": low * 0.9})
    with pytest.raises(UserError, match="feasible range"):
        make_constraints(models, {"latency_ms": high * 1.1})
    with pytest.raises(UserError, match="--flops-m"):
        make_constraints(models, {"flops": 1.0})
    (c,) = make_constraints(models, {"latency_ms": 20.0, "flops": None})
    assert c.metric == "latency_ms" and c.limit == 20.0
