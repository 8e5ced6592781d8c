"""Recipes and flags -> RunConfig: precedence, validation, shipped recipes."""

from __future__ import annotations

import pytest

from hwnas.errors import UserError
from hwnas.paths import recipes_dir
from hwnas.search.api import get_method, method_config
from hwnas.search.config import RunConfig, config_from_dict, read_recipe, resolve_config

RECIPES = sorted(recipes_dir().glob("*.toml"))


def test_default_recipe_spells_out_the_built_in_defaults():
    from_recipe = resolve_config(read_recipe(str(recipes_dir() / "default.toml")), {})
    built_in = resolve_config(None, {})
    assert {**from_recipe.to_dict(), "recipe": None, "method_settings": {}} == {
        **built_in.to_dict(),
        "method_settings": {},
    }
    spec = get_method("greedy-admm")
    assert method_config(spec, from_recipe.method_settings) == spec.config_cls()


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_shipped_recipe_resolves(path):
    config = resolve_config(read_recipe(str(path)), {"latency_ms": 20.0})
    spec = get_method(config.method)
    method_config(spec, config.method_settings)
    assert config.recipe == str(path)


def test_flags_override_the_recipe_which_overrides_defaults(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[run]\nseed = 3\nspace = "ib-channel"\n[budget]\nlatency_ms = 30\n'
        "[final]\nepochs = 5\n[search]\nsteps = 7\nwarmup_steps = 2\n"
    )
    config = resolve_config(read_recipe(str(recipe)), {"seed": 9, "epochs": 1.5, "device": None})
    assert (config.seed, config.space, config.latency_ms) == (9, "ib-channel", 30.0)
    assert (config.final.epochs, config.search.steps, config.search.seed) == (1.5, 7, 9)
    assert config.device == RunConfig.device
    assert config.limits() == {"latency_ms": 30.0, "flops": None, "params": None}
    assert config_from_dict(config.to_dict()) == config


def test_recipe_mistakes_are_user_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[search]\nstepz = 3\n")
    with pytest.raises(
        UserError, match=r"unknown key\(s\) stepz in recipe \[search\]; known: steps"
    ):
        resolve_config(read_recipe(str(bad)), {})
    bad.write_text("[nope]\nx = 1\n")
    with pytest.raises(UserError, match="unknown recipe table"):
        resolve_config(read_recipe(str(bad)), {})
    bad.write_text("[run\n")
    with pytest.raises(UserError, match="not valid TOML"):
        read_recipe(str(bad))
    with pytest.raises(UserError, match=r"shipped recipes: .*default.toml"):
        read_recipe("missing.toml")
    assert read_recipe("smoke.toml")["_path"].endswith("search/smoke.toml")


def test_the_method_defaults_to_one_the_space_supports(tmp_path):
    assert resolve_config(None, {}).method == "greedy-admm"
    assert resolve_config(None, {"space": "ib-channel"}).method == "greedy-admm"
    darts = resolve_config(None, {"space": "darts"})
    assert darts.method == "dca"
    recipe = tmp_path / "r.toml"
    recipe.write_text('[run]\nspace = "darts"\n[methods.dca]\nwarmup_steps = 3\n')
    assert resolve_config(read_recipe(str(recipe)), {}).method_settings == {"warmup_steps": 3}
    assert resolve_config(None, {"space": "darts", "method": "darts"}).method == "darts"
    assert resolve_config(None, {"space": "dso"}).method == "dso"  # the only one on edges
    with pytest.raises(UserError, match="known: darts, dso, fbnet"):
        resolve_config(None, {"space": "nope"})
