"""LUT file format: round trips, atomic writes, lookups, coverage and clear errors for broken files."""

from __future__ import annotations

import json
import os
import stat

import pytest

from hwnas.blocks.specs import ConvSpec, FCSpec, GAPSpec, IBSpec, SkipSpec
from hwnas.errors import UserError
from hwnas.lut.schema import (
    LUT,
    SCHEMA_VERSION,
    FixedPart,
    LUTEntry,
    dumps_lut,
    load_lut,
    save_lut,
    validate,
)

IB = IBSpec.fbnet(h=32, cin=16, cout=24, kernel=3, stride=1, expansion=3)
SKIP = SkipSpec(h=32, w=32, cin=16, cout=24, stride=1)
STEM = ConvSpec(h=32, w=32, cin=3, cout=16, kernel=3)


def make_lut(**changes) -> LUT:
    entries = (
        LUTEntry(IB, "fp32", 1.25, 1.2, 1.4, 50, {"samples_ms": [1.2, 1.25, 1.4]}),
        LUTEntry(IB, "int8", 0.75, 0.7, 0.9, 50),
        LUTEntry(SKIP, "fp32", 0.125, 0.1, 0.2, 50, {"position": 1}),
    )
    fields = dict(
        device={"name": "toy", "fingerprint": {"cpu_model": "x"}},
        runtime={"name": "onnxruntime", "version": "1.32.0"},
        settings={"precision": "fp32", "threads": 1, "core": 0, "warmup": 10, "repeats": 50},
        entries=entries,
        space="fbnet",
        resolution=32,
        num_classes=100,
        fixed=FixedPart(0.5, (STEM.key(),), "stem folded in"),
        provenance={"tool": "test"},
        licence="MIT",
        models={"calibration": {"kind": "hwnas-calibration", "scale": 1.0, "offset_ms": 0.0}},
    )
    fields.update(changes)
    return LUT(**fields)


def test_save_load_round_trip_is_exact(tmp_path):
    lut = make_lut()
    path = save_lut(lut, tmp_path / "sub" / "toy.json")
    loaded = load_lut(path)
    assert loaded == lut
    assert loaded.entries[0].extra == {"samples_ms": [1.2, 1.25, 1.4]}
    assert dumps_lut(loaded) == path.read_text()
    document = json.loads(path.read_text())
    assert document["schema_version"] == SCHEMA_VERSION and document["kind"] == "hwnas-lut"
    record = document["entries"][0]
    assert record["key"] == IB.key() and record["mid"] == 48 and record["op"] == "ib"


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "toy.json"
    save_lut(make_lut(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["toy.json"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    bad = make_lut(entries=(LUTEntry(IB, "fp32", float("nan"), 1.0, 2.0, 3),))
    with pytest.raises(ValueError):  # strict JSON refuses NaN before anything is written
        save_lut(bad, path)
    assert load_lut(path) == make_lut()  # the old file is intact
    assert [p.name for p in tmp_path.iterdir()] == ["toy.json"]


def test_lookups_by_key_spec_and_precision():
    lut = make_lut()
    assert lut.get(IB).median_ms == 1.25
    assert lut.get(IB.key(), "int8").median_ms == 0.75
    assert lut.latency_ms(SKIP) == 0.125
    assert IB in lut and IB.key() in lut
    assert lut.get(SKIP, "int8") is None
    with pytest.raises(UserError, match="no entry for skip-in:32x32x16-out:24-s:1 at int8"):
        lut.latency_ms(SKIP, "int8")


def test_missing_lists_uncovered_specs_once_in_order():
    lut = make_lut()
    head = ConvSpec(h=4, w=4, cin=352, cout=1504, kernel=1)
    gap, fc = GAPSpec(h=4, w=4, cin=1504), FCSpec(h=1, w=1, cin=1504, cout=100)
    specs = [IB, head, STEM, gap, head, SKIP, fc]
    assert lut.missing(specs) == [head, gap, fc]  # STEM is covered by the fixed part
    assert lut.missing([IB, SKIP], precision="int8") == [SKIP]


def document(**changes) -> dict:
    doc = json.loads(dumps_lut(make_lut()))
    doc.update(changes)
    return doc


def entry_doc(**changes) -> dict:
    doc = document()
    doc["entries"][0].update(changes)
    return doc


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1, 2], "not a JSON object"),
        (document(kind="hwnas-predictor"), "kind is 'hwnas-predictor'"),
        (document(schema_version=SCHEMA_VERSION + 1), "newer than this hwnas supports"),
        (document(schema_version="1"), "unknown schema_version '1'"),
        (document(schema_version=0), "unknown schema_version 0"),
        (document(device={"fingerprint": {}}), "device.name is missing"),
        (document(settings={"threads": 1}), "settings.precision is missing"),
        (document(entries=None), "missing field 'entries'"),
        (document(resolution="32"), "field 'resolution' must be of type int"),
        (entry_doc(median_ms=-0.5, p10_ms=-1.0), "median_ms must be finite and >= 0, got -0.5"),
        (entry_doc(median_ms=float("nan")), "median_ms must be finite and >= 0, got nan"),
        (entry_doc(p90_ms="fast"), "p90_ms is not a number"),
        (entry_doc(p10_ms=1.3), "statistics out of order"),
        (entry_doc(n=0), "n must be a positive integer"),
        (entry_doc(key="ib-in:32x32-out:24"), "unparseable key"),
        (entry_doc(key="blob-in:1x1x1"), "unknown block op 'blob'"),
        (entry_doc(mid=96), "key disagrees with the explicit fields"),
        (entry_doc(kernel=0), "bad spec fields"),
    ],
)
def test_broken_documents_raise_one_clear_user_error(doc, message):
    with pytest.raises(UserError, match=message) as info:
        validate(doc, source="toy.json")
    assert str(info.value).startswith("toy.json: ")
    assert "\n" not in str(info.value)


