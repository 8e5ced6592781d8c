"""The resolved configuration of one ``hwnas search`` run, from a TOML recipe and flags.

Precedence: built-in defaults < recipe (``--recipe search/<name>.toml``) < command-line flags.
A recipe has these tables (every key optional, unknown keys are errors naming the known ones)::

    [run]      device, space, method, seed, threads, fill, verify_device, verify_repeats
    [budget]   latency_ms, flops_m, params_m          # constraints (millions for FLOPs/params)
    [space]    resolution, search_width
    [data]     dataset, root, search_train_limit, search_resolution, final_train_limit,
               test_limit, val_fraction
    [search]   the SearchBudget fields (steps, warmup_steps, batch_size, lr, ...)
    [final]    epochs, max_steps, batch_size, lr, momentum, weight_decay, label_smoothing,
               warmup_steps
    [methods.<name>]  hyperparameters of method <name> (used when it is the run's method)

The resolved :class:`RunConfig` goes into the run directory's ``config.json``.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hwnas.errors import UserError
from hwnas.search.api import SearchBudget


@dataclass(frozen=True)
class DataSection:
    """Which images the search and the final training use.

    Attributes:
        dataset: dataset registry name (``hwnas.data``).
        root: folder with the dataset files (None: the loader's default places).
        search_train_limit: images of the train split used by the search (val carved from them).
        search_resolution: image size during the search (None: the space's resolution).
        final_train_limit: images for the final training (val carved from them).
        test_limit: test images evaluated (None: the whole official test split).
        val_fraction: share of the used train images held out for validation.
    """

    dataset: str = "fashion-mnist"
    root: Optional[str] = None
    search_train_limit: Optional[int] = 5000
    search_resolution: Optional[int] = 16
    final_train_limit: Optional[int] = 10000
    test_limit: Optional[int] = None
    val_fraction: float = 0.1


@dataclass(frozen=True)
class FinalSection:
    """Training of the derived full-width network (from scratch).

    Attributes:
        epochs: passes over the final training images; steps = ceil(epochs * images / batch).
        max_steps: cap on those steps (None: no cap).
        batch_size, lr, momentum, weight_decay, label_smoothing, warmup_steps: SGD settings
            (cosine decay after a linear warm-up).
    """

    epochs: float = 2.0
    max_steps: Optional[int] = None
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    warmup_steps: int = 10


@dataclass(frozen=True)
class RunConfig:
    """Everything one search run depends on (``config.json``)."""

    device: str = "pi4"
    space: str = "fbnet"
    method: str = "greedy-admm"  # resolve_config: the space's default when none is named
    seed: int = 0
    threads: Optional[int] = None  # None: torch's default (every core; 1 under torchrun)
    latency_ms: Optional[float] = None
    flops_m: Optional[float] = None
    params_m: Optional[float] = None
    resolution: int = 32
    search_width: float = 0.25
    verify: bool = False
    verify_device: Optional[str] = None
    verify_repeats: int = 50
    data: DataSection = field(default_factory=DataSection)
    search: SearchBudget = field(default_factory=SearchBudget)
    final: FinalSection = field(default_factory=FinalSection)
    method_settings: dict = field(default_factory=dict)
    recipe: Optional[str] = None
    fill: bool = True  # spend the budget the method's repaired architecture leaves (finalize);
    # on by default: bench/results/fill_gain.json (bench/search_methods.py --fill-report), fill
    # beat no fill by +0.52 points over 120 paired runs (73 wins, 46 losses), most where the own
    # architecture undershoots

    def limits(self) -> dict[str, Optional[float]]:
        """Constraint limits in the cost models' units (ms, MACs, parameters)."""
        scale = lambda v: None if v is None else v * 1e6  # noqa: E731
        return {
            "latency_ms": self.latency_ms,
            "flops": scale(self.flops_m),
            "params": scale(self.params_m),
        }

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {
    "run": (
        "device",
        "space",
        "method",
        "seed",
        "threads",
        "fill",
        "verify_device",
        "verify_repeats",
    ),
    "budget": ("latency_ms", "flops_m", "params_m"),
    "space": ("resolution", "search_width"),
}


def read_recipe(path: str) -> dict:
    """Parse a TOML recipe (``tomllib``, or ``tomli`` before Python 3.11)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on Python < 3.11 only
        import tomli as tomllib
    p = Path(path)
    if not p.is_file():
        from hwnas.paths import recipes_dir

        shipped = recipes_dir() / p.name
        if not shipped.is_file():
            known = ", ".join(sorted(r.name for r in recipes_dir().glob("*.toml")))
            raise UserError(f"recipe {path} does not exist; shipped recipes: {known}")
        p = shipped
    try:
        return tomllib.loads(p.read_text(encoding="utf-8")) | {"_path": str(p)}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"recipe {p} is not valid TOML: {exc}") from None


def resolve_config(recipe: Optional[dict], flags: dict) -> RunConfig:
    """Merge defaults, a parsed recipe and flags (``None`` flags are ignored) into a RunConfig."""
    recipe = dict(recipe or {})
    path = recipe.pop("_path", None)
    top: dict[str, Any] = {}
    for section, keys in _SECTIONS.items():
        top.update(_section(recipe.pop(section, {}), section, keys))
    data = _section(recipe.pop("data", {}), "data", _names(DataSection))
    search = _section(recipe.pop("search", {}), "search", _names(SearchBudget))
    final = _section(recipe.pop("final", {}), "final", _names(FinalSection))
    methods = recipe.pop("methods", {})
    if recipe:
        known = ", ".join([*_SECTIONS, "data", "search", "final", "methods"])
        raise UserError(f"unknown recipe table(s) {', '.join(sorted(recipe))}; known: {known}")
    top.update({k: v for k, v in flags.items() if v is not None and k in _names(RunConfig)})
    if flags.get("dataset") is not None:
        data["dataset"] = flags["dataset"]
    if flags.get("data_root") is not None:
        data["root"] = flags["data_root"]
    if flags.get("epochs") is not None:
        final["epochs"] = flags["epochs"]
    seed = top.get("seed", 0)
    search["seed"] = seed
    if "method" not in top:
        from hwnas.search.api import default_method

        top["method"] = default_method(top.get("space", RunConfig.space))
    method = top["method"]
    if not isinstance(methods, dict) or not all(isinstance(v, dict) for v in methods.values()):
        raise UserError("recipe [methods.<name>] tables must hold key = value settings")
    try:
        return RunConfig(
            **top,
            data=DataSection(**data),
            search=SearchBudget(**search),
            final=FinalSection(**final),
            method_settings=dict(methods.get(method, {})),
            recipe=path,
        )
    except TypeError as exc:
        raise UserError(f"bad recipe value: {exc}") from None


def config_from_dict(document: dict) -> RunConfig:
    """Inverse of :meth:`RunConfig.to_dict` (for ``--resume``)."""
    doc = dict(document)
    try:
        return RunConfig(
            **{k: v for k, v in doc.items() if k not in ("data", "search", "final")},
            data=DataSection(**doc["data"]),
            search=SearchBudget(**doc["search"]),
            final=FinalSection(**doc["final"]),
        )
    except (KeyError, TypeError) as exc:
        raise UserError(f"config.json does not describe a search run: {exc}") from None


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _section(values: Any, name: str, known: tuple[str, ...]) -> dict:
    if not isinstance(values, dict):
        raise UserError(f"recipe [{name}] must be a table")
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(unknown)} in recipe [{name}]; known: {', '.join(known)}"
        )
    return dict(values)
