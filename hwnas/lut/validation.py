"""``hwnas lut validate``: time random whole networks on the device and compare with the LUT.

The networks are drawn with a seed of their own and any architecture the calibration was fitted
on is skipped, so the figures are out-of-sample. They are timed exactly as build-lut times its
calibration networks (rounds a pass over all networks apart, same statistic), and compared with
three predictions:

* ``calibrated``: the LUT with its full calibration (:func:`hwnas.lut.calibration.predict_ms`);
* ``affine``: the LUT sum with only the calibration's global ``scale`` and ``offset_ms``;
* ``plain``: the plain sum of the entries.

Drift: a few of the LUT's own calibration networks (``anchors``) are timed in the same passes as
the validation networks. Their latency now over their latency at build time is how much the
device's speed moved since the build (a changed governor, throttling, another tenant on a VM);
``calibrated_drift_corrected`` is the calibrated prediction times that ratio, measured on networks
disjoint from the validation set, so the figure stays out-of-sample. A drift of a few percent
says the LUT is stale on that device, not that its model is wrong.

Figures (:mod:`hwnas.lut.metrics`): share within +-5 % and +-10 %, RMSPE, Kendall tau, Spearman.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from hwnas.blocks.specs import BlockSpec
from hwnas.errors import UserError
from hwnas.lut.assemble import arch_latency
from hwnas.lut.calibration import Pricer, predict_ms
from hwnas.lut.metrics import accuracy
from hwnas.lut.plan import BuildPlan
from hwnas.lut.schema import LUT
from hwnas.lut.timing import TimingSettings, chunked, needs_round, robust_stats, time_models
from hwnas.progress import progress_bar

VALIDATION_SEED = 104729  # differs from build-lut's default seed 0


@dataclass(frozen=True)
class ValidationResult:
    """Predicted vs measured latencies of ``n`` networks and the agreement figures."""

    space: str
    device: str
    statistic: str
    archs: tuple[str, ...]
    measured_ms: tuple[float, ...]
    predicted_ms: dict[str, tuple[float, ...]]
    figures: dict[str, dict[str, float]]
    device_seconds: float
    wall_seconds: float
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "device": self.device,
            "statistic": self.statistic,
            "n": len(self.archs),
            "figures": self.figures,
            "device_seconds": self.device_seconds,
            "wall_seconds": self.wall_seconds,
            "rows": [
                {
                    "arch": a,
                    "measured_ms": m,
                    **{f"{k}_ms": v[i] for k, v in self.predicted_ms.items()},
                }
                for i, (a, m) in enumerate(zip(self.archs, self.measured_ms))
            ],
            **self.extra,
        }


def lut_timing(lut: LUT) -> TimingSettings:
    """The network timing settings the LUT was built with (defaults for other LUTs)."""
    stored = (
        lut.settings.get("timing", {}).get("arch_timing")
        if isinstance(lut.settings.get("timing"), dict)
        else None
    )
    if isinstance(stored, dict):
        known = TimingSettings.__dataclass_fields__
        return TimingSettings(**{k: v for k, v in stored.items() if k in known})
    return TimingSettings(repeats=15)


def validation_archs(plan: BuildPlan, lut: LUT, n: int, seed: int) -> list[str]:
    """``n`` random architectures (as text) not among the LUT's calibration networks."""
    seen = {row["arch"] for row in (lut.models.get("calibration") or {}).get("data", [])}
    texts = [plan.format_arch(a) for a in plan.sample_archs(n + len(seen), seed)]
    return [t for t in texts if t not in seen][:n]


def time_networks(
    client: Any,
    networks: Sequence[Sequence[BlockSpec]],
    timing: TimingSettings,
    group_size: int = 12,
    label: str = "validate",
    progress: bool = True,
) -> tuple[list[list[list[float]]], float]:
    """Time whole networks as build-lut does: passes over all, extra rounds where unstable.

    Returns:
        Per network its rounds of samples (ms), and the device seconds spent.
    """
    from hwnas.lut.compose import network_onnx

    rounds: list[list[list[float]]] = [[] for _ in networks]
    spent = 0.0
    every = chunked(list(range(len(networks))), group_size)
    with progress_bar(timing.rounds * len(networks), label, enabled=progress) as bar:
        for index in range(timing.rounds + timing.max_extra_rounds):
            todo = [i for i in range(len(networks)) if needs_round(rounds[i], index, timing)]
            for chunk in chunked(todo, group_size) if index >= timing.rounds else every:
                result = time_models(client, [network_onnx(networks[i]) for i in chunk], timing)
                spent += result.device_s
                for i, samples in zip(chunk, result.samples):
                    rounds[i].append(samples)
                if index < timing.rounds:
                    bar.update(len(chunk))
    return rounds, spent


