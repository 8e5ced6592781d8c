"""Device name -> LUT file: the user's own build wins over the shipped reference."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hwnas.errors import UserError
from hwnas.lut.resolve import available_luts, lut_argument, resolve_lut
from hwnas.paths import shipped_luts_dir, user_luts_dir


def test_shipped_reference_until_the_user_builds_one() -> None:
    assert resolve_lut("pi4", "fbnet") == shipped_luts_dir() / "pi4_fbnet.json"
    own = user_luts_dir() / "pi4_fbnet.json"
    own.parent.mkdir(parents=True)
    shutil.copy(shipped_luts_dir() / "pi4_fbnet.json", own)
    assert resolve_lut("pi4", "fbnet") == own
    assert resolve_lut("pi4", None) == own


def test_missing_lut_lists_what_exists() -> None:
    (user_luts_dir()).mkdir(parents=True)
    (user_luts_dir() / "local_ib-channel.json").write_text("{}")
    with pytest.raises(UserError) as info:
        resolve_lut("local", "fbnet")
    message = str(info.value)
    assert "no LUT for device 'local' and space 'fbnet'" in message
    assert "local: ib-channel; pi4: fbnet; pixel3: fbnet" in message
    assert available_luts()["local"] == ["ib-channel"]
    assert resolve_lut("local", None) == user_luts_dir() / "local_ib-channel.json"


def test_a_reference_device_without_the_space_says_what_can_build_it() -> None:
    with pytest.raises(UserError) as info:
        resolve_lut("pi4", "dso")
    message = str(info.value)
    assert "'pi4' has only the shipped reference LUT for fbnet" in message
    assert "does not cover space 'dso'" in message
    assert "hwnas build-lut --device local --space dso" in message and "devices add" in message
    # once the user has LUTs of their own under that name, the plain message (with --space)
    user_luts_dir().mkdir(parents=True)
    (user_luts_dir() / "pi4_darts.json").write_text("{}")
    with pytest.raises(UserError, match=r"build-lut --device pi4 --space dso'\); LUTs available"):
        resolve_lut("pi4", "dso")


def test_several_spaces_need_space() -> None:
    user_luts_dir().mkdir(parents=True)
    for space in ("fbnet", "darts"):
        (user_luts_dir() / f"local_{space}.json").write_text("{}")
    with pytest.raises(UserError, match="several spaces"):
        resolve_lut("local", None)


def test_lut_argument_takes_files_or_device_names(tmp_path: Path) -> None:
    file = tmp_path / "x.json"
    file.write_text("{}")
    assert lut_argument(str(file)) == file
    assert lut_argument("pixel3") == shipped_luts_dir() / "pixel3_fbnet.json"
    with pytest.raises(UserError, match="does not exist"):
        lut_argument(str(tmp_path / "missing.json"))
