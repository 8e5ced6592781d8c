"""build-lut's measurement loop with a deterministic fake device: groups, journal, resume, budget.

The same behaviour against real agents (SIGKILL of the host, a TCP agent killed mid-build) is in
``tests/cli/test_lut_resume.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.blocks.specs import parse_key
from hwnas.errors import DeviceError, UserError
from hwnas.lut import build as build_module
from hwnas.lut.build import BuildConfig, build_lut
from hwnas.lut.compose import is_identity
from hwnas.lut.jobs import null_spec, plan_groups
from hwnas.lut.journal import journal_path, read_journal
from hwnas.lut.plan import get_plan
from hwnas.lut.resolve import resolve_lut
from hwnas.lut.schema import load_lut
from hwnas.lut.timing import TimingSettings
from hwnas.paths import user_luts_dir
from hwnas.runs.lut import build_lut_on_device
from tests.lut.fakes import FINGERPRINT, FakeClient

PLAN = get_plan("fbnet", quick=True)
OVERHEAD_MS = 0.02


def _block_ms(key: str) -> float:
    return 0.01 + parse_key(key).flops() / 2e8


def fake_latency(model: bytes, _: int) -> float:
    """Blocks: overhead + cost; networks: overhead + 0.9 x the sum of their blocks' costs."""
    key = model.decode()
    if key.startswith("conv-") and "-g:" in key and parse_key(key).groups == parse_key(key).cin > 1:
        return OVERHEAD_MS  # a null model
    try:
        return OVERHEAD_MS + _block_ms(key)
    except ValueError:
        specs = PLAN.network(PLAN.parse_arch(key))
        return OVERHEAD_MS + 0.9 * sum(_block_ms(s.key()) for s in specs if not is_identity(s))


@pytest.fixture(autouse=True)
def key_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """Models are their job keys (no export), so the fake device can price them."""
    monkeypatch.setattr(build_module, "job_model", lambda plan, job, *_: job.key.encode())


def _config(tmp_path: Path, **changes) -> BuildConfig:
    timing = TimingSettings(repeats=3, rounds=2)
    base = dict(
        device="fake",
        quick=True,
        n_archs=16,
        out=tmp_path / "lut.json",
        block_timing=timing,
        arch_timing=timing,
        progress=False,
    )
    return BuildConfig(**{**base, **changes})


def test_groups_pair_blocks_with_a_null_of_their_input_shape(tmp_path: Path) -> None:
    groups = plan_groups(PLAN, 16, 0, group_size=4)
    jobs = [j for g in groups for j in g]
    assert len({j.id for j in jobs}) == len(jobs)
    assert {j.key for j in jobs if j.kind == "block"} == {b.key() for b in PLAN.blocks}
    assert sum(j.kind == "arch" for j in jobs) == 16
    for group in groups:
        assert len(group) <= 4
        blocks = [j for j in group if j.kind == "block"]
        for job in blocks:
            spec = parse_key(job.key)
            null = null_spec(spec)
            if null is None:
                assert job.ref == ""
            else:
                assert group[0].kind == "null" and job.ref == group[0].id
                assert group[0].key == null.key() and null.in_shape == spec.in_shape
    assert plan_groups(PLAN, 16, 0, group_size=4) == groups  # deterministic


def test_build_subtracts_overhead_and_calibrates(tmp_path: Path) -> None:
    client = FakeClient(fake_latency)
    result = build_lut(_config(tmp_path), client=client)
    assert result.complete and result.measured_jobs == 2 * result.total_jobs  # 2 rounds each
    assert not journal_path(result.path).exists()
    lut = load_lut(result.path)
    assert lut.device["fingerprint"] == FINGERPRINT and lut.space == "fbnet"
    for entry in lut.entries:
        if entry.extra["overhead_model"]:
            assert entry.median_ms == pytest.approx(_block_ms(entry.key), abs=2e-5)
            assert entry.extra["overhead_ms"] == pytest.approx(OVERHEAD_MS)
        else:  # the classifier has a 2-D input: no null model
            assert entry.median_ms == pytest.approx(OVERHEAD_MS + _block_ms(entry.key), abs=2e-5)
    calibration = lut.models["calibration"]
    assert calibration["n"] == 16 and calibration["in_sample"]["within_5pct"] == 1.0
    assert calibration["statistic"] == "min"
    assert len(client.calls) == 2 * result.total_jobs  # 2 rounds, all stable


