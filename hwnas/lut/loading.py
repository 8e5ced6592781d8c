"""Resolving ``--predictor``: a fitted predictor file, a LUT file, or a device name.

A device name (``pi4``) resolves to ``<name>_<space>.json`` (or ``<name>.json``) in the user's LUT
folder (``hwnas.paths.user_luts_dir``, where ``hwnas build-lut`` writes), then in the shipped
``luts/`` folder (the HW-NAS-Bench reference LUTs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from hwnas.errors import UserError
from hwnas.lut.jsonio import read_json
from hwnas.lut.predictor import PREDICTOR_KIND, FittedPredictor, LatencyPredictor, LUTPredictor
from hwnas.lut.schema import KIND, LUT, load_lut, validate
from hwnas.lut.spaces import get_space


def load_predictor(ref: str, space: Optional[str] = None) -> LatencyPredictor:
    """A predictor from a file path (LUT or fitted predictor) or a device name (``pi4``)."""
    path = Path(ref)
    if not path.is_file():
        path = _device_lut(ref, space)
    document = read_json(path, "predictor")
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind == PREDICTOR_KIND:
        predictor = FittedPredictor.from_json(document, str(path))
        if space and space != predictor.space.name:
            raise UserError(f"{path} predicts space {predictor.space.name!r}, not {space!r}")
        return predictor
    if kind == KIND:
        lut = validate(document, str(path))
        name = space or lut.space
        if name is None:
            raise UserError(f"LUT {path} names no space; pass --space")
        return lut_predictor(lut, name)
    raise UserError(f"{path}: kind {kind!r} is neither a LUT nor a latency predictor")


def lut_predictor(lut: LUT, space: str) -> LUTPredictor:
    """A :class:`LUTPredictor` with the LUT's geometry and its stored block model, if any."""
    geometry = get_space(space, lut.resolution, lut.num_classes)
    block_model = None
    if "block-model" in lut.models:
        from hwnas.lut.block_model import BlockLatencyModel

        block_model = BlockLatencyModel.from_json(lut.models["block-model"])
    return LUTPredictor(lut, geometry, block_model)


def _device_lut(name: str, space: Optional[str]) -> Path:
    from hwnas.lut.resolve import resolve_lut

    return resolve_lut(name, space)


def load_lut_predictor(path: Union[str, Path], space: Optional[str] = None) -> LUTPredictor:
    """Shortcut: :func:`load_lut` then :func:`lut_predictor` (space defaults to the LUT's)."""
    lut = load_lut(path)
    name = space or lut.space
    if name is None:
        raise UserError(f"LUT {path} names no space")
    return lut_predictor(lut, name)
