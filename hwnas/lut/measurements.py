"""Reading architecture CSV files (``arch,latency_ms``) with errors that name the bad row.

The format of HW-NAS-Bench's derived files and of ``hwnas fit-latency`` / ``predict-latency``:
a header line with an ``arch`` column (the space's text encoding, e.g. FBNet ``0-1-...-8``) and,
optionally, a ``latency_ms`` column (end-to-end latency in milliseconds). Other columns are
ignored.
"""

from __future__ import annotations

import csv
import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from hwnas.errors import UserError
from hwnas.lut.spaces import Arch, LatencySpace

MAX_ROWS = 10_000_000  # bounded: a CSV larger than this is a mistake, not a measurement set


@dataclass(frozen=True)
class ArchTable:
    """Architectures read from a CSV, in file order, with their latencies when given.

    Attributes:
        archs: one tuple of option indices per row.
        latency_ms: shape ``(len(archs),)``, or None if the file has no latencies.
        source: the file path.
        sha256: hex digest of the file bytes (provenance of fitted predictors).
    """

    archs: tuple[Arch, ...]
    latency_ms: Optional[np.ndarray]
    source: str
    sha256: str


def read_arch_csv(
    path: Union[str, Path], space: LatencySpace, require_latency: bool = False
) -> ArchTable:
    """Read ``path``; a :class:`UserError` names the file and line of the first bad row."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"CSV file {path} does not exist") from None
    except OSError as exc:
        raise UserError(f"cannot read CSV file {path}: {exc}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UserError(f"{path} is not a UTF-8 text file") from None
    reader = csv.DictReader(text.splitlines())
    fields = [f.strip() for f in reader.fieldnames or []]
    reader.fieldnames = fields
    if "arch" not in fields:
        raise UserError(
            f"{path}: no 'arch' column in the header (expected columns arch,latency_ms)"
        )
    has_latency = "latency_ms" in fields
    if require_latency and not has_latency:
        raise UserError(f"{path}: no 'latency_ms' column (measured latencies are needed here)")
    archs: list[Arch] = []
    latencies: list[float] = []
    for line, row in enumerate(reader, start=2):
        if len(archs) >= MAX_ROWS:
            raise UserError(f"{path}: more than {MAX_ROWS} rows")
        archs.append(_parse_arch(row.get("arch"), space, path, line))
        if has_latency:
            latencies.append(_parse_latency(row.get("latency_ms"), path, line, require_latency))
    if not archs:
        raise UserError(f"{path}: no architectures (only a header, or empty)")
    latency = np.asarray(latencies, dtype=float) if has_latency else None
    if latency is not None:
        missing = np.isnan(latency)
        if missing.all():
            latency = None
        elif missing.any():
            line = int(np.argmax(missing)) + 2
            raise UserError(f"{path} line {line}: latency_ms is empty while other rows have one")
    return ArchTable(tuple(archs), latency, str(path), hashlib.sha256(raw).hexdigest())


def _parse_arch(value: Optional[str], space: LatencySpace, path: Path, line: int) -> Arch:
    if value is None or not value.strip():
        raise UserError(f"{path} line {line}: empty 'arch'")
    try:
        arch = tuple(int(i) for i in space.parse_arch(value.strip()))
        space.check(arch)
    except ValueError as exc:
        raise UserError(
            f"{path} line {line}: bad {space.name} arch {value.strip()!r}: {exc}"
        ) from None
    return arch


def _parse_latency(value: Optional[str], path: Path, line: int, required: bool) -> float:
    if value is None or not value.strip():
        if required:
            raise UserError(f"{path} line {line}: latency_ms is empty")
        return math.nan
    try:
        latency = float(value)
    except ValueError:
        raise UserError(f"{path} line {line}: latency_ms {value!r} is not a number") from None
    if not math.isfinite(latency) or latency <= 0:
        raise UserError(f"{path} line {line}: latency_ms must be a positive number, got {value!r}")
    return latency
