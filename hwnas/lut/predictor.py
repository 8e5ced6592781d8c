"""End-to-end latency predictors: "how many milliseconds does this architecture take here?"

Every predictor answers :meth:`predict_ms` for a batch of architectures of one space and is, at
heart, additive: ``constant_ms + sum over slots of table_ms[slot][option]`` (FBNet's LAT(a) =
sum_l sum_k m_lk LUT_lk, Wu et al. CVPR 2019; ProxylessNAS' E[LAT], Cai et al. ICLR 2019). That
table is what differentiable cost models need (expected latency = sum of p * table), so it is
exposed as :meth:`option_table_ms`.

* :class:`LUTPredictor`: from a LUT file. Sum of block entries + the LUT's fixed part (entries of
  the fixed blocks, or ``fixed.latency_ms``) + an optional affine calibration stored in the LUT
  under ``models["calibration"]`` (fitted from end-to-end measurements by
  :func:`hwnas.lut.calibration.fit_calibration`; per-entry corrections included).
* :class:`FittedPredictor`: fitted from end-to-end measurements (``hwnas.lut.fit``), saved as
  versioned JSON (kind ``hwnas-latency-predictor``).

:func:`hwnas.lut.loading.load_predictor` resolves a file path (LUT or predictor) or a device name
(``pi4``) to a shipped or user LUT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol, Union

import numpy as np

from hwnas.errors import UserError
from hwnas.lut.calibration import FIXED_KEY, Pricer
from hwnas.lut.jsonio import atomic_write_text
from hwnas.lut.schema import LUT
from hwnas.lut.spaces import LatencySpace, get_space

PREDICTOR_KIND = "hwnas-latency-predictor"
PREDICTOR_SCHEMA_VERSION = 1


class LatencyPredictor(Protocol):
    """What search code and the CLI rely on."""

    space: LatencySpace

    @property
    def name(self) -> str: ...

    def predict_ms(self, archs: Sequence[Sequence[int]]) -> np.ndarray: ...

    def option_table_ms(self) -> tuple[tuple[float, ...], ...]: ...


def additive_predict(
    constant_ms: float, table_ms: Sequence[np.ndarray], archs: Sequence[Sequence[int]]
) -> np.ndarray:
    """``constant_ms + sum_s table_ms[s][arch[s]]`` for each arch; shape ``(len(archs),)``."""
    a = np.asarray(archs, dtype=np.int64).reshape(len(archs), -1)
    if a.shape[1] != len(table_ms):
        raise UserError(f"architectures have {a.shape[1]} slots, the predictor {len(table_ms)}")
    out = np.full(a.shape[0], float(constant_ms))
    for s, row in enumerate(table_ms):
        if a.size and (a[:, s].min() < 0 or a[:, s].max() >= len(row)):
            raise UserError(f"option index out of range at slot {s} (0..{len(row) - 1})")
        out += np.asarray(row)[a[:, s]]
    return out


@dataclass(frozen=True)
class LUTPredictor:
    """Latency as the sum of a LUT's block entries (plus fixed part and calibration).

    Args:
        lut: the LUT.
        space: the space whose architectures are priced.
        block_model: prices specs the LUT lacks (e.g. ``hwnas.lut.block_model``); without it a
            missing block is a :class:`UserError` naming it.
        calibrated: apply ``lut.models["calibration"]`` when it is for this space.
    """

    lut: LUT
    space: LatencySpace
    block_model: Any = None
    calibrated: bool = True
    _table: tuple = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        specs = [
            spec
            for s in range(self.space.num_slots)
            for o in range(self.space.choices[s])
            for spec in self.space.option_specs(s, o)
        ]
        pricer = Pricer.of(self.lut)
        covered = set(self.lut.fixed.covers) if self.lut.fixed else set()
        fixed = [sp for sp in self.space.fixed_specs if sp.key() not in covered]
        missing = [sp for sp in dict.fromkeys([*specs, *fixed]) if not _priceable(pricer, sp)]
        if missing and self.block_model is None:
            keys = ", ".join(m.key() for m in missing[:3])
            raise UserError(
                f"LUT {self.lut.device_name!r} lacks {len(missing)} block(s) of space "
                f"{self.space.name!r} (e.g. {keys}); build them (hwnas build-lut --resume)"
            )
        price = self._pricer(pricer, missing)
        table = tuple(
            np.array(
                [
                    sum(price(sp) for sp in self.space.option_specs(s, o))
                    for o in range(self.space.choices[s])
                ]
            )
            for s in range(self.space.num_slots)
        )
        constant = sum(price(sp) for sp in fixed)
        if self.lut.fixed:
            correction = (self.calibration or {}).get("entry_correction", {})
            constant += self.lut.fixed.latency_ms * (1.0 + float(correction.get(FIXED_KEY, 0.0)))
        object.__setattr__(self, "_table", (float(constant), table))

    def _pricer(self, pricer: Pricer, missing: list) -> Any:
        """Block price: the LUT entry (else its linear family, else the block model), times the
        calibration's per-entry correction when calibrated (scale and offset apply later)."""
        estimated = {}
        if missing:
            estimated = dict(zip((m.key() for m in missing), self.block_model.predict_ms(missing)))
        correction = (self.calibration or {}).get("entry_correction", {})

        def price(spec: Any) -> float:
            key = spec.key()
            if key in estimated:
                return float(estimated[key])
            term = pricer.term(spec)
            if term is None:  # identity / zero ops cost nothing
                return 0.0
            return term[1] * (1.0 + float(correction.get(term[0], 0.0)))

        return price

    @property
    def name(self) -> str:
        return f"lut:{self.lut.device_name}"

    @property
    def calibration(self) -> Optional[dict]:
        calibration = self.lut.models.get("calibration") if self.calibrated else None
        if not isinstance(calibration, dict) or calibration.get("space") != self.space.name:
            return None
        numbers = [calibration.get("scale"), calibration.get("offset_ms")]
        if not all(isinstance(v, (int, float)) and np.isfinite(v) for v in numbers):
            raise UserError(
                f"LUT {self.lut.device_name!r}: calibration needs numeric scale, offset_ms"
            )
        return calibration

    def predict_ms(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        """End-to-end latency in ms of each arch, shape ``(len(archs),)``."""
        constant, table = self._table
        raw = additive_predict(constant, table, archs)
        calibration = self.calibration
        if calibration:
            return calibration["scale"] * raw + calibration["offset_ms"]
        return raw

    def option_table_ms(self) -> tuple[tuple[float, ...], ...]:
        """Per slot, the latency of each option (calibration scale applied)."""
        scale = self.calibration["scale"] if self.calibration else 1.0
        return tuple(tuple(float(scale * v) for v in row) for row in self._table[1])

    @property
    def constant_ms(self) -> float:
        calibration = self.calibration
        if calibration:
            return calibration["scale"] * self._table[0] + calibration["offset_ms"]
        return self._table[0]


def _priceable(pricer: Pricer, spec: Any) -> bool:
    try:
        pricer.term(spec)
    except UserError:
        return False
    return True


@dataclass(frozen=True)
class FittedPredictor:
    """An additive predictor fitted from end-to-end measurements (see ``hwnas.lut.fit``).

    Attributes:
        space: the space.
        method: how it was fitted (``additive``, ``hier``).
        constant_ms: per-network constant.
        table_ms: per slot, the latency of each option.
        info: training facts (rows, file digest, penalties, LOO error, feature coefficients).
    """

    space: LatencySpace
    method: str
    constant_ms: float
    table_ms: tuple[tuple[float, ...], ...]
    info: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"fitted:{self.method}"

    def predict_ms(self, archs: Sequence[Sequence[int]]) -> np.ndarray:
        """End-to-end latency in ms of each arch, shape ``(len(archs),)``."""
        return additive_predict(self.constant_ms, [np.asarray(r) for r in self.table_ms], archs)

    def option_table_ms(self) -> tuple[tuple[float, ...], ...]:
        return self.table_ms

    def to_json(self) -> dict:
        return {
            "schema_version": PREDICTOR_SCHEMA_VERSION,
            "kind": PREDICTOR_KIND,
            **self.space.describe(),
            "method": self.method,
            "constant_ms": self.constant_ms,
            "option_names": [list(n) for n in self.space.option_names],
            "table_ms": [list(row) for row in self.table_ms],
            "info": self.info,
        }

    @classmethod
    def from_json(cls, document: Any, source: str = "predictor") -> FittedPredictor:
        if not isinstance(document, dict) or document.get("kind") != PREDICTOR_KIND:
            raise UserError(f"{source}: not a {PREDICTOR_KIND} file")
        version = document.get("schema_version")
        if not isinstance(version, int) or not 1 <= version <= PREDICTOR_SCHEMA_VERSION:
            raise UserError(f"{source}: unsupported schema_version {version!r}")
        try:
            space = get_space(
                document["space"], document.get("resolution"), document.get("num_classes")
            )
            table = tuple(tuple(float(v) for v in row) for row in document["table_ms"])
            constant = float(document["constant_ms"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(f"{source}: malformed predictor ({exc!r})") from None
        if tuple(len(r) for r in table) != space.choices:
            raise UserError(f"{source}: table shape does not match space {space.name!r}")
        if not all(np.isfinite(v) for row in table for v in row) or not np.isfinite(constant):
            raise UserError(f"{source}: non-finite latency in the table")
        return cls(
            space, str(document.get("method", "?")), constant, table, document.get("info", {})
        )

    def save(self, path: Union[str, Path]) -> Path:
        return atomic_write_text(Path(path), json.dumps(self.to_json(), indent=1, allow_nan=False))
