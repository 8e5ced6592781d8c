"""The device registry in the XDG config dir."""

from __future__ import annotations

import json

import pytest

from hwnas.devices.registry import (
    DeviceConfig,
    add_device,
    get_device,
    load_devices,
    registry_path,
    remove_device,
)
from hwnas.errors import UserError


def test_builtins_always_exist() -> None:
    devices = load_devices()
    assert {"local", "pi4", "pixel3"} <= set(devices)
    assert devices["local"].measurable and not devices["pi4"].measurable


def test_add_list_remove_round_trip() -> None:
    dev = DeviceConfig("pi", "tcp", host="10.0.0.5", port=7788, token_file="/tmp/t")
    add_device(dev)
    assert get_device("pi") == dev
    data = json.loads(registry_path().read_text())
    assert data["kind"] == "hwnas-devices" and data["schema_version"] == 1
    with pytest.raises(UserError, match="exists"):
        add_device(dev)
    add_device(
        DeviceConfig("pi", "tcp", host="10.0.0.6", port=1, token_file="/tmp/t"), replace=True
    )
    assert get_device("pi").host == "10.0.0.6"
    remove_device("pi")
    with pytest.raises(UserError, match="unknown device 'pi'; known: local, pi4, pixel3"):
        get_device("pi")


@pytest.mark.parametrize("name", ["local", "pi4"])
def test_builtins_cannot_be_replaced_or_removed(name: str) -> None:
    with pytest.raises(UserError, match="built-in"):
        add_device(DeviceConfig(name, "tcp", host="h", port=1))
    with pytest.raises(UserError, match="built-in"):
        remove_device(name)


@pytest.mark.parametrize("name", ["", "Pi", "a b", "../x", "-x"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(UserError, match="bad device name"):
        add_device(DeviceConfig(name, "tcp", host="h", port=1))


def test_corrupt_registry_gives_a_clear_error() -> None:
    registry_path().parent.mkdir(parents=True, exist_ok=True)
    registry_path().write_text("{nope")
    with pytest.raises(UserError, match="unreadable"):
        load_devices()
