"""Transports that carry the protocol: stdin/stdout and TCP.

**stdio** serves one peer (the host on the other end of an SSH exec channel, a subprocess pipe or
any ``--exec`` command). The real stdout file descriptor is reserved for protocol messages and fd 1
is pointed at stderr, so a runtime that prints to stdout cannot corrupt the stream.

**TCP** binds to 127.0.0.1 unless told otherwise and serves clients in threads (measurements
still queue on the agent's lock). The first message of a connection must be
``{"op": "auth", "token": ...}``, compared in constant time; until then a client gets one 4 KiB
message and ``auth_timeout_s`` seconds for all of it (not per read). Connections still
authenticating and authenticated sessions are limited apart, with a cap per address
(:mod:`device_agents.admission`), so strangers cannot take a host's place; a connection over a
limit gets a ``busy`` error and is closed. Idle sessions are dropped after ``idle_timeout_s``.
Malformed or oversized messages of a session are answered with an error and the session goes on.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import logging
import os
import socket
import socketserver
import sys
import time
from typing import IO, Any, Callable, Optional

from device_agents import protocol
from device_agents.admission import Admission, RefusalLog
from device_agents.protocol import MessageTooLarge, ProtocolError
from device_agents.service import Agent

log = logging.getLogger(__name__)

AUTH_MAX_BYTES = 4096
LISTEN_BACKLOG = 512
"""Connections the kernel queues before ``accept``. socketserver's default of 5 overflowed under
a flood of connections: the kernel dropped handshakes and fell back to SYN cookies, so hosts
were delayed or reset. The handlers are cheap to admit or refuse, so a deeper queue is safe."""


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

    def setup(self) -> None:
        super().setup()
        self.address = str(self.client_address[0])
        self.peer = _peer(self.client_address)
        self.session = False  # True once counted as an authenticated session

    def handle(self) -> None:
        srv = self.server
        sock: socket.socket = self.request
        try:
            if not self._authenticate():
                _drain(sock)
                return
            sock.settimeout(srv.idle_timeout_s)
            serve_stream(srv.agent, self.rfile, self._write, srv.max_bytes)
        except (socket.timeout, TimeoutError):
            if self.session:
                self._send(protocol.error(None, "timeout", "connection idle for too long; closing"))
            else:
                srv.refusals.refused(self.peer, "no auth message in time")
                why = f"no complete auth message within {srv.auth_timeout_s:g} s; closing"
                self._send(protocol.error(None, "timeout", why))
        except (ConnectionError, OSError) as exc:
            log.info("client %s dropped: %s", self.peer, exc)
        finally:
            srv.admission.leave(self.address, self.session)

    def _authenticate(self) -> bool:
        srv = self.server
        deadline_s = time.monotonic() + srv.auth_timeout_s
        try:
            line = read_line_before(self.rfile, self.request, deadline_s, AUTH_MAX_BYTES)
        except ProtocolError:
            return self._refuse(
                "unauthorized", None, "the first message must be a small auth message"
            )
        if line is None:
            return False
        try:
            message = protocol.decode(line)
        except ProtocolError as exc:
            return self._refuse("unauthorized", None, f"authenticate first ({exc.message})")
        rid = protocol.request_id_of(line)
        token = message.get("token")
        expected = srv.token.encode("utf-8")
        given = token.encode("utf-8") if isinstance(token, str) else b""
        if message.get("op") != "auth" or not hmac.compare_digest(given, expected):
            return self._refuse("unauthorized", rid, "missing or wrong token")
        reason = srv.admission.promote(self.address)
        if reason is not None:
            return self._refuse("busy", rid, reason)
        self.session = True
        self._send(protocol.ok(rid, {"authenticated": True, **srv.agent.hello()}))
        return True

    def _refuse(self, code: str, rid: Any, message: str) -> bool:
        self.server.refusals.refused(self.peer, message if code == "busy" else code)
        self._send(protocol.error(rid, code, message))
        return False

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def _send(self, message: dict) -> None:
        with contextlib.suppress(OSError):
            self._write(protocol.encode(message))


class AgentTCPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A token-protected TCP agent; ``serve_forever()`` runs it.

    Args:
        agent: serves the requests of every connection.
        token: the shared secret (at least 16 characters).
        host: address to bind.
        port: TCP port (0 picks a free one).
        max_bytes: largest message of an authenticated client.
        idle_timeout_s: an authenticated client silent for this long is dropped.
        auth_timeout_s: the whole auth message must arrive within this many seconds.
        max_clients: authenticated sessions at once.
        max_unauthenticated: connections still authenticating, from all addresses together.
        max_per_address: connections still authenticating from one address.
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self,
        agent: Agent,
        token: str,
        host: str = "127.0.0.1",
        port: int = 0,
        max_bytes: int = protocol.DEFAULT_MAX_BYTES,
        idle_timeout_s: float = 300.0,
        auth_timeout_s: float = 5.0,
        max_clients: int = 16,
        max_unauthenticated: int = 32,
        max_per_address: int = 8,
    ) -> None:
        if len(token) < 16:
            raise ValueError("the token must be at least 16 characters")
        if auth_timeout_s <= 0:
            raise ValueError("the auth timeout must be positive")
        self.agent = agent
        self.token = token
        self.max_bytes = max_bytes
        self.idle_timeout_s = idle_timeout_s
        self.auth_timeout_s = auth_timeout_s
        self.admission = Admission(max_unauthenticated, max_per_address, max_clients)
        self.refusals = RefusalLog()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.address_family = family
        super().__init__((host, port), _Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        """Admit the connection to a handler thread, or refuse it here, without a thread."""
        address = str(client_address[0])
        reason = self.admission.enter(address)
        if reason is None:
            try:
                super().process_request(request, client_address)  # starts the handler thread
                return
            except RuntimeError:  # the process cannot start another thread
                self.admission.leave(address, authenticated=False)
                reason = "no thread to spare"
        self.refusals.refused(_peer(client_address), reason)
        with contextlib.suppress(OSError):
            request.setblocking(False)
            _drain(request)
            request.send(protocol.encode(protocol.error(None, "busy", reason)))
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a handler's unexpected exception (socketserver would print it to stderr)."""
        log.exception("unexpected error serving %s", _peer(client_address))


