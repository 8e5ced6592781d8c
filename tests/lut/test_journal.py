"""The build journal: durable appends, torn last lines, and refusing a resume on another device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.errors import UserError
from hwnas.lut.journal import Journal, identity_mismatch, journal_path, read_journal

FP = {
    "cpu_model": "AMD EPYC",
    "machine": "x86_64",
    "cores_logical": 2,
    "board": None,
    "runtimes": {"onnxruntime": "1.32.0"},
    "hostname": "a",
    "freq_khz": {"cur": 1},
}
IDENTITY = {"device": "local", "plan": {"space": "fbnet"}, "settings": {"seed": 0}}


def _group(i: int) -> dict:
    return {"device_s": 0.5, "jobs": [{"id": f"block:{i}", "kind": "block", "samples": [i, i]}]}


def test_path_and_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "local_fbnet.json"
    path = journal_path(out)
    assert path.name == "local_fbnet.json.partial.jsonl"
    journal = Journal.create(path, {**IDENTITY, "fingerprint": FP})
    journal.append_group(_group(0))
    journal.append_group(_group(1))
    header, groups = read_journal(path)
    assert header["kind"] == "hwnas-lut-journal" and header["fingerprint"] == FP
    assert [g["jobs"][0]["id"] for g in groups] == ["block:0", "block:1"]
    journal.append_group(_group(1))  # a second round of block:1
    resumed = Journal.resume(path, FP, IDENTITY)
    assert resumed.job_rounds() == {"block:0": [[0, 0]], "block:1": [[1, 1], [1, 1]]}
    assert resumed.rounds_kept() == 3
    assert resumed.device_seconds() == pytest.approx(1.5)


def test_create_refuses_to_overwrite_an_unfinished_build(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal.create(path, IDENTITY)
    with pytest.raises(UserError, match="--resume"):
        Journal.create(path, IDENTITY)


def test_torn_last_line_is_ignored_and_cut_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.create(path, {**IDENTITY, "fingerprint": FP})
    journal.append_group(_group(0))
    with open(path, "a", encoding="utf-8") as handle:  # a kill in the middle of a write
        handle.write(json.dumps({"type": "group", **_group(1)})[:25])
    resumed = Journal.resume(path, FP, IDENTITY)
    assert list(resumed.job_rounds()) == ["block:0"]
    resumed.append_group(_group(2))
    lines = path.read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    assert list(Journal.resume(path, FP, IDENTITY).job_rounds()) == ["block:0", "block:2"]


def test_damage_before_the_end_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    journal = Journal.create(path, {**IDENTITY, "fingerprint": FP})
    journal.append_group(_group(0))
    text = path.read_text().splitlines()
    path.write_text(text[0] + "\n{broken\n" + json.dumps({"type": "group", **_group(1)}) + "\n")
    with pytest.raises(UserError, match="damaged at line 2"):
        read_journal(path)


def test_resume_refuses_another_device_or_other_settings(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    Journal.create(path, {**IDENTITY, "fingerprint": FP})
    drift = {**FP, "hostname": "b", "freq_khz": {"cur": 2}}  # not identity fields: fine
    Journal.resume(path, drift, IDENTITY)
    other = {**FP, "cpu_model": "ARM Cortex-A72", "machine": "aarch64"}
    with pytest.raises(UserError, match="not the one the build started on") as info:
        Journal.resume(path, other, IDENTITY)
    assert "cpu_model: 'AMD EPYC' -> 'ARM Cortex-A72'" in str(info.value)
    with pytest.raises(UserError, match="settings differs"):
        Journal.resume(path, FP, {**IDENTITY, "settings": {"seed": 1}})
    with pytest.raises(UserError, match="nothing to resume"):
        Journal.resume(tmp_path / "none.jsonl", FP, IDENTITY)


def test_identity_mismatch_lists_changed_fields() -> None:
    assert identity_mismatch(FP, FP) == []
    assert identity_mismatch(FP, {**FP, "cores_logical": 4}) == ["cores_logical: 2 -> 4"]
