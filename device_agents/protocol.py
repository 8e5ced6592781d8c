"""The agent protocol: versioned JSON messages, one per line, over any byte stream.

Every message is a single line of UTF-8 JSON (an object) ending in ``\\n``, at most
``max_bytes`` long. Requests::

    {"v": 1, "id": 7, "op": "measure", ...fields}

Responses echo ``id``::

    {"v": 1, "id": 7, "ok": true, "result": {...}}
    {"v": 1, "id": 7, "ok": false, "error": {"code": "bad_request", "message": "..."}}

An error about the connection rather than one request (a line that could not be read, an idle
timeout, a refusal) has ``"id": null``. A TCP agent at capacity answers a new connection with
one such line and closes it (see :mod:`device_agents.admission`)::

    {"v": 1, "id": null, "ok": false,
     "error": {"code": "busy", "message": "too many unauthenticated connections"}}

``busy`` (added in agent 0.3.0) is an error code, not a new message, so the protocol stays at
version 1: older hosts keep working with this agent and see a refusal as a closed connection;
newer hosts say the agent is busy and try again with back-off.

Operations (see :mod:`device_agents.service`): ``auth`` (TCP only, must come first), ``hello``,
``fingerprint``, ``measure``, ``infer``. Model files travel base64-encoded inside the JSON; they are
data, never code: the agent only hands them to the runtime. Nothing is unpickled, no file path
sent by the host is ever opened.
"""

from __future__ import annotations

import json
from typing import IO, Any, Optional

from device_agents import PROTOCOL_VERSION

DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # a whole quantized network, base64-encoded, fits easily
_DISCARD_CHUNK = 1024 * 1024


class ProtocolError(Exception):
    """A request the agent refuses; ``code`` is machine-readable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class MessageTooLarge(ProtocolError):
    def __init__(self, max_bytes: int) -> None:
        super().__init__("message_too_large", f"message exceeds the limit of {max_bytes} bytes")


def read_line(stream: IO[bytes], max_bytes: int) -> Optional[bytes]:
    """Read one ``\\n``-terminated line of at most ``max_bytes`` bytes (newline excluded).

    Returns ``None`` at end of stream. A longer line is consumed up to its newline and raises
    :class:`MessageTooLarge`, so the stream stays in sync and the next message can be served.
    """
    line = stream.readline(max_bytes + 1)
    if not line:
        return None
    if line.endswith(b"\n"):
        return line[:-1]
    if len(line) <= max_bytes:
        return line  # last line without a newline, at end of stream
    while True:  # oversize: skip the rest of this line
        rest = stream.readline(_DISCARD_CHUNK)
        if not rest or rest.endswith(b"\n"):
            raise MessageTooLarge(max_bytes)


def decode(line: bytes) -> dict:
    """Parse one request line; raises :class:`ProtocolError` for anything but a v1 JSON object."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError("bad_json", f"not a JSON message: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_request", "a message must be a JSON object")
    version = message.get("v")
    if version != PROTOCOL_VERSION:
        raise ProtocolError(
            "bad_version",
            f"unsupported protocol version {version!r}; this agent speaks {PROTOCOL_VERSION}",
        )
    if not isinstance(message.get("op"), str):
        raise ProtocolError("bad_request", "missing 'op' (a string)")
    return message


def encode(message: dict) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n"


def ok(request_id: Any, result: dict) -> dict:
    return {"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "result": result}


def error(request_id: Any, code: str, message: str) -> dict:
    return {
        "v": PROTOCOL_VERSION,
        "id": request_id,
        "ok": False,
        "error": {"code": code, "message": message},
    }


def request_id_of(line: bytes) -> Any:
    """Best-effort id of a request that failed validation, so the error can still be matched."""
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if isinstance(message, dict):
        rid = message.get("id")
        if rid is None or (isinstance(rid, (str, int, float)) and not isinstance(rid, bool)):
            return rid
    return None
