"""The LUT file: per-block latency statistics measured (or derived) for one device and runtime.

A LUT is JSON, versioned and self-describing (DESIGN.md, "LUT file")::

    {"schema_version": 1, "kind": "hwnas-lut",
     "device": {"name": "pi4", "fingerprint": {...}},
     "runtime": {"name": "onnxruntime", "version": "1.32.0"},
     "settings": {"precision": "fp32", "threads": 1, "core": 0, "warmup": 10, "repeats": 50, ...},
     "space": "fbnet", "resolution": 32, "num_classes": 100,
     "fixed": {"latency_ms": 6.4, "covers": ["conv-in:32x32x3-...", ...], "note": "..."},
     "provenance": {...}, "licence": "...",
     "entries": [{"key": "<spec key>", "op": "ib", <spec fields>, "precision": "fp32",
                  "median_ms": ..., "p10_ms": ..., "p90_ms": ..., "n": ..., <extra fields>}, ...],
     "models": {"<name>": {...JSON model...}}}

Every entry carries both its canonical block-spec key (``hwnas.blocks.specs``) and the explicit
spec fields; the loader checks they agree. Entry fields beyond the spec and the statistics
(``positions``, ``samples_ms``, ``note``...) are kept verbatim in :attr:`LUTEntry.extra`.

``fixed`` is optional: a latency in milliseconds that the LUT adds once per network, and the keys
of the fixed blocks (stem, head...) whose cost it already contains, so that they are not looked
up. It exists for LUTs derived from end-to-end data, where some costs cannot be told apart (see
``hwnas.lut.reference``). A measured LUT simply holds entries for the fixed blocks.

Torch-free and numpy-free: only the stdlib and ``hwnas.blocks.specs``. Never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from hwnas.blocks.specs import SPEC_TYPES, BlockSpec, parse_key, spec_from_dict
from hwnas.errors import UserError
from hwnas.lut.jsonio import atomic_write_text, read_json

SCHEMA_VERSION = 1
KIND = "hwnas-lut"
STAT_FIELDS = ("median_ms", "p10_ms", "p90_ms")
PRECISIONS = ("fp32", "fp16", "int8", "mixed")


@dataclass(frozen=True)
class LUTEntry:
    """Latency statistics of one block spec at one precision, in milliseconds.

    ``n`` is the number of samples behind the statistics (for a reference LUT derived from
    end-to-end data: the number of architectures it was fitted from; see ``extra["note"]``).
    """

    spec: BlockSpec
    precision: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    n: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.spec.key()

    def to_dict(self) -> dict[str, Any]:
        """The JSON record: key, explicit spec fields, precision, statistics, then extras."""
        record: dict[str, Any] = {"key": self.key, **self.spec.to_dict()}
        record.update(precision=self.precision, n=self.n)
        record.update({name: getattr(self, name) for name in STAT_FIELDS})
        record.update(self.extra)
        return record


@dataclass(frozen=True)
class FixedPart:
    """A per-network latency the LUT adds once, covering the fixed blocks listed in ``covers``."""

    latency_ms: float
    covers: tuple[str, ...] = ()
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "covers": list(self.covers), "note": self.note}


@dataclass(frozen=True)
class LUT:
    """A whole LUT file. Build with :func:`load_lut` or directly; write with :func:`save_lut`."""

    device: Mapping[str, Any]
    runtime: Mapping[str, Any]
    settings: Mapping[str, Any]
    entries: tuple[LUTEntry, ...]
    space: Optional[str] = None
    resolution: Optional[int] = None
    num_classes: Optional[int] = None
    fixed: Optional[FixedPart] = None
    provenance: Mapping[str, Any] = field(default_factory=dict)
    licence: str = ""
    models: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[tuple[str, str], LUTEntry] = {}
        for i, entry in enumerate(self.entries):
            slot = (entry.key, entry.precision)
            if slot in index:
                raise UserError(f"duplicate LUT entry {i}: {entry.key} at {entry.precision}")
            index[slot] = entry
        object.__setattr__(self, "_index", index)

    @property
    def precision(self) -> str:
        """The default precision of lookups (``settings["precision"]``)."""
        return str(self.settings.get("precision", "fp32"))

    @property
    def device_name(self) -> str:
        return str(self.device.get("name", "?"))

    def get(
        self, spec: Union[BlockSpec, str], precision: Optional[str] = None
    ) -> Optional[LUTEntry]:
        """The entry for a spec (or its key) at ``precision`` (default: the LUT's), or None."""
        key = spec if isinstance(spec, str) else spec.key()
        return self._index.get((key, precision or self.precision))

    def __contains__(self, spec: object) -> bool:
        return isinstance(spec, (BlockSpec, str)) and self.get(spec) is not None

    def latency_ms(self, spec: Union[BlockSpec, str], precision: Optional[str] = None) -> float:
        """Median latency of one block; a :class:`UserError` names the block if it is missing."""
        entry = self.get(spec, precision)
        if entry is None:
            key = spec if isinstance(spec, str) else spec.key()
            raise UserError(
                f"LUT for device {self.device_name!r} has no entry for {key} at "
                f"{precision or self.precision}; measure it (hwnas build-lut --resume) or use a "
                f"regression model"
            )
        return entry.median_ms

    def missing(
        self, specs: Iterable[BlockSpec], precision: Optional[str] = None
    ) -> list[BlockSpec]:
        """The distinct specs of ``specs`` (first-seen order) that this LUT does not cover.

        Specs listed in ``fixed.covers`` count as covered.
        """
        covered = set(self.fixed.covers) if self.fixed else set()
        seen: set[str] = set()
        out: list[BlockSpec] = []
        for spec in specs:
            key = spec.key()
            if key in seen or key in covered:
                continue
            seen.add(key)
            if self.get(key, precision) is None:
                out.append(spec)
        return out

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (see the module docstring)."""
        return {
            "schema_version": self.schema_version,
            "kind": KIND,
            "device": dict(self.device),
            "runtime": dict(self.runtime),
            "settings": dict(self.settings),
            "space": self.space,
            "resolution": self.resolution,
            "num_classes": self.num_classes,
            "fixed": self.fixed.to_dict() if self.fixed else None,
            "provenance": dict(self.provenance),
            "licence": self.licence,
            "entries": [e.to_dict() for e in self.entries],
            "models": dict(self.models),
        }

    def replace(self, **changes: Any) -> LUT:
        """A copy with some fields changed (``entries`` as any iterable of entries)."""
        if "entries" in changes:
            changes["entries"] = tuple(changes["entries"])
        return dataclasses.replace(self, **changes)


# -- reading and validating -------------------------------------------------------------------


def load_lut(path: Union[str, Path]) -> LUT:
    """Read and validate a LUT file; a broken file raises :class:`UserError` saying what is wrong."""
    return validate(read_json(Path(path), "LUT file"), source=str(path))


def validate(document: Any, source: str = "LUT") -> LUT:
    """Check a parsed LUT document and build the :class:`LUT`; raises :class:`UserError`."""

    def fail(message: str) -> UserError:
        return UserError(f"{source}: {message}")

    if not isinstance(document, dict):
        raise fail("not a JSON object")
    if document.get("kind") != KIND:
        raise fail(f"kind is {document.get('kind')!r}, expected {KIND!r} (not a LUT file)")
    version = document.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise fail(f"unknown schema_version {version!r} (this hwnas reads {SCHEMA_VERSION})")
    if version > SCHEMA_VERSION:
        raise fail(
            f"schema_version {version} is newer than this hwnas supports ({SCHEMA_VERSION}); "
            "upgrade hwnas"
        )
    for name in ("device", "runtime", "settings"):
        if not isinstance(document.get(name), dict):
            raise fail(f"missing or non-object field {name!r}")
    if not isinstance(document["device"].get("name"), str):
        raise fail("device.name is missing")
    if not isinstance(document["device"].get("fingerprint"), dict):
        raise fail("device.fingerprint is missing (an object)")
    if not isinstance(document["runtime"].get("name"), str):
        raise fail("runtime.name is missing")
    precision = document["settings"].get("precision")
    if not isinstance(precision, str):
        raise fail("settings.precision is missing")
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise fail("missing field 'entries' (a list)")
    parsed = tuple(_entry_from_dict(rec, i, fail) for i, rec in enumerate(entries))
    try:
        return LUT(
            device=document["device"],
            runtime=document["runtime"],
            settings=document["settings"],
            entries=parsed,
            space=_optional(document, "space", str, fail),
            resolution=_optional(document, "resolution", int, fail),
            num_classes=_optional(document, "num_classes", int, fail),
            fixed=_fixed_from_dict(document.get("fixed"), fail),
            provenance=_optional(document, "provenance", dict, fail) or {},
            licence=_optional(document, "licence", str, fail) or "",
            models=_optional(document, "models", dict, fail) or {},
            schema_version=version,
        )
    except UserError as exc:
        raise fail(str(exc)) from None


def _optional(document: dict, name: str, kind: type, fail: Any) -> Any:
    value = document.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise fail(f"field {name!r} must be of type {kind.__name__}, got {value!r}")
    return value


def _entry_from_dict(record: Any, i: int, fail: Any) -> LUTEntry:
    if not isinstance(record, dict):
        raise fail(f"entry {i} is not an object")
    key = record.get("key")
    where = f"entry {i} ({key})"
    if not isinstance(key, str):
        raise fail(f"entry {i} has no 'key'")
    try:
        from_key = parse_key(key)
    except ValueError as exc:
        raise fail(f"{where}: unparseable key: {exc}") from None
    cls = SPEC_TYPES[from_key.op]
    absent = [f.name for f in dataclasses.fields(cls) if f.name not in record]
    absent += [name for name in ("op", "precision", "n", *STAT_FIELDS) if name not in record]
    if absent:
        raise fail(f"{where}: missing field(s) {', '.join(absent)}")
    try:
        explicit = spec_from_dict(record)
    except (ValueError, TypeError) as exc:
        raise fail(f"{where}: bad spec fields: {exc}") from None
    if explicit != from_key:
        raise fail(f"{where}: key disagrees with the explicit fields ({explicit.key()})")
    stats = {}
    for name in STAT_FIELDS:
        value = record[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"{where}: {name} is not a number: {value!r}")
        if not math.isfinite(value) or value < 0:
            raise fail(f"{where}: {name} must be finite and >= 0, got {value!r}")
        stats[name] = float(value)
    if not stats["p10_ms"] <= stats["median_ms"] <= stats["p90_ms"]:
        raise fail(f"{where}: statistics out of order (need p10_ms <= median_ms <= p90_ms)")
    n = record["n"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise fail(f"{where}: n must be a positive integer, got {n!r}")
    if not isinstance(record["precision"], str):
        raise fail(f"{where}: precision must be a string")
    known = {"key", "op", "precision", "n", *STAT_FIELDS} | {
        f.name for f in dataclasses.fields(cls)
    }
    extra = {k: v for k, v in record.items() if k not in known}
    return LUTEntry(explicit, record["precision"], n=n, extra=extra, **stats)


def _fixed_from_dict(value: Any, fail: Any) -> Optional[FixedPart]:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise fail("field 'fixed' must be an object")
    latency = value.get("latency_ms")
    if isinstance(latency, bool) or not isinstance(latency, (int, float)):
        raise fail("fixed.latency_ms must be a number")
    if not math.isfinite(latency) or latency < 0:
        raise fail(f"fixed.latency_ms must be finite and >= 0, got {latency!r}")
    covers = value.get("covers", [])
    if not isinstance(covers, list) or not all(isinstance(k, str) for k in covers):
        raise fail("fixed.covers must be a list of spec keys")
    for key in covers:
        try:
            parse_key(key)
        except ValueError as exc:
            raise fail(f"fixed.covers: unparseable key: {exc}") from None
    return FixedPart(float(latency), tuple(covers), str(value.get("note", "")))


# -- writing ------------------------------------------------------------------------------------


def dumps_lut(lut: LUT) -> str:
    """The LUT as JSON text (strict JSON: NaN and infinities are refused)."""
    return json.dumps(lut.to_dict(), indent=1, allow_nan=False) + "\n"


def save_lut(lut: LUT, path: Union[str, Path]) -> Path:
    """Validate and write ``lut`` atomically (temporary file in the same folder, then rename)."""
    text = dumps_lut(lut)
    validate(json.loads(text), source=f"LUT to be written to {path}")
    return atomic_write_text(Path(path), text)
