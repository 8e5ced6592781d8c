"""The DCA-NAS lookup graph: monotone curve, inverse lookup, cache (METHODS.md §2.4)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas.errors import UserError
from hwnas.search.lookup_graph import (
    LookupGraph,
    averaged,
    graph_path,
    load_graph,
    next_bound,
    save_graph,
    search_bound,
)
from tests.search.dca_toy import derived_cost_at

IDENTITY = {"space": "toy", "data_sha256": "0" * 64}


def test_curve_is_the_monotone_majorant_and_inverse_stays_under_the_limit():
    rng = np.random.default_rng(0)
    bounds = np.sort(rng.uniform(1, 20, size=12))
    derived = bounds * rng.uniform(0.6, 1.4, size=12)  # noisy, not monotone
    graph = LookupGraph("flops", tuple(bounds[::-1]), tuple(derived[::-1]))  # any order in
    assert list(graph.bounds) == sorted(graph.bounds)
    curve = graph.curve()
    assert np.all(np.diff(curve) >= 0) and np.all(curve >= np.asarray(graph.derived))
    for limit in np.linspace(curve[0], curve[-1], 25):
        k = graph.inverse(limit)
        assert graph.derived_at(k) <= limit + 1e-9
        assert graph.derived_at(k * 1.01) >= limit - 1e-9 or k >= graph.bounds[-1]
        safe = graph.safe_bound(limit)
        measured = dict(zip(graph.bounds, graph.derived))
        assert safe is not None and measured[safe] <= limit and safe <= k + 1e-9
    # outside the measured range: proportional
    assert graph.inverse(0.5 * curve[0]) == pytest.approx(0.5 * bounds[0])
    assert graph.derived_at(2 * bounds[-1]) == pytest.approx(2 * curve[-1])
    assert graph.safe_bound(0.5 * curve[0]) is None


def test_json_round_trip_and_malformed_files(tmp_path):
    graph = LookupGraph("params", (1.0, 3.0), (0.5, 2.5), IDENTITY)
    path = save_graph(graph)
    assert path == graph_path("params", IDENTITY) and path.is_file()
    document = json.loads(path.read_text())
    assert document["kind"] == "hwnas-lookup-graph" and document["schema_version"] == 1
    loaded = load_graph("params", IDENTITY)
    assert (loaded.bounds, loaded.derived) == (graph.bounds, graph.derived)
    assert len(load_graph("params", {**IDENTITY, "space": "other"})) == 0  # another setting
    path.write_text(json.dumps({**document, "identity": {"space": "other"}}))
    with pytest.raises(UserError, match="another setting"):
        load_graph("params", IDENTITY)
    with pytest.raises(UserError, match="not a hwnas lookup graph"):
        LookupGraph.from_json({"kind": "hwnas-lut"})
    with pytest.raises(UserError, match="malformed"):
        LookupGraph.from_json({**document, "points": [{"bound": 1.0}]})


def test_toy_lookup_graph_is_monotone_and_its_bound_derives_within_budget():
    grid = [2.0, 6.0, 10.0, 14.0, 18.0, 22.0]
    calls = []

    def measure(bound: float) -> float:
        calls.append(bound)
        return derived_cost_at(bound, steps=2000)

    graph = LookupGraph("flops", identity=IDENTITY)
    for budget in (5.0, 9.0, 12.0, 16.0):
        bound, graph = search_bound(budget, graph, grid, measure, refine=3)
        assert derived_cost_at(bound, steps=2000) <= budget  # the promise of the lookup
        assert bound >= 0.5 * budget  # and not a uselessly tight one
    raw = [d for b, d in zip(graph.bounds, graph.derived) if b in grid]
    assert np.all(np.diff(raw) >= 0), raw  # the toy's derived cost is monotone in K'
    assert len(calls) == len(set(calls)) and len(calls) <= len(grid) + 4 * 3
    cached = load_graph("flops", IDENTITY)
    assert cached.bounds == graph.bounds  # every measurement was cached
    again, _ = search_bound(12.0, cached, grid, measure, refine=0)
    assert again == graph.search_bound(12.0) and len(calls) == len(set(calls))


def test_multi_seed_graph_gives_a_tighter_bound_where_searches_over_shoot():
    """Toy searches whose argmax over-shoots the expectation at K' = 14, 16 on average over seeds
    0 and 1 (derived 14.7 and 22.8): the graph built from both seeds returns K' < K_d there, and
    the seeds' searches with that K' derive within K_d on average (the graph's promise; one seed
    alone may still flip an op above it)."""
    steps, seeds = 600, (0, 1)
    runs: list[tuple[float, int]] = []

    def one(bound: float, seed: int) -> float:
        runs.append((bound, seed))
        return derived_cost_at(bound, steps=steps, seed=seed)

    measure = averaged(one, seeds)
    graph = LookupGraph("flops", identity={**IDENTITY, "seeds": list(seeds)})
    for budget in (14.0, 16.0):
        plain = [derived_cost_at(budget, steps=steps, seed=s) for s in seeds]
        assert np.mean(plain) > budget  # searching at K' = K_d over-shoots
        bound, graph = search_bound(budget, graph, [6.0, 10.0, 14.0, 18.0], measure, refine=2)
        assert 0.6 * budget < bound < budget  # the paper's tighter bound
        assert np.mean([derived_cost_at(bound, steps=steps, seed=s) for s in seeds]) <= budget
    assert sorted(runs) == sorted((b, s) for b in graph.bounds for s in seeds)  # each seed, each K'
    with pytest.raises(ValueError, match="one seed"):
        averaged(one, ())


def test_refinement_bisects_a_cliff_instead_of_stopping_on_an_over_budget_point():
    """Derived cost with a cliff at K' = 10 (0.5 K' below, 3 K' above, softened over [10, 11]):
    the interpolated inverse for K_d = 20 lands next to the measured K' = 11 (derived 33), which is
    over budget; refinement then bisects towards the cliff edge instead of settling for K' = 6."""

    def cliff(bound: float) -> float:
        return 0.5 * bound if bound < 10 else 0.5 * bound + (min(bound, 11.0) - 10.0) * 27.5

    graph = LookupGraph("flops", identity={**IDENTITY, "space": "cliff"})
    without, _ = search_bound(20.0, graph, [6.0, 11.0], cliff, refine=0)
    assert without == 6.0  # the grid alone: the safe point far below the cliff
    bound, _ = search_bound(20.0, graph, [6.0, 11.0], cliff, refine=4)
    assert 10.0 < bound < 11.0 and cliff(bound) <= 20.0
    assert cliff(bound) > 10.0  # derived within 2x of the budget, not 3 (at K' = 6)
    assert next_bound(LookupGraph("flops", (6.0, 6.1), (3.0, 33.0)), 20.0, 0.02) is None