def read_line_before(
    stream: io.BufferedReader, sock: socket.socket, deadline_s: float, max_bytes: int
) -> Optional[bytes]:
    """One ``\\n``-terminated line of at most ``max_bytes`` that must arrive by ``deadline_s``.

    Unlike :func:`device_agents.protocol.read_line`, the deadline (``time.monotonic()`` seconds)
    bounds the whole line, not each read, so a client sending a byte at a time cannot hold the
    connection. Bytes after the newline stay in ``stream``. Returns ``None`` at end of stream
    (or what came before it, if no newline did); raises ``socket.timeout`` after the deadline and
    :class:`~device_agents.protocol.MessageTooLarge` past ``max_bytes``.
    """
    line = bytearray()
    while True:
        remaining_s = deadline_s - time.monotonic()
        if remaining_s <= 0:
            raise socket.timeout("line not complete before the deadline")
        sock.settimeout(remaining_s)
        chunk = stream.peek(1)  # at most one read on the socket
        if not chunk:
            return bytes(line) if line else None
        room = max_bytes + 1 - len(line)
        newline = chunk.find(b"\n", 0, room)
        line += stream.read(newline + 1 if newline >= 0 else min(len(chunk), room))
        if newline >= 0:
            return bytes(line[:-1])
        if len(line) > max_bytes:
            raise MessageTooLarge(max_bytes)


def _drain(sock: socket.socket, max_bytes: int = 64 * 1024) -> None:
    """Read and drop what the peer already sent, so that closing sends FIN rather than RST."""
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        for _ in range(max_bytes // 4096):
            if not sock.recv(4096):
                break
    except OSError:  # nothing more to read now (EAGAIN), or the peer is gone
        pass
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(timeout)


def _peer(client_address: Any) -> str:
    return "{}:{}".format(*client_address[:2])


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
    "read_line_before",
    "read_token",
    "respond",
    "serve_stdio",
    "serve_stream",
    "write_new_token",
]
