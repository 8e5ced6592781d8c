"""The build journal: every finished measurement of a LUT build, kept on disk as it happens.

A JSON-lines file beside the LUT being built (``<out>.partial.jsonl``). Line 1 is a header (what
is being built, with which settings, on which device); every further line is one finished group
of measurements (one round of up to a dozen models) with its raw samples. Each line is written whole, flushed and fsynced before the
next group starts, so a host killed with SIGKILL or a dropped connection loses at most the group
in flight. A torn last line (the kill landed mid-write) is ignored when the journal is read, and
cut off before the next append.

Resuming checks that the device is the same one: the header's fingerprint and the device's
current fingerprint must agree on :data:`device_agents.fingerprint.IDENTITY_FIELDS` (CPU model,
board, machine, core count, runtimes), and the build settings must be identical.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

from device_agents.fingerprint import IDENTITY_FIELDS
from hwnas.errors import UserError

log = logging.getLogger(__name__)

JOURNAL_KIND = "hwnas-lut-journal"
JOURNAL_SCHEMA_VERSION = 1


def journal_path(out: Path) -> Path:
    """Where the journal of a build writing ``out`` lives."""
    return out.with_name(out.name + ".partial.jsonl")


def identity_mismatch(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``"field: old -> new"`` for every identity field that differs between two fingerprints."""
    return [
        f"{name}: {old.get(name)!r} -> {new.get(name)!r}"
        for name in IDENTITY_FIELDS
        if old.get(name) != new.get(name)
    ]


class Journal:
    """An open journal. Create with :meth:`create` or :meth:`resume`."""

    def __init__(self, path: Path, header: dict, groups: list[dict]) -> None:
        self.path = path
        self.header = header
        self.groups = groups  # finished groups, in order

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path, header: Mapping[str, Any]) -> Journal:
        """Start a new journal (refuses to overwrite one: that would throw measurements away)."""
        if path.exists():
            raise UserError(
                f"an unfinished build exists ({path}); pass --resume to continue it, or delete "
                f"that file to start over"
            )
        document = {
            "type": "header",
            "kind": JOURNAL_KIND,
            "schema_version": JOURNAL_SCHEMA_VERSION,
            **header,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        _append_line(path, document)
        return cls(path, document, [])

    @classmethod
    def resume(
        cls, path: Path, fingerprint: Mapping[str, Any], identity: Mapping[str, Any]
    ) -> Journal:
        """Open an existing journal after checking device and settings.

        Args:
            path: the journal file.
            fingerprint: the device's fingerprint now.
            identity: what the new run would build (``plan`` and ``settings``); must equal the
                header's.

        Raises:
            UserError: no journal, a different device, or different settings.
        """
        if not path.is_file():
            raise UserError(f"nothing to resume: no unfinished build at {path}")
        header, groups = read_journal(path)
        changed = identity_mismatch(header.get("fingerprint", {}), fingerprint)
        if changed:
            raise UserError(
                f"refusing to resume {path}: the device is not the one the build started on "
                f"({'; '.join(changed)}); delete the journal to start a new build"
            )
        for name, value in identity.items():
            if header.get(name) != value:
                raise UserError(
                    f"refusing to resume {path}: {name} differs from the unfinished build "
                    f"({header.get(name)!r} there, {value!r} now); use the same flags"
                )
        return cls(path, header, groups)

    # -- contents --------------------------------------------------------------------------------
    def job_rounds(self) -> dict[str, list[list[float]]]:
        """Per job id, the samples (ms) of each of its kept rounds, in the order timed."""
        out: dict[str, list[list[float]]] = {}
        for group in self.groups:
            for job in group["jobs"]:
                out.setdefault(job["id"], []).append(job["samples"])
        return out

    def rounds_kept(self) -> int:
        """How many (job, round) measurements are kept."""
        return sum(len(group["jobs"]) for group in self.groups)

    def device_seconds(self) -> float:
        """Device time spent on the kept groups, all sessions together."""
        return float(sum(group.get("device_s", 0.0) for group in self.groups))

    def append_group(self, group: Mapping[str, Any]) -> None:
        """Write one finished group durably (flush + fsync) and remember it."""
        record = {"type": "group", **group}
        _append_line(self.path, record)
        self.groups.append(record)

    def remove(self) -> None:
        """Delete the journal (after the finished LUT was written)."""
        self.path.unlink(missing_ok=True)


def read_journal(path: Path) -> tuple[dict, list[dict]]:
    """The header and the intact group records of a journal (a torn last line is skipped)."""
    header: Optional[dict] = None
    groups: list[dict] = []
    for number, record in _lines(path):
        if number == 1:
            if record.get("type") != "header" or record.get("kind") != JOURNAL_KIND:
                raise UserError(f"{path} is not an hwnas build journal")
            header = record
        elif record.get("type") == "group":
            groups.append(record)
    if header is None:
        raise UserError(f"build journal {path} is empty or its header is damaged")
    return header, groups


def _lines(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number >= len(lines) - 1:  # the last line, cut short by a kill
                log.warning("%s: ignoring a torn last line (%d bytes)", path, len(line))
                continue
            raise UserError(f"build journal {path} is damaged at line {number}") from None
        if isinstance(record, dict):
            yield number, record


def _append_line(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line; a torn previous line is cut off first so records never merge."""
    text = json.dumps(record, allow_nan=False, separators=(",", ":")) + "\n"
    if path.exists():
        _cut_torn_tail(path)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _cut_torn_tail(path: Path) -> None:
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
