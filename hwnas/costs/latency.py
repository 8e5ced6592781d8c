"""Device name (or LUT / predictor file) -> the latency predictor a search prices with.

The search never talks to the device: ``--device D`` resolves to D's LUT, the one the user built
(``hwnas build-lut``, under ``hwnas.paths.user_luts_dir()``) if there is one, else the shipped
reference LUT (``luts/``). A LUT that does not cover the space is refused with a message that
names the missing blocks and their positions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwnas.errors import UserError

MAX_LISTED = 6


@dataclass(frozen=True)
class LUTSource:
    """A LUT given as is to a space that prices latency from its entries (``ib-channel``)."""

    lut: Any
    path: str

    @property
    def name(self) -> str:
        return f"lut:{self.lut.device_name}"

    @property
    def resolution(self) -> int:
        return self.lut.resolution or 32

    @property
    def num_classes(self) -> int:
        return self.lut.num_classes or 100


def load_latency_source(ref: str, space: Any) -> Any:
    """What ``space.cost_table("latency_ms", source)`` needs, from a device name or a file.

    A layer-wise space gets a LUT predictor of its :attr:`lut_space` (entries summed, calibration
    applied). A space listing ``latency_luts`` (``ib-channel``: its own LUT, else the FBNet one)
    gets the first LUT found as a :class:`LUTSource`.
    """
    names = space.latency_luts or (space.lut_space,)
    if names == (space.lut_space,):
        return load_latency_predictor(ref, space.lut_space)
    from hwnas.lut.schema import load_lut

    error = None
    for name in names:
        try:
            path = lut_path_for(ref, name)
        except UserError as exc:
            error = error or exc
            continue
        return LUTSource(load_lut(path), str(path))
    raise error  # type: ignore[misc]


def lut_path_for(ref: str, lut_space: str) -> Path:
    """The file behind ``ref``: a path as given, else the device's LUT for ``lut_space``
    (the user's build first, then the shipped reference; :mod:`hwnas.lut.resolve`)."""
    from hwnas.lut.resolve import lut_argument

    return lut_argument(ref, lut_space)


def load_latency_predictor(ref: str, lut_space: str) -> Any:
    """A predictor for space ``lut_space`` from a device name, LUT file or predictor file.

    Raises:
        UserError: unknown device, unreadable file, or a LUT missing blocks of the space (the
            message lists them with their positions).
    """
    from hwnas.lut.loading import load_predictor, lut_predictor
    from hwnas.lut.schema import KIND, validate

    path = lut_path_for(ref, lut_space)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read LUT {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        return load_predictor(str(path), lut_space)
    lut = validate(document, str(path))
    if "block-model" not in lut.models:
        _check_coverage(lut, lut_space, path)
    return lut_predictor(lut, lut_space)


def _check_coverage(lut: Any, lut_space: str, path: Path) -> None:
    """Refuse a LUT that cannot price every block of the space, naming blocks and positions.

    A block is priced as the LUT predictor prices it (``hwnas.lut.calibration.Pricer``): its
    entry, else its linear width family; identities cost nothing.
    """
    from hwnas.lut.calibration import Pricer
    from hwnas.lut.spaces import get_space

    space = get_space(lut_space, lut.resolution, lut.num_classes)
    pricer = Pricer.of(lut)

    def priceable(spec: Any) -> bool:
        try:
            pricer.term(spec)
        except UserError:
            return False
        return True

    where: dict[str, list[str]] = {}
    for s in range(space.num_slots):
        for o in range(space.choices[s]):
            for spec in space.option_specs(s, o):
                if not priceable(spec):
                    where.setdefault(spec.key(), []).append(f"layer {s} {space.option_names[s][o]}")
    for spec in space.fixed_specs:
        if not priceable(spec):
            where.setdefault(spec.key(), []).append("fixed part")
    if where:
        listed = "; ".join(
            f"{', '.join(pos)} ({key})" for key, pos in list(where.items())[:MAX_LISTED]
        )
        more = f"; and {len(where) - MAX_LISTED} more" if len(where) > MAX_LISTED else ""
        raise UserError(
            f"LUT {path} does not cover space {lut_space!r}: {len(where)} block(s) missing: "
            f"{listed}{more}; measure them with hwnas build-lut --resume"
        )
