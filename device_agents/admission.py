"""Admission control of the TCP agent: who may hold a connection, and how refusals are logged.

A connection is first *unauthenticated* (it has not sent the token yet), then, after a good
``auth`` message, an authenticated *session*. The two are counted apart so that strangers can
never take the places of hosts that hold the token:

* ``max_unauthenticated``: connections still authenticating, from all addresses together;
* ``max_per_address``: connections still authenticating from one address;
* ``max_sessions``: authenticated sessions.

A connection over a limit is refused at once with a ``busy`` error naming the limit (see
:mod:`device_agents.protocol`), without a thread of its own. Refusals are logged as one summary
line per ``interval_s``, never one line per connection: a flood must not become a flood of log
lines (a log on a pipe nobody reads blocks its writer once the pipe is full).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Dict, Optional

log = logging.getLogger(__name__)

TOO_MANY_UNAUTHENTICATED = "too many unauthenticated connections"
TOO_MANY_SESSIONS = "too many authenticated sessions"


class Admission:
    """Thread-safe counters of unauthenticated connections (per address) and sessions.

    Args:
        max_unauthenticated: connections still authenticating, all addresses together.
        max_per_address: connections still authenticating from one address.
        max_sessions: authenticated sessions.
    """

    def __init__(self, max_unauthenticated: int, max_per_address: int, max_sessions: int) -> None:
        if min(max_unauthenticated, max_per_address, max_sessions) < 1:
            raise ValueError("connection limits must be at least 1")
        self.max_unauthenticated = max_unauthenticated
        self.max_per_address = max_per_address
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._unauthenticated: Dict[str, int] = {}
        self._sessions = 0

    def enter(self, address: str) -> Optional[str]:
        """Count a new connection from ``address``; returns why it is refused, or ``None``."""
        with self._lock:
            if sum(self._unauthenticated.values()) >= self.max_unauthenticated:
                return TOO_MANY_UNAUTHENTICATED
            if self._unauthenticated.get(address, 0) >= self.max_per_address:
                return f"{TOO_MANY_UNAUTHENTICATED} from {address}"
            self._unauthenticated[address] = self._unauthenticated.get(address, 0) + 1
            return None

    def promote(self, address: str) -> Optional[str]:
        """Turn an authenticated connection into a session; returns why not, or ``None``.

        On refusal the connection stays counted as unauthenticated (``leave`` releases it).
        """
        with self._lock:
            if self._sessions >= self.max_sessions:
                return TOO_MANY_SESSIONS
            self._drop(address)
            self._sessions += 1
            return None

    def leave(self, address: str, authenticated: bool) -> None:
        """Release a connection counted by ``enter`` (and ``promote`` if ``authenticated``)."""
        with self._lock:
            if authenticated:
                self._sessions -= 1
            else:
                self._drop(address)

    def counts(self) -> Dict[str, int]:
        """Current counts: ``unauthenticated``, ``sessions`` and ``addresses``."""
        with self._lock:
            return {
                "unauthenticated": sum(self._unauthenticated.values()),
                "sessions": self._sessions,
                "addresses": len(self._unauthenticated),
            }

    def _drop(self, address: str) -> None:
        left = self._unauthenticated.get(address, 0) - 1
        if left > 0:
            self._unauthenticated[address] = left
        else:
            self._unauthenticated.pop(address, None)


class RefusalLog:
    """Counts refused connections by reason and logs them as one warning per ``interval_s``.

    The first refusal is logged at once; later ones are summed and logged with the next refusal
    that comes after ``interval_s`` (so a quiet agent logs nothing more). Every refusal is also
    logged at DEBUG.
    """

    def __init__(self, interval_s: float = 10.0) -> None:
        self.interval_s = interval_s
        self.total = 0
        self._lock = threading.Lock()
        self._pending: Counter = Counter()
        self._last_s = -float("inf")

    def refused(self, peer: str, reason: str) -> None:
        log.debug("refused %s: %s", peer, reason)
        now = time.monotonic()
        with self._lock:
            self.total += 1
            self._pending[reason] += 1
            if now - self._last_s < self.interval_s:
                return
            pending, self._pending = self._pending, Counter()
            self._last_s = now
        summary = ", ".join(f"{n} x {why}" for why, n in pending.most_common())
        log.warning("refused %d connection(s): %s", sum(pending.values()), summary)


__all__ = ["TOO_MANY_SESSIONS", "TOO_MANY_UNAUTHENTICATED", "Admission", "RefusalLog"]
