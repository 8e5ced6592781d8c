"""Resolving --predictor: fitted predictor files, LUT files, user and shipped device LUTs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas import paths
from hwnas.errors import UserError
from hwnas.lut.loading import load_lut_predictor, load_predictor, lut_predictor
from hwnas.lut.predictor import FittedPredictor
from hwnas.lut.schema import load_lut, save_lut

ARCHS = np.random.default_rng(0).integers(0, 9, size=(5, 22))


@pytest.fixture(scope="module")
def pi4():
    return load_lut(paths.shipped_luts_dir() / "pi4_fbnet.json")


def test_load_predictor_resolves_names_and_paths(pi4, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert load_predictor("pi4").name == "lut:pi4"
    assert load_predictor("pixel3", "fbnet").name == "lut:pixel3"
    user_lut = pi4.replace(device={"name": "mypi", "fingerprint": {}})
    save_lut(user_lut, paths.user_luts_dir() / "mypi_fbnet.json")
    assert load_predictor("mypi").name == "lut:mypi"
    file_lut = save_lut(pi4, tmp_path / "copy.json")
    assert load_predictor(str(file_lut)).predict_ms(ARCHS[:2]).shape == (2,)
    with pytest.raises(UserError, match="LUTs available: mypi: fbnet; pi4: fbnet; pixel3: fbnet"):
        load_predictor("pi5")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something"}))
    with pytest.raises(UserError, match="neither a LUT nor a latency predictor"):
        load_predictor(str(tmp_path / "other.json"))
    with pytest.raises(UserError, match="unknown space 'nas201'"):
        lut_predictor(pi4, "nas201")


def test_fitted_predictor_files(fbnet, tmp_path):
    table = tuple(tuple(float(v) for v in row) for row in np.arange(22 * 9).reshape(22, 9) / 100)
    path = FittedPredictor(fbnet, "additive", 1.0, table).save(tmp_path / "p.json")
    loaded = load_predictor(str(path))
    assert isinstance(loaded, FittedPredictor) and loaded.name == "fitted:additive"
    np.testing.assert_allclose(
        loaded.predict_ms(ARCHS), 1.0 + (ARCHS + 9 * np.arange(22)).sum(1) / 100
    )
    with pytest.raises(UserError, match="predicts space 'fbnet', not 'darts'"):
        load_predictor(str(path), "darts")
    path.write_text("{not json")
    with pytest.raises(UserError, match="is not JSON"):
        load_predictor(str(path))
    assert load_lut_predictor(paths.shipped_luts_dir() / "pixel3_fbnet.json").name == "lut:pixel3"
