"""Block models trained on LUT entries price held-out blocks and survive a JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwnas import paths
from hwnas.blocks.specs import IBSpec, SkipSpec
from hwnas.errors import UserError
from hwnas.lut.block_model import BlockLatencyModel, fit_block_model
from hwnas.lut.linear import family_key, fits_from_lut, linear_price
from hwnas.lut.loading import lut_predictor
from hwnas.lut.schema import load_lut


@pytest.mark.parametrize("method", ["boosted", "ridge"])
def test_held_out_blocks_and_round_trip(method):
    lut = load_lut(paths.shipped_luts_dir() / "pixel3_fbnet.json")
    timed = [e for e in lut.entries if e.median_ms > 0]
    held_out = timed[::5]
    keep = [e for e in lut.entries if e not in held_out]
    model = fit_block_model(lut.replace(entries=keep), method, random_state=0)
    assert model.n_train == len([e for e in keep if e.median_ms > 0])
    predicted = model.predict_ms([e.spec for e in held_out])
    truth = np.array([e.median_ms for e in held_out])
    rmspe = float(np.sqrt(np.mean((predicted / truth - 1) ** 2)))
    assert rmspe < 0.35  # blocks never seen, across shapes: a prior, not a measurement
    clone = BlockLatencyModel.from_json(json.loads(json.dumps(model.to_json())))
    np.testing.assert_allclose(clone.predict_ms([e.spec for e in held_out]), predicted, atol=1e-9)
    assert model.predict_ms([SkipSpec(h=8, w=8, cin=16, cout=16)])[0] == 0.0  # identity


def test_stored_block_model_is_used_by_the_lut_predictor(fbnet):
    lut = load_lut(paths.shipped_luts_dir() / "pi4_fbnet.json")
    spec = fbnet.option_specs(9, 3)[0]
    model = fit_block_model(lut, "ridge")
    # Without the spec's whole linear family (widths e1/e3/e6 of that slot and kernel), only the
    # block model can price it; with the family, its linear fit comes first.
    family = family_key(spec)
    lacking = lut.replace(
        entries=[
            e for e in lut.entries if not isinstance(e.spec, IBSpec) or family_key(e.spec) != family
        ],
        models={"block-model": model.to_json()},
    )
    predictor = lut_predictor(lacking, "fbnet")
    assert predictor.option_table_ms()[9][3] == pytest.approx(model.predict_ms([spec])[0])
    one_missing = lut.replace(entries=[e for e in lut.entries if e.spec != spec])
    linear = linear_price(fits_from_lut(one_missing), spec)
    assert lut_predictor(one_missing, "fbnet").option_table_ms()[9][3] == pytest.approx(linear)


def test_block_model_errors():
    lut = load_lut(paths.shipped_luts_dir() / "pi4_fbnet.json")
    with pytest.raises(UserError, match="unknown block-model method 'forest'"):
        fit_block_model(lut, "forest")
    with pytest.raises(UserError, match="need at least 5 timed int8 entries"):
        fit_block_model(lut, precision="int8")
    document = fit_block_model(lut, "ridge").to_json()
    with pytest.raises(UserError, match="feature set 'spec-v0'"):
        BlockLatencyModel.from_json({**document, "feature_set": "spec-v0"})
