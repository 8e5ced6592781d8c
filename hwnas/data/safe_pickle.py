"""A restricted unpickler for the CIFAR-10/100 "python version" batch files.

Unpickling runs whatever callables a file names, so an untrusted pickle can execute code
(``os.system``, ``subprocess.Popen``...). The CIFAR batches (Krizhevsky, 2009) were written by
Python 2's cPickle (protocol 2) and hold only a dict with byte-string keys, lists of ints, byte
strings and one numpy uint8 array. Rebuilding that array needs exactly three globals:
``numpy.core.multiarray._reconstruct``, ``numpy.ndarray`` and ``numpy.dtype``. Files re-saved by
Python 3 with protocol <= 2 add ``_codecs.encode`` (how protocol 2 stores ``bytes``), and numpy 2
names the module ``numpy._core.multiarray``. Those are the only globals allowed here; any other
global is refused with a :class:`~hwnas.errors.UserError` before it is looked up, and the
allowed ones are replaced by checking stand-ins.

``_reconstruct`` must be called as numpy itself does (an empty placeholder array) and
``numpy.dtype`` is restricted further: only plain bool/int/uint/float types, and the state a
dtype is built with (its flags could otherwise mark a uint8 dtype as holding Python objects,
making numpy treat file bytes as pointers) must be the plain state such a dtype pickles to. This
needs the ``BUILD`` opcode, so the pure-Python unpickler (``pickle._Unpickler``) is used.
"""

from __future__ import annotations

import pickle
import re
import struct
from pathlib import Path
from typing import Any, Dict, Tuple

import numpy as np

from hwnas.errors import UserError

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

_DTYPE_RE = re.compile(r"[<>|=]?[biuf][1248]")
_BYTE_ORDERS = ("<", ">", "|", "=")


def _as_str(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", errors="replace")
    return str(value)


def _safe_dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    """``numpy.dtype`` for plain numeric type codes only (``u1``, ``<f4``...)."""
    code = _as_str(obj)
    if not isinstance(obj, (str, bytes)) or not _DTYPE_RE.fullmatch(code):
        raise UserError(
            f"refused to unpickle dtype {code!r}: only plain numeric dtypes are allowed"
        )
    return np.dtype(code, bool(align), bool(copy))


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: only ever an argument of ``_reconstruct``, so
    the file cannot call the real constructor (arbitrary shapes, buffers and strides)."""


_NDARRAY = _NdarrayToken()


def _safe_reconstruct(subtype: Any, shape: Any, typecode: Any) -> np.ndarray:
    """``numpy.core.multiarray._reconstruct`` exactly as ``ndarray.__reduce__`` calls it: an
    empty placeholder that ``__setstate__`` then fills (so memory stays bounded by the file)."""
    if subtype is not _NDARRAY or tuple(shape) != (0,) or _as_str(typecode) != "b":
        raise UserError("refused to unpickle a numpy _reconstruct call with unusual arguments")
    return _reconstruct(np.ndarray, (0,), b"b")


def _latin1_encode(text: Any, encoding: Any = "latin1") -> bytes:
    """``_codecs.encode`` as protocol 2 uses it for ``bytes``: latin-1 only."""
    if not isinstance(text, str) or _as_str(encoding).lower() not in ("latin1", "latin-1"):
        raise UserError("refused to unpickle a _codecs.encode call that is not str -> latin-1")
    return text.encode("latin-1")


_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _safe_reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _safe_dtype,
    ("_codecs", "encode"): _latin1_encode,
}


def _check_dtype_state(state: Any) -> None:
    """Accept only the state a plain numeric dtype pickles to: ``(3|4, order, None x3, -1, -1, 0)``."""
    ok = (
        isinstance(state, tuple)
        and len(state) in (8, 9)
        and state[0] in (3, 4)
        and _as_str(state[1]) in _BYTE_ORDERS
        and state[2:5] == (None, None, None)
        and state[5:8] == (-1, -1, 0)
        and (len(state) == 8 or state[8] is None)
    )
    if not ok:
        raise UserError("refused to unpickle a numpy dtype with a non-plain state")


class _RestrictedUnpickler(pickle._Unpickler):  # type: ignore[misc,name-defined]
    """Pure-Python unpickler that allows only :data:`_ALLOWED` globals and plain dtype states."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UserError(
                f"refused to unpickle global {module}.{name}: only plain data and numpy arrays "
                "are allowed in a dataset file"
            ) from None

    def _load_build_checked(self) -> None:
        state, inst = self.stack[-1], self.stack[-2]
        if isinstance(inst, np.dtype):
            _check_dtype_state(state)
        elif not isinstance(inst, np.ndarray):
            raise UserError(f"refused to unpickle the state of a {type(inst).__name__}")
        pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

    dispatch[pickle.BUILD[0]] = _load_build_checked

    def persistent_load(self, pid: Any) -> Any:
        raise UserError("refused to unpickle a persistent id")


def safe_load(path: Path) -> Any:
    """Unpickle a CIFAR-style python batch file with :class:`_RestrictedUnpickler`.

    Args:
        path: the file.

    Returns:
        The object, with Python 2 strings as ``bytes`` (``encoding="bytes"``, as the CIFAR
        authors' own loading recipe).

    Raises:
        UserError: the file names a forbidden global, is not a pickle, or is corrupt.
    """
    try:
        with open(path, "rb") as stream:
            return _RestrictedUnpickler(stream, encoding="bytes").load()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        IndexError,
        KeyError,
        AttributeError,
        struct.error,
    ) as exc:
        raise UserError(f"{path} is not a readable python pickle batch: {exc}") from None
