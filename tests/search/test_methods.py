"""Registry-parametrized smoke test: every method, every space it supports, a toy problem."""

from __future__ import annotations

import json

import pytest

from hwnas.errors import UserError
from hwnas.search.api import Hooks, get_method, list_methods, method_config
from hwnas.search.finalize import finalize
from hwnas.spaces.base import list_spaces

CASES = [(m, s) for m in list_methods() for s in list_spaces()]


@pytest.mark.parametrize(("method", "space"), CASES)
def test_every_method_returns_a_valid_json_arch_that_finalizes(method, space, make_problem):
    spec = get_method(method)
    problem = make_problem(space, fraction=0.6, steps=4)
    if problem.space.relaxation not in spec.relaxations:
        pytest.skip(f"{method} does not support {space}")
    calls = []
    result = spec.run(problem, method_config(spec, {}), Hooks(lambda *a: calls.append(a)))
    text = json.dumps(
        {
            "arch": problem.space.arch_to_json(result.arch),
            "info": result.info,
            "history": list(result.history),
            "snapshots": list(result.snapshots),
            "tried": [t.__dict__ for t in result.tried],
        }
    )
    decoded = json.loads(text)
    assert problem.space.arch_from_json(decoded["arch"]) == result.arch
    assert result.values is None or result.values.shape == problem.space.alpha_shape
    # the method's own architecture, repaired (and filled) by the shared step, meets the budget
    for fill in (False, True):
        done = finalize(problem, result.arch, result.values, fill)
        assert all(c.satisfied(done.arch) for c in problem.constraints)
        record = json.loads(json.dumps(done.record))
        assert record["own"]["arch"] == problem.space.format_arch(result.arch)
        assert record["own"]["feasible"] == all(
            c.satisfied(result.arch) for c in problem.constraints
        )
        assert record["fill"]["arch"] == problem.space.format_arch(done.arch)
        if not fill or result.values is None:
            assert (
                record["fill"]["steps"] == [] and record["fill"]["arch"] == record["repair"]["arch"]
            )
    assert calls and calls[-1][0] == calls[-1][1]  # progress reached its total


def test_registry_errors_name_the_known_methods():
    with pytest.raises(
        UserError, match=r"unknown search method 'nope'; known: .*greedy-admm.*random"
    ):
        get_method("nope")
    with pytest.raises(UserError, match=r"unknown method setting.*rho0"):
        method_config(get_method("greedy-admm"), {"rh0": 1.0})


@pytest.mark.parametrize("method", ["dsnas", "proxyless", "fbnet-gumbel"])
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"arch_lr": 0.0}, "arch_lr must be > 0"),
        ({"grad_clip": -1.0}, "grad_clip must be > 0"),
        ({"snapshot_every": 0}, "snapshot_every must be at least 1"),
    ],
)
def test_sampling_methods_refuse_bad_shared_settings(method, setting, message):
    spec = get_method(method)
    with pytest.raises(UserError, match=rf"^{method}: {message}"):
        method_config(spec, setting)
    assert method_config(spec, {"arch_betas": [0.5, 0.9]}).arch_betas == (0.5, 0.9)