def test_resume_after_a_dropped_connection_measures_only_what_is_missing(tmp_path: Path) -> None:
    config = _config(tmp_path)
    with pytest.raises(DeviceError, match="--resume") as info:
        build_lut(config, client=FakeClient(fake_latency, fail_after=90))
    assert "kept in" in str(info.value)
    header, groups = read_journal(journal_path(config.out))
    kept: dict[str, int] = {}
    for group in groups:
        for job in group["jobs"]:
            kept[job["key"]] = kept.get(job["key"], 0) + 1
    assert header["fingerprint"] == FINGERPRINT
    assert 2 in kept.values() and 1 in kept.values()  # it died in the second pass
    with pytest.raises(UserError, match="unfinished build exists"):
        build_lut(config, client=FakeClient(fake_latency))  # no --resume: refuse
    client = FakeClient(fake_latency)
    result = build_lut(BuildConfig(**{**config.__dict__, "resume": True}), client=client)
    assert result.complete and result.kept_jobs == sum(kept.values())
    assert result.measured_jobs == 2 * result.total_jobs - sum(kept.values())
    calls: dict[str, int] = {}
    for model in client.calls:
        calls[model.decode()] = calls.get(model.decode(), 0) + 1
    for key in calls.keys() | kept.keys():  # every model ends with exactly 2 rounds
        assert calls.get(key, 0) + kept.get(key, 0) == 2, key


def test_unstable_models_get_extra_rounds_in_later_passes(tmp_path: Path) -> None:
    noisy = PLAN.blocks[3].key()

    def latency(model: bytes, i: int) -> float:
        base = fake_latency(model, i)
        return base * (1.0, 1.3, 1.2, 1.01)[min(i, 3)] if model.decode() == noisy else base

    client = FakeClient(latency)
    result = build_lut(_config(tmp_path, n_archs=0), client=client)
    assert [m.decode() for m in client.calls].count(noisy) == 4  # 2 + 2 extra until stable
    assert result.measured_jobs == 2 * result.total_jobs + 2
    entry = load_lut(result.path).get(noisy)
    assert entry.extra["rounds"] == 4 and entry.extra["rounds_kept"] == 2


def test_budget_stops_early_and_resume_finishes(tmp_path: Path) -> None:
    config = _config(tmp_path, budget_minutes=1e-9)
    first = build_lut(config, client=FakeClient(fake_latency))
    assert not first.complete and first.measured_jobs < first.total_jobs
    assert first.journal is not None and first.journal.exists()
    partial = json.loads(first.path.read_text())
    assert partial["provenance"]["complete"] is False
    second = build_lut(
        BuildConfig(**{**config.__dict__, "resume": True, "budget_minutes": 60}),
        client=FakeClient(fake_latency),
    )
    assert second.complete and second.kept_jobs == first.measured_jobs
    assert len(load_lut(second.path).entries) == len(PLAN.blocks)


def test_resume_on_another_device_is_refused(tmp_path: Path) -> None:
    config = _config(tmp_path, budget_minutes=1e-9)
    build_lut(config, client=FakeClient(fake_latency))
    other = FakeClient(fake_latency, fingerprint={**FINGERPRINT, "cpu_model": "ARM Cortex-A72"})
    with pytest.raises(UserError, match="not the one the build started on"):
        build_lut(BuildConfig(**{**config.__dict__, "resume": True}), client=other)
    with pytest.raises(UserError, match="differs"):
        build_lut(
            BuildConfig(**{**config.__dict__, "resume": True, "seed": 7}),
            client=FakeClient(fake_latency),
        )


def test_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="reference LUT"):
        build_lut_on_device(BuildConfig(device="pi4", out=tmp_path / "x.json"))
    with pytest.raises(UserError, match="statistic"):
        build_lut(_config(tmp_path, statistic="mean"), client=FakeClient(fake_latency))
    with pytest.raises(UserError, match="nothing to resume"):
        build_lut(_config(tmp_path, resume=True), client=FakeClient(fake_latency))


def test_lut_name_files_the_lut_under_another_device_name(tmp_path: Path) -> None:
    config = BuildConfig(**{**_config(tmp_path, n_archs=0).__dict__, "out": None, "quick": False})
    config = BuildConfig(**{**config.__dict__, "lut_name": "pi4", "budget_minutes": 1e-9})
    result = build_lut(config, client=FakeClient(fake_latency))
    assert result.path == user_luts_dir() / "pi4_fbnet.json"
    lut = json.loads(result.path.read_text())
    assert lut["device"]["name"] == "pi4" and lut["device"]["measured_on"] == "fake"
    assert resolve_lut("pi4", "fbnet") == result.path  # the user's own LUT now wins
