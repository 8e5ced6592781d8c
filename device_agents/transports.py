"""Transports that carry the protocol: stdin/stdout and TCP.

**stdio** serves one peer (the host on the other end of an SSH exec channel, a subprocess pipe or
any ``--exec`` command). The real stdout file descriptor is reserved for protocol messages and fd 1
is pointed at stderr, so a runtime that prints to stdout cannot corrupt the stream.

**TCP** binds to 127.0.0.1 unless told otherwise and serves clients in threads (measurements
still queue on the agent's lock). The first message of a connection must be
``{"op": "auth", "token": ...}``, compared in constant time; until then a client gets 4 KiB
messages and ``auth_timeout_s`` seconds. Idle clients are dropped after ``idle_timeout_s``.
Malformed or oversized messages are answered with an error and the connection goes on.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import socket
import socketserver
import sys
import threading
from typing import IO, Callable

from device_agents import protocol
from device_agents.protocol import ProtocolError
from device_agents.service import Agent

log = logging.getLogger(__name__)

AUTH_MAX_BYTES = 4096


def serve_stream(
    agent: Agent, reader: IO[bytes], write: Callable[[bytes], None], max_bytes: int
) -> None:
    """Serve requests from ``reader`` until end of stream; every request gets exactly one reply."""
    while True:
        try:
            line = protocol.read_line(reader, max_bytes)
        except ProtocolError as exc:
            write(protocol.encode(protocol.error(None, exc.code, exc.message)))
            continue
        if line is None:
            return
        if not line.strip():
            continue
        write(protocol.encode(respond(agent, line)))


def respond(agent: Agent, line: bytes) -> dict:
    """The reply to one raw request line; never raises for bad input."""
    try:
        message = protocol.decode(line)
    except ProtocolError as exc:
        return protocol.error(protocol.request_id_of(line), exc.code, exc.message)
    rid = message.get("id")
    try:
        return protocol.ok(rid, agent.handle(message))
    except ProtocolError as exc:
        return protocol.error(rid, exc.code, exc.message)
    except Exception as exc:  # a bug or a runtime crash must not take the agent down
        log.exception("request %r failed", message.get("op"))
        return protocol.error(rid, "internal", f"{type(exc).__name__}: {exc}")


def serve_stdio(agent: Agent, max_bytes: int = protocol.DEFAULT_MAX_BYTES) -> None:
    """Serve on this process' stdin/stdout until stdin closes."""
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed by libraries now goes to stderr
    sys.stdout = sys.stderr
    out = os.fdopen(out_fd, "wb", buffering=0)

    def write(data: bytes) -> None:
        out.write(data)

    serve_stream(agent, sys.stdin.buffer, write, max_bytes)


class _Handler(socketserver.StreamRequestHandler):
    server: AgentTCPServer

    def handle(self) -> None:
        srv = self.server
        sock: socket.socket = self.request
        peer = "{}:{}".format(*self.client_address[:2])
        if not srv.slots.acquire(blocking=False):
            self._send(protocol.error(None, "busy", "too many connections"))
            return
        try:
            sock.settimeout(srv.auth_timeout_s)
            if not self._authenticate():
                log.warning("refused unauthenticated client %s", peer)
                return
            sock.settimeout(srv.idle_timeout_s)
            serve_stream(srv.agent, self.rfile, self._write, srv.max_bytes)
        except (socket.timeout, TimeoutError):
            self._send(protocol.error(None, "timeout", "connection idle for too long; closing"))
        except (ConnectionError, OSError) as exc:
            log.info("client %s dropped: %s", peer, exc)
        finally:
            srv.slots.release()

    def _authenticate(self) -> bool:
        try:
            line = protocol.read_line(self.rfile, AUTH_MAX_BYTES)
        except ProtocolError:
            self._send(
                protocol.error(
                    None,
                    "unauthorized",
                    "the first message must be a small auth message",
                )
            )
            return False
        if line is None:
            return False
        try:
            message = protocol.decode(line)
        except ProtocolError as exc:
            self._send(protocol.error(None, "unauthorized", f"authenticate first ({exc.message})"))
            return False
        token = message.get("token")
        expected = self.server.token.encode("utf-8")
        given = token.encode("utf-8") if isinstance(token, str) else b""
        if message.get("op") != "auth" or not hmac.compare_digest(given, expected):
            self._send(protocol.error(message.get("id"), "unauthorized", "missing or wrong token"))
            return False
        self._send(
            protocol.ok(message.get("id"), {"authenticated": True, **self.server.agent.hello()})
        )
        return True

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _send(self, message: dict) -> None:
        with contextlib.suppress(OSError):
            self._write(protocol.encode(message))


class AgentTCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A token-protected TCP agent; ``serve_forever()`` runs it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        agent: Agent,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_bytes: int = protocol.DEFAULT_MAX_BYTES,
        idle_timeout_s: float = 300.0,
        auth_timeout_s: float = 10.0,
        max_clients: int = 16,
    ) -> None:
        if len(token) < 16:
            raise ValueError("the token must be at least 16 characters")
        self.agent = agent
        self.token = token
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.slots = threading.BoundedSemaphore(max_clients)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.address_family = family
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def read_token(path: str) -> str:
    """The token in ``path``, whitespace stripped; warns if other users can read the file."""
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    try:
        if os.stat(path).st_mode & 0o077:
            log.warning("token file %s is readable by other users; chmod 600 it", path)
    except OSError:
        pass
    return token


def write_new_token(path: str) -> str:
    """Write a fresh random token (256 bits, hex) to ``path`` with mode 0600 and return it."""
    import secrets

    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


__all__ = [
    "AgentTCPServer",
    "read_token",
    "respond",
    "serve_stdio",
    "serve_stream",
    "write_new_token",
]
