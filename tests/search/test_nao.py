"""NAO: the sanity checks of METHODS.md §8.3 on a synthetic space with a known score, the token
encodings, and small real NAO-WS runs on ``fbnet`` and ``darts`` under a budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwnas.errors import UserError
from hwnas.search import nao_model as nm
from hwnas.search.api import Hooks
from hwnas.search.nao import NAOConfig, encoding, run
from hwnas.spaces import darts_genotype as gt

EPOCHS, LR = 300, 3e-3  # NAO: 1000 epochs at 1e-3 on 600 archs
SEEDS = 25  # the best pool archs moved (NAO: the top 100 of 600)
T, V = 8, 4  # synthetic: sequences of 8 tokens over 4 ops, score = sum of a position-wise table


@pytest.fixture(scope="module")
def synthetic():
    """Table seed 1. Seeds 0-3 all pass the reconstruction and ranking checks (pairwise 0.81,
    0.88, 0.86, 0.87); the decoded-beat-seeds check holds on 1, 2, 3 and fails on 0 (the 9
    accepted average 1.67 against the seeds' 1.87): NAO's step is weak (nao.py docstring)."""
    return train_synthetic(1)


def train_synthetic(seed: int = 0) -> dict:
    """200 pool archs and 100 held-out ones, a score table and a cost table (both additive),
    and a controller with an accuracy and a cost head trained on the pool."""
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    score_table, cost_table = rng.normal(size=(T, V)), rng.uniform(1, 3, size=(T, V))
    x = rng.integers(0, V, size=(300, T))
    score = score_table[np.arange(T), x].sum(1) + 0.1 * rng.normal(size=300)
    cost = cost_table[np.arange(T), x].sum(1)
    unit = lambda v: (v - v.min()) / np.ptp(v)  # noqa: E731
    torch.manual_seed(seed)
    model = nm.Controller(nm.TokenSpec(np.ones((T, V), dtype=bool)), heads=2)
    opt = torch.optim.Adam(model.parameters(), LR, weight_decay=1e-4)
    targets = np.stack([unit(score[:200]), unit(cost[:200])], 1)
    settings = nm.FitSettings(epochs=EPOCHS, batch_size=50)
    nm.fit(model, opt, x[:200], targets, settings, torch.Generator().manual_seed(seed))
    return {
        "x": x,
        "score": score,
        "cost": cost,
        "model": model,
        "tables": (score_table, cost_table),
    }


def test_the_decoder_reconstructs_the_pool(synthetic):
    assert nm.reconstruction(synthetic["model"], synthetic["x"][:200]) >= 0.95


def test_the_predictor_ranks_held_out_architectures(synthetic):
    predicted = nm.predict(synthetic["model"], synthetic["x"][200:])
    assert nm.pairwise_accuracy(predicted[:, 0], synthetic["score"][200:]) >= 0.8
    assert nm.pairwise_accuracy(predicted[:, 1], synthetic["cost"][200:]) >= 0.8


def _decode(synthetic, weights, limit=np.inf) -> dict:
    """New archs decoded from the 25 best of the pool (by score), as a NAO round does: the
    seeds, the accepted archs, every arch decoded (not in the pool) and the counts."""
    x, score = synthetic["x"][:200], synthetic["score"][:200]
    seeds = x[np.argsort(-score)[:SEEDS]]
    known, new, candidates = {tuple(a) for a in x}, [], []

    def accept(row: np.ndarray, gain: float) -> str:
        if tuple(row) in known:
            return "seen"
        known.add(tuple(row))
        candidates.append(row)
        if true_cost(synthetic, row) > limit:
            return "rejected_over_budget"
        if gain <= 0:
            return "rejected_by_predictor"
        new.append(row)
        return "new"

    pool_costs = true_cost(synthetic, x)

    def exact(rows: np.ndarray) -> np.ndarray:  # normalised as the cost head's targets
        return ((true_cost(synthetic, rows) - pool_costs.min()) / np.ptp(pool_costs))[:, None]

    stats = nm.generate(synthetic["model"], seeds, weights, 25, accept, 50, exact)
    as_array = lambda rows: np.array(rows, dtype=np.int64).reshape(-1, T)  # noqa: E731
    return {**stats, "seeds": seeds, "accepted": as_array(new), "decoded": as_array(candidates)}


def true_score(synthetic, archs: np.ndarray) -> np.ndarray:
    return synthetic["tables"][0][np.arange(T), archs].sum(-1)


def true_cost(synthetic, archs: np.ndarray) -> np.ndarray:
    return synthetic["tables"][1][np.arange(T), archs].sum(-1)


def test_decoded_architectures_beat_their_seeds(synthetic):
    out = _decode(synthetic, [1.0, 0.0])
    assert out["new"] >= 5 and out["rejected_by_predictor"] > out["new"]
    assert (
        true_score(synthetic, out["accepted"]).mean() > true_score(synthetic, out["seeds"]).mean()
    )


def test_decodes_over_the_budget_are_rejected_by_their_exact_cost(synthetic):
    limit = float(np.median(true_cost(synthetic, _decode(synthetic, [1.0, 0.0])["seeds"])))
    for mu in (0.0, 1.0):  # accuracy alone, and with the cost head in the step and the check
        out = _decode(synthetic, [1.0, -mu], limit)
        decoded, accepted = (
            true_cost(synthetic, out["decoded"]),
            true_cost(synthetic, out["accepted"]),
        )
        assert out["new"] == len(accepted) > 0 and accepted.max() <= limit
        assert out["rejected_over_budget"] == (decoded > limit).sum() > 0


def test_swapping_a_darts_node_s_pairs_keeps_the_genotype(make_problem):
    code = encoding(make_problem("darts"))
    arch = gt.sample_genotype(np.random.default_rng(3))
    tokens = torch.as_tensor(code.tokens(arch))[None].repeat(64, 1)
    swapped = code.spec.swapped(tokens, torch.Generator().manual_seed(0))
    assert (swapped != tokens).any(1).sum() > 50  # most rows had some node swapped
    assert all(code.arch(row) == arch for row in swapped.numpy())
    assert code.arch(code.tokens(arch)) == arch


@pytest.mark.parametrize("space", ["fbnet", "darts"])
def test_an_untrained_decoder_only_writes_valid_architectures(space, make_problem):
    code = encoding(make_problem(space))
    torch.manual_seed(0)
    model = nm.Controller(code.spec, heads=1, hidden=16, embedding=8, mlp_width=8)
    with torch.no_grad():  # large random weights: varied tokens, each masked to be legal
        for p in model.parameters():
            p.normal_(0.0, 1.0)
    outputs = torch.nn.functional.normalize(
        torch.randn(32, code.spec.length // code.spec.group, 16), dim=-1
    )
    decoded = model.decode(outputs).numpy()
    archs = {code.arch(row) for row in decoded}  # raises on an invalid genotype
    assert len(archs) > 16


SMALL = {"rounds": 2, "pool_size": 12, "seed_archs": 4, "new_archs": 6, "controller_epochs": 40,
         "controller_lr": 0.01, "max_step_size": 20, "hidden": 32, "embedding": 16,
         "mlp_width": 32}  # fmt: skip


@pytest.mark.parametrize("space", ["fbnet", "darts"])
def test_a_small_search_keeps_every_pool_architecture_within_budget(space, make_problem):
    problem = make_problem(space, fraction=0.3, steps=6)
    result = run(problem, NAOConfig(**SMALL), Hooks())
    (constraint,) = problem.constraints
    assert constraint.satisfied(result.arch)
    assert all(t.costs[constraint.metric] <= constraint.limit * (1 + 1e-9) for t in result.tried)
    info = result.info
    assert info["initial_pool"] == 12 and info["generated"] + info["initial_pool"] == len(
        result.tried
    )
    assert info["rejected_over_budget"] > 0  # decodes over the budget were seen and dropped
    assert [r["round"] for r in result.history] == [0, 1]
    first = result.history[0]
    assert first["new"] == info["generated"] and first["step"] == 3
    assert first["rejected_over_budget"] == info["rejected_over_budget"]
    assert result.values.shape == problem.space.alpha_shape
    best = max(result.tried, key=lambda t: t.val_accuracy)
    assert best.val_accuracy == info["best_val_accuracy"]


def test_the_null_control_keeps_the_initial_pool(make_problem):
    problem = make_problem("fbnet", fraction=0.3, steps=4)
    result = run(problem, NAOConfig(**{**SMALL, "optimize": False}), Hooks())
    assert result.info["generated"] == 0 and result.info["best_added_in_round"] == 0
    assert len(result.tried) == 12 and all("new" not in row for row in result.history)


def test_bad_settings_are_user_errors(make_problem):
    with pytest.raises(UserError, match="eval_images >= 1"):
        run(make_problem("fbnet", eval_images=0), NAOConfig(**SMALL), Hooks())
    with pytest.raises(UserError, match="seed_archs <= pool_size"):
        NAOConfig(pool_size=10, seed_archs=20)
    with pytest.raises(UserError, match="new_archs < pool_size"):
        NAOConfig(pool_size=10, new_archs=10)
    with pytest.raises(UserError, match="cost_weight >= 0"):
        NAOConfig(cost_weight=-1)
