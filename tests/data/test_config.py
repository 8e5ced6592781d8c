"""hwnas/data/config.py: DataConfig validates itself and serialises to JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwnas.data.config import DataConfig
from hwnas.errors import UserError


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"resolution": 2}, "resolution must be 4..1024"),
        ({"val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"test_fraction": 0.0}, r"test_fraction must be in \(0, 1\)"),
        ({"train_limit": 0}, "train_limit must be a positive number"),
        ({"test_limit": -3}, "test_limit must be a positive number"),
    ],
)
def test_bad_values_are_user_errors(kwargs, message):
    with pytest.raises(UserError, match=message):
        DataConfig(**kwargs)


def test_defaults_root_and_json():
    config = DataConfig(root="~/data/fmnist")
    assert config.name == "fashion-mnist" and config.resolution == 32 and config.channels == 3
    assert isinstance(config.root, Path) and "~" not in str(config.root)
    assert json.loads(json.dumps(config.to_dict()))["root"] == str(config.root)
    with pytest.raises(AttributeError):
        config.seed = 1  # frozen
