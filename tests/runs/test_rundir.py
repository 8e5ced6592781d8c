"""``hwnas.runs.rundir``: run directories written and read back."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hwnas.data import DataConfig
from hwnas.errors import UserError
from hwnas.runs.rundir import load_run, load_weights


def test_trained_run_loads_back_identically(trained_run_dir) -> None:
    run = load_run(trained_run_dir)
    assert run.space == "fbnet" and run.input_shape == (1, 3, 16, 16) and run.num_classes == 10
    assert DataConfig(**run.data).name == "digits"
    weights = load_weights(trained_run_dir)
    for key, value in run.module.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.isfinite(run.module(x)).all()


def test_broken_run_directories_are_user_errors(trained_run_dir, tmp_path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_run(tmp_path / "nope")
    copy = tmp_path / "copy"
    shutil.copytree(trained_run_dir, copy)
    (copy / "weights.npz").unlink()
    with pytest.raises(UserError, match="no weights"):
        load_run(copy)
    shutil.copy(trained_run_dir / "weights.npz", copy / "weights.npz")
    arch = json.loads((copy / "arch.json").read_text())
    arch["arch"] = "8-" * 21 + "8"  # all skips: different parameters
    (copy / "arch.json").write_text(json.dumps(arch))
    with pytest.raises(UserError, match="do not fit"):
        load_run(copy)
    np.savez(copy / "weights.npz", x=np.zeros(1))
    (copy / "arch.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="not a JSON object"):
        load_run(copy)
