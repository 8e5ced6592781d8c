"""Which LUT file a device name means: the user's own build, else the shipped reference.

``hwnas build-lut --device D --space S`` writes ``<user LUT dir>/D_S.json``
(:func:`hwnas.paths.user_luts_dir`); the project ships ``luts/pi4_fbnet.json`` and
``luts/pixel3_fbnet.json`` (HW-NAS-Bench, :mod:`hwnas.lut.reference`). So ``--device pi4`` means
the user's Pi 4 LUT once they built one, and the published reference until then.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from hwnas import paths
from hwnas.errors import UserError


def lut_folders() -> list[Path]:
    """Where LUTs are looked up, in order: the user's, then the shipped ones."""
    return [paths.user_luts_dir(), paths.shipped_luts_dir()]


def available_luts() -> dict[str, list[str]]:
    """``{device: [space, ...]}`` over every LUT file found, user's and shipped."""
    found: dict[str, set[str]] = {}
    for folder in lut_folders():
        for path in folder.glob("*_*.json") if folder.is_dir() else []:
            device, _, space = path.stem.partition("_")
            found.setdefault(device, set()).add(space)
    return {device: sorted(spaces) for device, spaces in sorted(found.items())}


def resolve_lut(device: str, space: Optional[str] = "fbnet") -> Path:
    """The LUT file for ``device`` and ``space`` (``None``: the device's only LUT).

    Raises:
        UserError: no such LUT; the message lists the devices and spaces that have one.
    """
    for folder in lut_folders():
        if space:
            path = folder / f"{device}_{space}.json"
            if path.is_file():
                return path
            continue
        matches = sorted(folder.glob(f"{device}_*.json")) if folder.is_dir() else []
        if len(matches) > 1:
            spaces = ", ".join(m.stem.partition("_")[2] for m in matches)
            raise UserError(
                f"device {device!r} has LUTs for several spaces ({spaces}); pass --space"
            )
        if matches:
            return matches[0]
    reference = _shipped_spaces(device)
    if space and reference and not _user_spaces(device):
        raise UserError(
            f"device {device!r} has only the shipped reference LUT for {', '.join(reference)} "
            f"(published numbers, nothing to measure), which does not cover space {space!r}; "
            f"build a {space} LUT on a device hwnas can measure (hwnas build-lut --device local "
            f"--space {space}, or a device added with 'hwnas devices add') and pass that --device"
        )
    listing = "; ".join(f"{d}: {', '.join(s)}" for d, s in available_luts().items()) or "none"
    wanted = f"space {space!r}" if space else "any space"
    flag = f" --space {space}" if space else ""
    raise UserError(
        f"no LUT for device {device!r} and {wanted} (build one with 'hwnas build-lut --device "
        f"{device}{flag}'); LUTs available: {listing}"
    )


def _shipped_spaces(device: str) -> list[str]:
    folder = paths.shipped_luts_dir()
    found = folder.glob(f"{device}_*.json") if folder.is_dir() else []
    return sorted(p.stem.partition("_")[2] for p in found)


def _user_spaces(device: str) -> list[str]:
    folder = paths.user_luts_dir()
    found = folder.glob(f"{device}_*.json") if folder.is_dir() else []
    return sorted(p.stem.partition("_")[2] for p in found)


def lut_argument(ref: str, space: Optional[str] = None) -> Path:
    """A CLI LUT argument: an existing file path, else a device name resolved as above."""
    path = Path(ref)
    if path.is_file():
        return path
    if path.suffix == ".json" or "/" in ref:
        raise UserError(f"LUT file {ref} does not exist")
    return resolve_lut(ref, space)
