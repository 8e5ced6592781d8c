"""Read (and, for tests and benchmarks, write) a search run directory: arch, config, weights.

The run directory is the contract of DESIGN.md ("Run directory"): ``arch.json``, ``config.json``,
``report.json``, the trained weights, ``model.onnx``. What this loader reads:

* ``arch.json``: ``{"space": "fbnet", "arch": [22 ints] | "0-1-..."}`` (``space`` may also come
  from ``config.json``);
* ``config.json``: ``space``, and optionally ``resolution`` (32), ``num_classes`` (10),
  ``width`` (1.0), ``seed``, and the dataset as ``data`` (a :class:`~hwnas.data.DataConfig`
  dict) or ``dataset`` (a name or such a dict);
* weights: the first of ``weights.npz`` (arrays named by ``state_dict`` keys, read with
  ``allow_pickle=False``), ``weights.safetensors`` (if the safetensors package is installed),
  ``weights.pt`` / ``model.pt`` (``torch.load(weights_only=True)``, which refuses arbitrary
  pickles).

The network is rebuilt by the space (``create_space(...).build_net(arch, width)``), so it is the
standalone network the search trained and timed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.errors import UserError

WEIGHT_FILES = ("weights.npz", "weights.safetensors", "weights.pt", "model.pt")


@dataclass(frozen=True)
class LoadedRun:
    """A run directory read back: the eval-mode network and what it was trained on."""

    path: Path
    space: str
    arch: Any
    arch_text: str
    config: dict
    report: dict
    module: Any  # torch.nn.Module, eval mode
    input_shape: tuple[int, int, int, int]
    num_classes: int
    data: dict  # DataConfig fields


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise UserError(f"run directory {path.parent} has no {path.name} ({what})")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} is not a JSON object")
    return value


def _data_config(config: dict) -> dict:
    data = config.get("data", config.get("dataset", "fashion-mnist"))
    if isinstance(data, str):
        data = {"name": data}
    if not isinstance(data, dict):
        raise UserError("config.json: 'data'/'dataset' must be a name or an object")
    data = dict(data)
    data.setdefault("resolution", int(config.get("resolution", 32)))
    return data


def load_weights(path: Path) -> dict:
    """The state dict stored in the run directory ``path`` (tensors by ``state_dict`` key)."""
    import torch

    for name in WEIGHT_FILES:
        file = path / name
        if not file.is_file():
            continue
        if name.endswith(".npz"):
            import numpy as np

            with np.load(file, allow_pickle=False) as arrays:
                return {k: torch.from_numpy(arrays[k].copy()) for k in arrays.files}
        if name.endswith(".safetensors"):
            try:
                from safetensors.torch import load_file
            except ImportError:
                continue
            return load_file(str(file))
        return torch.load(file, map_location="cpu", weights_only=True)
    raise UserError(f"run directory {path} has no weights (looked for {', '.join(WEIGHT_FILES)})")


def load_run(path: str | Path) -> LoadedRun:
    """Read a run directory and rebuild its trained network (eval mode).

    Raises:
        UserError: a missing or malformed file, an unknown space, weights that do not fit.
    """
    from hwnas.spaces.base import SpaceConfig, create_space

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"run directory {path} does not exist")
    arch_doc = _read_json(path / "arch.json", "the architecture")
    config = _read_json(path / "config.json", "the run's configuration")
    report_path = path / "report.json"
    report = _read_json(report_path, "the report") if report_path.is_file() else {}
    space_name = arch_doc.get("space") or config.get("space")
    if not isinstance(space_name, str):
        raise UserError(f"{path}: neither arch.json nor config.json names the space")
    resolution = int(config.get("resolution", 32))
    num_classes = int(config.get("num_classes", 10))
    space = create_space(space_name, SpaceConfig(resolution=resolution, num_classes=num_classes))
    raw = arch_doc.get("arch")
    arch = space.parse_arch(raw) if isinstance(raw, str) else space.arch_from_json(raw)
    module = space.build_net(
        arch, width=float(config.get("width", 1.0)), seed=int(config.get("seed", 0))
    )
    state = load_weights(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise UserError(f"{path}: weights do not fit the {space_name} arch: {first}") from None
    module.eval()
    return LoadedRun(
        path,
        space_name,
        arch,
        space.format_arch(arch),
        config,
        report,
        module,
        (1, 3, resolution, resolution),
        num_classes,
        _data_config(config),
    )


def write_run(
    path: str | Path,
    space: str,
    arch_text: str,
    module: Any,
    config: dict,
    report: dict | None = None,
) -> Path:
    """Write a minimal run directory (arch.json, config.json, weights.npz, report.json).

    For tests and benchmarks that need a trained network before a search has produced one.
    """
    import numpy as np

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "arch.json").write_text(json.dumps({"space": space, "arch": arch_text}, indent=2))
    (path / "config.json").write_text(json.dumps({"space": space, **config}, indent=2))
    arrays = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    np.savez(path / "weights.npz", **arrays)
    (path / "report.json").write_text(
        json.dumps(report or {"space": space, "arch": arch_text}, indent=2)
    )
    return path


def update_run_report(run_dir: Path, key: str, value: object) -> None:
    """Set ``report.json[key] = value`` in the run directory (created if missing)."""
    path = run_dir / "report.json"
    doc = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    doc[key] = value
    tmp = path.with_name(".report.json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False), encoding="utf-8")
    tmp.replace(path)