def test_missing_entry_fields_are_named():
    doc = document()
    del doc["entries"][2]["p90_ms"]
    del doc["entries"][2]["cout"]
    with pytest.raises(
        UserError, match=r"entry 2 \(skip-in:32x32x16-out:24-s:1\): missing field\(s\) cout, p90_ms"
    ):
        validate(doc)


def test_duplicate_entries_are_rejected():
    doc = document()
    doc["entries"].append(dict(doc["entries"][0]))
    with pytest.raises(UserError, match="duplicate LUT entry 3: ib-in:32x32x16-out:24"):
        validate(doc)
    doc["entries"][-1]["precision"] = "fp16"  # same key at another precision is fine
    assert len(validate(doc).entries) == 4


def test_broken_files_on_disk(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_lut(tmp_path / "nope.json")
    path = tmp_path / "trunc.json"
    path.write_text(dumps_lut(make_lut())[:200])
    with pytest.raises(UserError, match=r"trunc.json is not JSON"):
        load_lut(path)
    path.write_text(json.dumps(entry_doc(median_ms=float("nan"))))  # NaN literal in the file
    with pytest.raises(UserError, match="median_ms must be finite"):
        load_lut(path)


def test_bad_fixed_part():
    doc = document(fixed={"latency_ms": -1, "covers": []})
    with pytest.raises(UserError, match=r"fixed\.latency_ms must be finite and >= 0"):
        validate(doc)
    doc = document(fixed={"latency_ms": 1.0, "covers": ["conv-in:nope"]})
    with pytest.raises(UserError, match=r"fixed\.covers: unparseable key"):
        validate(doc)


def test_replace_rebuilds_the_index():
    lut = make_lut()
    smaller = lut.replace(entries=[e for e in lut.entries if e.spec != SKIP])
    assert smaller.get(SKIP) is None and lut.get(SKIP) is not None


def test_import_is_lean():
    """``hwnas.lut`` and its schema load without numpy, scikit-learn or torch."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, hwnas.lut, hwnas.lut.schema, hwnas.cli.latency; "
        "heavy = [m for m in ('torch', 'sklearn', 'numpy', 'scipy') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": ""},
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
