"""Byte-stream channels to an agent, each with a timeout on every exchange.

A channel sends lines and receives lines. Every channel reads in a background thread into a
queue, so ``recv_line(timeout_s)`` can give up cleanly whatever the stream is (a pipe, a socket
or a paramiko channel), and a peer that dies is reported with what it printed on stderr.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

from hwnas.errors import DeviceError

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 512 * 1024 * 1024
_EOF = object()


class Channel:
    """A line channel fed by a reader thread. Subclasses provide the streams and ``close``."""

    def __init__(self, label: str, reader: IO[bytes], write: Callable[[bytes], None]) -> None:
        self.label = label
        self._write = write
        self._lines: queue.Queue = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=40)
        self._closed = False
        self._stderr_thread: threading.Thread | None = None
        self._thread = threading.Thread(target=self._pump, args=(reader,), daemon=True)
        self._thread.start()

    def _pump(self, reader: IO[bytes]) -> None:
        try:
            while True:
                line = reader.readline(MAX_REPLY_BYTES)
                if not line:
                    break
                self._lines.put(line)
        except (OSError, ValueError) as exc:  # stream closed under us
            log.debug("%s: reader stopped: %s", self.label, exc)
        finally:
            self._lines.put(_EOF)

    def _collect_stderr(self, stream: IO[bytes]) -> None:
        def pump() -> None:
            with contextlib.suppress(OSError, ValueError):
                for raw in iter(stream.readline, b""):
                    text = raw.decode("utf-8", "replace").rstrip()
                    self._stderr.append(text)
                    log.debug("%s stderr: %s", self.label, text)

        self._stderr_thread = threading.Thread(target=pump, daemon=True)
        self._stderr_thread.start()

    def stderr_tail(self, lines: int = 6) -> str:
        return " | ".join(list(self._stderr)[-lines:])

    def send(self, data: bytes) -> None:
        try:
            self._write(data)
        except (OSError, ValueError) as exc:
            raise DeviceError(
                f"{self.label}: connection lost while sending ({exc}){self._why()}{self._printed()}"
            ) from None

    def _printed(self) -> str:
        """What the peer wrote on its protocol stream before it went away, if anything."""
        try:
            item = self._lines.get(timeout=0.5)
        except queue.Empty:
            return ""
        if item is _EOF:
            self._lines.put(_EOF)
            return ""
        return f"; it printed {item[:80]!r}, so it is not an hwnas agent"

    def recv_line(self, timeout_s: float) -> bytes:
        try:
            item = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            raise DeviceError(f"{self.label}: no answer within {timeout_s:.0f} s") from None
        if item is _EOF:
            self._lines.put(_EOF)
            raise DeviceError(f"{self.label}: the agent closed the connection{self._why()}")
        return item

    def _why(self) -> str:
        if self._stderr_thread is not None:  # a peer that died: let its last words arrive
            self._stderr_thread.join(timeout=1.0)
        tail = self.stderr_tail()
        return f"; it said: {tail}" if tail else ""

    def close(self) -> None:
        self._closed = True


class ProcessChannel(Channel):
    """An agent running as a child process speaking on its stdin/stdout (local and ``--exec``)."""

    def __init__(self, argv: list[str], label: str, env: dict[str, str] | None = None) -> None:
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise DeviceError(
                f"{label}: cannot start {shlex.join(argv[:3])}: {exc.strerror or exc}"
            ) from None
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        stdin = self.proc.stdin

        def write(data: bytes) -> None:
            stdin.write(data)
            stdin.flush()

        super().__init__(label, self.proc.stdout, write)
        self._collect_stderr(self.proc.stderr)

    def _why(self) -> str:
        try:  # the pipe closed: the process is exiting, its status may lag behind (busy host)
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        status = f" (exit status {code})" if code is not None else ""
        return status + super()._why()

    def close(self) -> None:
        super().close()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                stream.close()  # type: ignore[union-attr]


class SocketChannel(Channel):
    """A TCP connection to ``hwnas agent start``."""

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        label = f"agent at {host}:{port}"
        try:
            self.sock = socket.create_connection((host, port), timeout=timeout_s)
        except socket.timeout:
            raise DeviceError(f"cannot reach {label}: timed out after {timeout_s:.0f} s") from None
        except ConnectionRefusedError:
            raise DeviceError(
                f"cannot reach {label}: connection refused (is 'hwnas agent start' running there?)"
            ) from None
        except OSError as exc:
            raise DeviceError(f"cannot reach {label}: {exc.strerror or exc}") from None
        self.sock.settimeout(None)  # reads block in the reader thread; recv_line has the timeout
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().__init__(label, self.sock.makefile("rb"), self.sock.sendall)

    def close(self) -> None:
        super().close()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def agent_source_root() -> Path:
    """The directory that contains the ``device_agents`` package on this host."""
    import device_agents

    return Path(device_agents.__file__).resolve().parent.parent


def local_agent_argv(extra: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """argv and environment that start this host's agent on stdio with this Python."""
    env = dict(os.environ)
    root = str(agent_source_root())
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return [sys.executable, "-m", "device_agents", "stdio", *(extra or [])], env
