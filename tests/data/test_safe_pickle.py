"""hwnas/data/safe_pickle.py: CIFAR-style pickles load; anything that could run code is refused."""

from __future__ import annotations

import os
import pickle
import subprocess

import numpy as np
import pytest

from hwnas.data.safe_pickle import _reconstruct, safe_load
from hwnas.errors import UserError


@pytest.mark.parametrize("style", ["py2", "py3"])
def test_cifar_like_batch_round_trips(tmp_path, rng, writers, style):
    batch = writers.cifar_batch(rng, 7, 10, b"labels")
    writers.write_pickle(tmp_path / "data_batch_1", batch, style)
    loaded = safe_load(tmp_path / "data_batch_1")
    assert set(loaded) == set(batch)
    assert loaded[b"labels"] == batch[b"labels"]
    assert loaded[b"filenames"] == batch[b"filenames"]
    assert loaded[b"data"].dtype == np.uint8
    np.testing.assert_array_equal(loaded[b"data"], batch[b"data"])


def test_py2_style_file_uses_the_legacy_numpy_module_name(tmp_path, rng, writers):
    writers.write_pickle(tmp_path / "b", {b"data": np.zeros((2, 3), np.uint8)}, "py2")
    raw = (tmp_path / "b").read_bytes()
    assert b"numpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    assert safe_load(tmp_path / "b")[b"data"].shape == (2, 3)


class _Evil:
    def __init__(self, func, *args):
        self.call = (func, args)

    def __reduce__(self):
        return self.call


@pytest.mark.parametrize("style", ["py3", "py2"])
def test_os_system_payload_is_refused_and_not_run(tmp_path, writers, style):
    marker = tmp_path / "pwned"
    payload = {b"data": _Evil(os.system, f"touch {marker}"), b"labels": [0]}
    writers.write_pickle(tmp_path / "data_batch_1", payload, style)
    with pytest.raises(UserError, match=r"refused to unpickle global (posix|os|nt)\.system"):
        safe_load(tmp_path / "data_batch_1")
    assert not marker.exists()


@pytest.mark.parametrize(
    "func, args",
    [(eval, ("1+1",)), (subprocess.Popen, (["true"],)), (__import__, ("os",))],
)
def test_other_callables_are_refused(tmp_path, func, args):
    (tmp_path / "x").write_bytes(pickle.dumps(_Evil(func, *args), protocol=2))
    with pytest.raises(UserError, match="refused to unpickle global"):
        safe_load(tmp_path / "x")


def test_object_dtype_is_refused(tmp_path):
    array = np.array([1, "a"], dtype=object)
    (tmp_path / "x").write_bytes(pickle.dumps({b"data": array}, protocol=2))
    with pytest.raises(UserError, match="refused to unpickle dtype 'O"):
        safe_load(tmp_path / "x")


class _FlaggedDtype:
    """Pickles as ``numpy.dtype('u1')`` whose state sets the 'holds Python objects' flags."""

    def __reduce__(self):
        return (np.dtype, ("u1", False, True), (3, "|", None, None, None, -1, -1, 0x3F))


def test_dtype_state_with_object_flags_is_refused(tmp_path):
    (tmp_path / "x").write_bytes(pickle.dumps(_FlaggedDtype(), protocol=2))
    with pytest.raises(UserError, match="non-plain state"):
        safe_load(tmp_path / "x")


class _BigPlaceholder:
    """Pickles as ``_reconstruct(ndarray, (10**9,), b"b")``: a 1 GB allocation, no data."""

    def __reduce__(self):
        return (_reconstruct, (np.ndarray, (10**9,), b"b"))


def test_reconstruct_with_unusual_arguments_is_refused(tmp_path):
    (tmp_path / "x").write_bytes(pickle.dumps(_BigPlaceholder(), protocol=2))
    with pytest.raises(UserError, match="_reconstruct call with unusual arguments"):
        safe_load(tmp_path / "x")


class _NdarrayCall:
    """Pickles as a direct call ``numpy.ndarray((4,), "u1", buffer, 0, (10**6,))``."""

    def __reduce__(self):
        return (np.ndarray, ((4,), np.dtype("u1"), b"abcd", 0, (10**6,)))


def test_direct_ndarray_call_is_refused(tmp_path):
    (tmp_path / "x").write_bytes(pickle.dumps(_NdarrayCall(), protocol=2))
    with pytest.raises(UserError, match="not a readable python pickle batch"):
        safe_load(tmp_path / "x")


def test_state_of_other_objects_is_refused(tmp_path):
    data = pickle.PROTO + b"\x02" + b"}" + b"}" + pickle.BUILD + pickle.STOP
    (tmp_path / "x").write_bytes(data)
    with pytest.raises(UserError, match="refused to unpickle the state of a dict"):
        safe_load(tmp_path / "x")


def test_not_a_pickle_and_missing_file_are_user_errors(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x00\x01 not a pickle at all")
    with pytest.raises(UserError, match="not a readable python pickle batch"):
        safe_load(tmp_path / "junk")
    with pytest.raises(UserError, match="cannot read"):
        safe_load(tmp_path / "missing")
