"""Arrays inside protocol messages: ``{"name", "dtype", "shape", "data_b64"}``, little-endian, C order.

Used by the agent and by the host client alike, so both ends agree byte for byte.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Dict

import numpy as np

from device_agents.protocol import ProtocolError

_ARRAY_DTYPES = (
    "float32",
    "float16",
    "float64",
    "int8",
    "uint8",
    "int32",
    "int64",
    "bool",
)


def encode_array(name: str, array: np.ndarray) -> Dict[str, Any]:
    """An array as ``{"name", "dtype", "shape", "data_b64"}`` (little-endian, C order)."""
    array = np.ascontiguousarray(array)
    data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return {
        "name": name,
        "dtype": array.dtype.name,
        "shape": list(array.shape),
        "data_b64": base64.b64encode(data).decode(),
    }


def decode_array(item: Any) -> np.ndarray:
    if not isinstance(item, dict):
        raise ProtocolError(
            "bad_request", "each input must be an object {name, dtype, shape, data_b64}"
        )
    dtype, shape = item.get("dtype"), item.get("shape")
    if dtype not in _ARRAY_DTYPES:
        raise ProtocolError("bad_request", f"input dtype must be one of {_ARRAY_DTYPES}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and 0 <= d < 2**31 for d in shape):
        raise ProtocolError("bad_request", "input shape must be a list of non-negative integers")
    try:
        data = base64.b64decode(item.get("data_b64", ""), validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise ProtocolError("bad_request", "input data_b64 is not valid base64") from None
    dt = np.dtype(dtype).newbyteorder("<")
    count = int(np.prod(shape)) if shape else 1
    if len(data) != count * dt.itemsize:
        raise ProtocolError(
            "bad_request",
            f"input data has {len(data)} bytes, shape {shape} needs {count * dt.itemsize}",
        )
    return np.frombuffer(data, dtype=dt).reshape(shape).astype(np.dtype(dtype))
