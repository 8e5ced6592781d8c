"""The run directory of ``hwnas search`` (DESIGN.md, "Run directory"), shared by every method.

::

    DIR/config.json        resolved configuration, seeds, environment fingerprint, command
    DIR/arch.json          the discrete architecture in the space's encoding
    DIR/search.json        the method's history, tried architectures, alpha snapshots
    DIR/weights.npz        trained weights of the final network (numpy arrays, no pickle)
    DIR/model.onnx         the exported final network (batch 1)
    DIR/report.json        costs per constraint, accuracy, params, FLOPs, seconds, checks
    DIR/*.png              plots
    DIR/checkpoints/       resumable state while the run is unfinished

Every JSON file is versioned (``schema_version``) and names its ``kind``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from hwnas.errors import UserError

SCHEMA_VERSION = 1


class RunDir:
    """Reads and writes the files of one run directory."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_json(self, name: str, kind: str, body: dict) -> Path:
        document = {"schema_version": SCHEMA_VERSION, "kind": kind, **body}
        text = json.dumps(document, indent=1, allow_nan=False, default=_jsonable)
        return _atomic_write(self.path / name, text.encode())

    def read_json(self, name: str, kind: str) -> dict:
        path = self.path / name
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UserError(f"{path} does not exist (not a search run directory?)") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"cannot read {path}: {exc}") from None
        if document.get("kind") != kind or document.get("schema_version") != SCHEMA_VERSION:
            raise UserError(f"{path} is not a version-{SCHEMA_VERSION} {kind} file")
        return document

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def write_bytes(self, name: str, data: bytes) -> Path:
        return _atomic_write(self.path / name, data)

    def write_weights(self, module: Any) -> Path:
        """The module's ``state_dict`` as ``weights.npz`` (load with ``allow_pickle=False``)."""
        arrays = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".weights.", suffix=".npz")
        os.close(fd)
        try:
            with open(tmp, "wb") as handle:
                np.savez(handle, **arrays)
            os.replace(tmp, self.path / "weights.npz")
        finally:
            Path(tmp).unlink(missing_ok=True)
        return self.path / "weights.npz"

    def read_weights(self, module: Any) -> None:
        import torch

        with np.load(self.path / "weights.npz", allow_pickle=False) as data:
            module.load_state_dict({k: torch.from_numpy(data[k]) for k in data.files})


def environment() -> dict:
    """Fingerprint of what the results depend on: interpreter, libraries, machine."""
    import torch

    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
    }
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - onnxruntime is a host dependency
        info["onnxruntime"] = None
    from hwnas import __version__

    info["hwnas"] = __version__
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _atomic_write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
