"""Command line of the agent, shared by ``python -m device_agents`` and ``hwnas agent``.

* ``stdio``: serve on stdin/stdout (SSH, ``--exec`` devices, the ``local`` device).
* ``start``: serve on TCP, token required: ``start --port 7788 --token-file ~/.hwnas-token``.
* ``token FILE``: write a fresh random token to FILE (mode 0600).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.handlers
import queue
import sys
from typing import List, Optional

from device_agents import __version__, protocol

LOG_QUEUE_RECORDS = 1000


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Add ``stdio``, ``start`` and ``token`` to a subparsers object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--cores",
        type=_cores,
        default=None,
        help="cores requests may pin to, e.g. 0 or 2,3 (default: all allowed); the default "
        "core is the first given, else the last allowed one",
    )
    common.add_argument(
        "--max-message-mb",
        type=float,
        default=protocol.DEFAULT_MAX_BYTES / 2**20,
        help="largest accepted message in MiB (default %(default)s)",
    )
    common.add_argument(
        "--runtime",
        choices=("onnxruntime", "tflite"),
        default=None,
        help="refuse to start unless this runtime is installed",
    )
    common.add_argument(
        "--max-sessions",
        type=int,
        default=256,
        help="runtime sessions kept loaded between requests (default %(default)s)",
    )
    common.add_argument(
        "--cache-mb",
        type=float,
        default=None,
        help="memory for cached sessions and models (default: 1/8 of physical memory)",
    )
    common.add_argument(
        "--log-level",
        default="WARNING",
        help="logging level on stderr (default WARNING)",
    )

    p = sub.add_parser("stdio", parents=[common], help="serve the agent protocol on stdin/stdout")
    p.set_defaults(agent_command="stdio")

    p = sub.add_parser(
        "start",
        parents=[common],
        help="serve the agent protocol on TCP (token required)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; 0.0.0.0 exposes it on the network)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=7788,
        help="TCP port (default 7788; 0 picks a free one)",
    )
    p.add_argument(
        "--token-file",
        required=True,
        help="file holding the shared token (see 'token')",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        default=300.0,
        help="seconds before an idle client is dropped",
    )
    p.add_argument(
        "--max-clients",
        type=int,
        default=16,
        help="authenticated sessions at once (default %(default)s)",
    )
    p.add_argument(
        "--max-unauthenticated",
        type=int,
        default=32,
        help="connections still authenticating, all addresses together (default %(default)s)",
    )
    p.add_argument(
        "--max-per-address",
        type=int,
        default=8,
        help="connections still authenticating from one address (default %(default)s)",
    )
    p.add_argument(
        "--auth-timeout",
        type=float,
        default=5.0,
        help="seconds a new connection has to send its whole auth message (default %(default)s)",
    )
    p.set_defaults(agent_command="start")

    p = sub.add_parser("token", help="write a new random token to FILE (mode 0600)")
    p.add_argument("file")
    p.set_defaults(agent_command="token")


def _cores(text: str) -> List[int]:
    try:
        cores = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cores must be integers joined by ',', got {text!r}"
        ) from None
    if not cores or any(c < 0 for c in cores):
        raise argparse.ArgumentTypeError(f"cores must be non-negative integers, got {text!r}")
    return cores


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; returns the exit status (2 for user mistakes)."""
    from device_agents.runners import available_runtimes
    from device_agents.service import Agent
    from device_agents.transports import (
        AgentTCPServer,
        read_token,
        serve_stdio,
        write_new_token,
    )

    _log_to_stderr(getattr(args, "log_level", "WARNING"))
    if args.agent_command == "token":
        try:
            write_new_token(args.file)
        except FileExistsError:
            return _fail(f"{args.file} exists; refusing to overwrite a token")
        print(f"wrote a new token to {args.file}", file=sys.stderr)
        return 0
    if args.runtime and args.runtime not in available_runtimes():
        found = ", ".join(available_runtimes()) or "none"
        return _fail(f"runtime {args.runtime} is not installed here (found: {found})")
    try:
        cache = None if args.cache_mb is None else max(1, int(args.cache_mb * 2**20))
        agent = Agent(cores=args.cores, max_sessions=max(1, args.max_sessions), cache_bytes=cache)
    except ValueError as exc:
        return _fail(str(exc))
    max_bytes = int(args.max_message_mb * 2**20)
    if args.agent_command == "stdio":
        serve_stdio(agent, max_bytes=max_bytes)
        return 0
    try:
        token = read_token(args.token_file)
        server = AgentTCPServer(
            agent,
            token,
            host=args.host,
            port=args.port,
            max_bytes=max_bytes,
            idle_timeout_s=args.idle_timeout,
            auth_timeout_s=args.auth_timeout,
            max_clients=args.max_clients,
            max_unauthenticated=args.max_unauthenticated,
            max_per_address=args.max_per_address,
        )
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    print(
        f"hwnas agent {__version__} listening on {args.host}:{server.port}",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Hands records to a bounded queue and drops them when it is full, never blocking."""

    def enqueue(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(record)


def _log_to_stderr(level: str) -> None:
    """Log to stderr from a background thread, so that serving never waits on the log.

    A slow or unread stderr (a pipe nobody drains, a slow terminal) would otherwise block every
    thread that logs once the pipe is full; records that do not fit the queue are dropped. The
    listener's thread is a daemon: at exit, records still queued may be lost, but exit never
    waits on a blocked stderr.
    """
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter("agent %(levelname)s: %(message)s"))
    records: queue.Queue = queue.Queue(LOG_QUEUE_RECORDS)
    listener = logging.handlers.QueueListener(records, stream)
    listener.start()
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(_DroppingQueueHandler(records))
    root.setLevel(level.upper())


def _fail(message: str) -> int:
    print(f"agent: error: {message}", file=sys.stderr)
    return 2


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m device_agents", description="hwnas device agent"
    )
    parser.add_argument("--version", action="version", version=__version__)
    add_subcommands(parser.add_subparsers(dest="cmd", required=True))
    return run(parser.parse_args(argv))
