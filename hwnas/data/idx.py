"""The idx file format of MNIST, Fashion-MNIST, KMNIST and EMNIST: read, write, find.

An idx file (LeCun et al., http://yann.lecun.com/exdb/mnist/) is a big-endian header followed by
raw data: two zero bytes, one byte naming the element type (0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64), one byte with the number of dimensions, then one
big-endian uint32 per dimension. Files may be gzip-compressed (``.gz``), as distributed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from hwnas.errors import UserError

_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}

#: Largest file (decompressed) read, in bytes: a bound, not a format rule (EMNIST is ~0.7 GB).
MAX_IDX_BYTES = 2 << 30


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the (decompressed) bytes of an idx file.

    Args:
        data: the whole file content.
        name: what to call the file in error messages.

    Returns:
        The array in native byte order, shape as in the header (images: (N, H, W); labels: (N,)).
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _DTYPES:
        raise UserError(f"{name} is not an idx file (bad magic number)")
    dtype = np.dtype(_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise UserError(f"{name} is not an idx file (truncated header)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise UserError(
            f"{name}: header says {shape} ({expected} bytes) but {len(data) - header} bytes follow"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: Path) -> tuple[np.ndarray, str]:
    """Read an idx file, gzip-compressed or not.

    Args:
        path: the file; a name ending in ``.gz`` is decompressed.

    Returns:
        ``(array, sha256)``: the array (see :func:`parse_idx`) and the hex sha256 of the file's
        bytes as stored on disk (compressed, if it is).
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    data = raw
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
                data = stream.read(MAX_IDX_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise UserError(f"{path} is a corrupt gzip file: {exc}") from None
    if len(data) > MAX_IDX_BYTES:
        raise UserError(f"{path} is larger than {MAX_IDX_BYTES} bytes once decompressed")
    return parse_idx(data, str(path)), sha256_bytes(raw)


def write_idx(path: Path, array: np.ndarray) -> str:
    """Write ``array`` as an idx file; gzip it (reproducibly: mtime 0, no name) if ``.gz``.

    Returns:
        The hex sha256 of the bytes written.
    """
    array = np.ascontiguousarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"idx cannot store dtype {array.dtype}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    data = header + array.astype(array.dtype.newbyteorder(">"), copy=False).tobytes()
    if str(path).endswith(".gz"):
        buffer = io.BytesIO()
        with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=9, mtime=0, filename="") as z:
            z.write(data)
        data = buffer.getvalue()
    Path(path).write_bytes(data)
    return sha256_bytes(data)


def _role(name: str) -> Optional[str]:
    """``train_images``/``train_labels``/``test_images``/``test_labels`` for an idx file name."""
    low = name.lower()
    if not ("idx" in low and (low.endswith(".gz") or low.endswith("ubyte"))):
        return None
    kind = "images" if "idx3" in low else "labels" if "idx1" in low else None
    split = "train" if "train" in low else "test" if ("t10k" in low or "test" in low) else None
    return f"{split}_{kind}" if kind and split else None


def find_idx_files(root: Path, need_test: bool = True) -> Dict[str, Path]:
    """Find the idx files of one dataset in a folder (not recursive).

    Recognised names contain ``idx3`` (images) or ``idx1`` (labels) and ``train`` or
    ``t10k``/``test``, ending in ``ubyte`` or ``.gz``: the MNIST names
    (``train-images-idx3-ubyte.gz``), the ``train-images.idx3-ubyte`` variant, KMNIST and EMNIST.

    Args:
        root: the folder.
        need_test: whether the test pair must be there.

    Returns:
        Paths by role: ``train_images``, ``train_labels`` and, if present, ``test_images``,
        ``test_labels``.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset folder {root} does not exist")
    found: Dict[str, list] = {}
    for path in sorted(root.iterdir()):
        role = _role(path.name)
        if role and path.is_file():
            found.setdefault(role, []).append(path)
    for role, paths in found.items():
        if len(paths) > 1:
            names = ", ".join(p.name for p in paths)
            raise UserError(f"{root} holds several idx files for {role} ({names}); keep one set")
    required = ["train_images", "train_labels"] + (["test_images", "test_labels"] * need_test)
    missing = [role for role in required if role not in found]
    if missing:
        raise UserError(
            f"{root} lacks idx files for {', '.join(missing)} "
            "(expected names like train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
        )
    if ("test_images" in found) != ("test_labels" in found):
        raise UserError(f"{root} holds test images or test labels but not both")
    return {role: paths[0] for role, paths in found.items()}
