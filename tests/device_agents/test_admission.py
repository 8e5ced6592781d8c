"""Admission control of the TCP agent, and the whole-message deadline of the auth line."""

from __future__ import annotations

import logging
import socket
import time

import pytest

from device_agents.admission import (
    TOO_MANY_SESSIONS,
    TOO_MANY_UNAUTHENTICATED,
    Admission,
    RefusalLog,
)
from device_agents.protocol import MessageTooLarge
from device_agents.transports import read_line_before


def test_unauthenticated_limit_and_per_address_cap() -> None:
    gate = Admission(max_unauthenticated=3, max_per_address=2, max_sessions=1)
    assert gate.enter("10.0.0.1") is None and gate.enter("10.0.0.1") is None
    assert gate.enter("10.0.0.1") == f"{TOO_MANY_UNAUTHENTICATED} from 10.0.0.1"
    assert gate.enter("10.0.0.2") is None
    assert gate.enter("10.0.0.3") == TOO_MANY_UNAUTHENTICATED
    gate.leave("10.0.0.1", authenticated=False)
    assert gate.enter("10.0.0.3") is None
    assert gate.counts() == {"unauthenticated": 3, "sessions": 0, "addresses": 3}


def test_sessions_are_counted_apart_from_strangers() -> None:
    gate = Admission(max_unauthenticated=1, max_per_address=1, max_sessions=1)
    assert gate.enter("h") is None and gate.promote("h") is None
    assert gate.counts() == {"unauthenticated": 0, "sessions": 1, "addresses": 0}
    assert gate.enter("s") is None  # a stranger's place was not taken by the session
    assert gate.enter("h") == TOO_MANY_UNAUTHENTICATED
    gate.leave("s", authenticated=False)
    assert gate.enter("h2") is None
    assert gate.promote("h2") == TOO_MANY_SESSIONS  # stays unauthenticated until it leaves
    gate.leave("h2", authenticated=False)
    gate.leave("h", authenticated=True)
    assert gate.counts() == {"unauthenticated": 0, "sessions": 0, "addresses": 0}


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Admission(0, 1, 1)


def test_refusals_are_summed_not_logged_one_by_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="device_agents.admission")
    refusals = RefusalLog(interval_s=3600.0)
    for i in range(500):
        refusals.refused(f"127.0.0.1:{i}", "unauthorized")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert refusals.total == 500
    assert len(warnings) == 1 and "1 x unauthorized" in warnings[0].getMessage()


def test_auth_line_is_read_whole_and_the_rest_kept() -> None:
    a, b = socket.socketpair()
    with a, b:
        stream = a.makefile("rb")
        b.sendall(b'{"op": "au')
        b.sendall(b'th"}\n{"op": "hello"}\n')
        deadline_s = time.monotonic() + 60
        assert read_line_before(stream, a, deadline_s, 4096) == b'{"op": "auth"}'
        assert stream.readline() == b'{"op": "hello"}\n'


def test_auth_line_too_large_or_cut_short() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"x" * 5000)
        with pytest.raises(MessageTooLarge):
            read_line_before(a.makefile("rb"), a, time.monotonic() + 60, 4096)
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b'{"half')
        b.shutdown(socket.SHUT_WR)
        stream = a.makefile("rb")
        assert read_line_before(stream, a, time.monotonic() + 60, 4096) == b'{"half'
        assert read_line_before(stream, a, time.monotonic() + 60, 4096) is None


def test_auth_deadline_bounds_the_whole_line() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b'{"op": "auth"')  # a start, then nothing: the deadline, not a read, ends it
        with pytest.raises(socket.timeout):
            read_line_before(a.makefile("rb"), a, time.monotonic() + 0.2, 4096)
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b'{"op": "auth"}\n')  # complete, but the deadline has passed already
        with pytest.raises(socket.timeout):
            read_line_before(a.makefile("rb"), a, time.monotonic() - 1, 4096)
