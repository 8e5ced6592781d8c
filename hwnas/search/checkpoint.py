"""Resumable state without pickle: arrays in ``<name>.npz`` (numpy's .npy format, loaded with
``allow_pickle=False``) and everything else in a versioned ``<name>.json`` beside it.

Both files are written to temporary names and renamed, JSON last; the JSON holds the sha256 of
the arrays file, so a crash between the two renames is detected (and refused) on load.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from hwnas.errors import UserError

SCHEMA_VERSION = 1
KIND = "hwnas-checkpoint"


class CheckpointStore:
    """Named checkpoints in one folder (``search``, ``final``...)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def save(self, name: str, arrays: dict[str, np.ndarray], meta: dict) -> None:
        """Write ``arrays`` and ``meta`` (JSON-ready, must hold ``step``) atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".npz")
        os.close(fd)
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
            digest = _sha256(Path(tmp))
            os.replace(tmp, self.folder / f"{name}.npz")
        finally:
            Path(tmp).unlink(missing_ok=True)
        document = {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "name": name,
            "arrays_sha256": digest,
            "meta": meta,
        }
        _write_text(self.folder / f"{name}.json", json.dumps(document, indent=1))

    def load(self, name: str) -> Optional[tuple[dict[str, np.ndarray], dict]]:
        """``(arrays, meta)`` of checkpoint ``name``, or None if there is none."""
        meta_path, array_path = self.folder / f"{name}.json", self.folder / f"{name}.npz"
        if not meta_path.is_file() or not array_path.is_file():
            return None
        try:
            document = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"checkpoint {meta_path} is unreadable: {exc}") from None
        if document.get("kind") != KIND or document.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{meta_path} is not a version-{SCHEMA_VERSION} hwnas checkpoint")
        if document.get("arrays_sha256") != _sha256(array_path):
            raise UserError(f"checkpoint {name} in {self.folder} is incomplete; delete it")
        with np.load(array_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        return arrays, document["meta"]

    def remove(self, name: str) -> None:
        for suffix in (".json", ".npz"):
            (self.folder / f"{name}{suffix}").unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# -- torch state <-> arrays -------------------------------------------------------------------------
def module_arrays(prefix: str, module: Any) -> dict[str, np.ndarray]:
    """``{prefix.name: array}`` for every entry of ``module.state_dict()``."""
    return {
        f"{prefix}.{k}": v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()
    }


def load_module_arrays(prefix: str, module: Any, arrays: dict[str, np.ndarray]) -> None:
    import torch

    state = {
        k[len(prefix) + 1 :]: torch.from_numpy(v)
        for k, v in arrays.items()
        if k.startswith(prefix + ".")
    }
    module.load_state_dict(state)


def optimizer_arrays(prefix: str, optimizer: Any) -> dict[str, np.ndarray]:
    """Momentum buffers of an SGD optimizer, by parameter index."""
    out = {}
    state = optimizer.state_dict()["state"]
    for index, entry in state.items():
        buffer = entry.get("momentum_buffer")
        if buffer is not None:
            out[f"{prefix}.{index}"] = buffer.detach().cpu().numpy().copy()
    return out


def load_optimizer_arrays(prefix: str, optimizer: Any, arrays: dict[str, np.ndarray]) -> None:
    import torch

    state_dict = optimizer.state_dict()
    for key, value in arrays.items():
        if key.startswith(prefix + "."):
            index = int(key[len(prefix) + 1 :])
            state_dict["state"][index] = {"momentum_buffer": torch.from_numpy(value)}
    optimizer.load_state_dict(state_dict)