def validate_lut(
    lut: LUT,
    plan: BuildPlan,
    client: Any,
    n_archs: int = 100,
    seed: int = VALIDATION_SEED,
    timing: Optional[TimingSettings] = None,
    group_size: int = 12,
    progress: bool = True,
    check_device: bool = True,
    anchors: int = 12,
) -> ValidationResult:
    """Time ``n_archs`` random networks on ``client`` and compare them with ``lut``'s predictions.

    Raises:
        UserError: the space has no networks, or (``check_device``) the connected device is not
            the one the LUT was measured on.
    """
    from hwnas.lut.journal import identity_mismatch

    if not plan.has_networks:
        raise UserError(f"space {plan.space!r} has no whole networks to validate against")
    if n_archs < 2:
        raise UserError("--archs must be at least 2")
    if check_device:
        changed = identity_mismatch(lut.device.get("fingerprint", {}), client.fingerprint())
        if changed:
            raise UserError(
                f"this device is not the one LUT {lut.device_name!r} was measured on "
                f"({'; '.join(changed)})"
            )
    started = time.monotonic()
    timing = timing or lut_timing(lut)
    calibration = lut.models.get("calibration")
    statistic = str((calibration or {}).get("statistic", lut.settings.get("statistic", "min")))
    pricer = Pricer.of(lut)
    texts = validation_archs(plan, lut, n_archs, seed)
    networks = [plan.network(plan.parse_arch(t)) for t in texts]  # type: ignore[misc]
    predicted = {
        "calibrated": [predict_ms(pricer, calibration, s) for s in networks],
        "plain": [pricer.sum_ms(s) for s in networks],
    }
    if calibration:
        scale, offset = float(calibration["scale"]), float(calibration["offset_ms"])
        predicted["affine"] = [scale * p + offset for p in predicted["plain"]]
    anchor_rows = anchor_networks(lut, anchors)
    anchor_specs = [plan.network(plan.parse_arch(r["arch"])) for r in anchor_rows]
    label = f"validate {lut.device_name}/{plan.space}"
    rounds, spent = time_networks(
        client, [*networks, *anchor_specs], timing, group_size, label, progress
    )
    measured_all = [arch_latency(robust_stats(r, timing.clean), statistic) for r in rounds]
    measured, anchors_now = measured_all[: len(networks)], measured_all[len(networks) :]
    y = np.asarray(measured)
    figures = {name: accuracy(np.asarray(p), y).to_dict() for name, p in predicted.items()}
    extra: dict[str, Any] = {}
    if anchor_rows:
        ratios = np.asarray(anchors_now) / np.asarray([r["latency_ms"] for r in anchor_rows])
        drift = float(np.median(ratios))
        extra["drift"] = {
            "anchors": len(anchor_rows),
            "now_over_build": drift,
            "p10": float(np.percentile(ratios, 10)),
            "p90": float(np.percentile(ratios, 90)),
        }
        corrected = np.asarray(predicted["calibrated"]) * drift
        figures["calibrated_drift_corrected"] = accuracy(corrected, y).to_dict()
        predicted["calibrated_drift_corrected"] = list(corrected)
    return ValidationResult(
        space=plan.space,
        device=lut.device_name,
        statistic=statistic,
        archs=tuple(texts),
        measured_ms=tuple(float(v) for v in y),
        predicted_ms={k: tuple(float(v) for v in p) for k, p in predicted.items()},
        figures=figures,
        device_seconds=spent,
        wall_seconds=time.monotonic() - started,
        extra=extra,
    )


def anchor_networks(lut: LUT, n: int) -> list[dict]:
    """Up to ``n`` calibration rows (``arch``, ``latency_ms`` at build time) of ``lut``, spread
    over its latency range; none when its calibration stored no network latencies. (They are in
    the calibration's statistic, which is also the one validation measures in.)"""
    calibration = lut.models.get("calibration") or {}
    rows = [
        r
        for r in calibration.get("data", [])
        if isinstance(r, dict) and r.get("arch") and float(r.get("latency_ms") or 0) > 0
    ]
    if n <= 0 or not rows:
        return []
    rows.sort(key=lambda r: float(r["latency_ms"]))
    picks = np.unique(np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int))
    return [rows[i] for i in picks]
