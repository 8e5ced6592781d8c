"""A small dependency-free progress bar with an ETA, drawn on stderr.

Used by long loops (``hwnas build-lut``, ``hwnas lut validate``, the search). On a terminal the bar
redraws in place (``\\r``); elsewhere (a log file, CI) it prints one plain line at most every
``interval_s`` seconds, so logs stay short. Work items may carry weights (e.g. a whole network
costs more device time than one block), and the ETA is ``elapsed / done * (total - done)`` in
those weights.

Example::

    with Progress(total=120, label="build-lut") as bar:
        for item in items:
            ...
            bar.update(1, note=item.name)
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional, TextIO

BAR_WIDTH = 24


def format_duration(seconds: float) -> str:
    """``75.2`` -> ``"1:15"``; ``3725`` -> ``"1:02:05"``; negative or non-finite -> ``"?"``."""
    if not seconds >= 0 or seconds == float("inf"):
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress of ``total`` units of work.

    Args:
        total: units of work in all (> 0; items may be weighted).
        label: shown before the bar.
        stream: where to draw (default: ``sys.stderr``).
        enabled: False draws nothing; None draws (tests pass False or a StringIO stream).
        interval_s: on a non-terminal stream, the least time between two printed lines.
        clock: monotonic clock in seconds (injectable for tests).
        done: units already done before this run started (a resumed build); they count toward
            the fraction but not toward the speed behind the ETA.
    """

    def __init__(
        self,
        total: float,
        label: str = "",
        stream: Optional[TextIO] = None,
        enabled: Optional[bool] = None,
        interval_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        done: float = 0.0,
    ) -> None:
        if total <= 0:
            raise ValueError(f"progress total must be > 0, got {total}")
        self.total = float(total)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = True if enabled is None else enabled
        self.interval_s = interval_s
        self.clock = clock
        self.start_done = float(done)
        self.done = float(done)
        self.note = ""
        self._start = clock()
        self._last_print = -float("inf")
        self._last_line = ""
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._closed = False

    # -- figures -------------------------------------------------------------------------------
    @property
    def elapsed_s(self) -> float:
        return self.clock() - self._start

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total)

    def eta_s(self) -> float:
        """Seconds left at the speed of this run so far (``inf`` before any work is done)."""
        gained = self.done - self.start_done
        if gained <= 0:
            return float("inf")
        return self.elapsed_s / gained * max(0.0, self.total - self.done)

    def render(self) -> str:
        """The status line, e.g. ``build-lut [#####-----] 12/120 10% 0:35, ETA 5:12 note``."""
        filled = round(BAR_WIDTH * self.fraction)
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        done = f"{self.done:g}/{self.total:g}"
        text = (
            f"{self.label} [{bar}] {done} {100 * self.fraction:3.0f}% "
            f"{format_duration(self.elapsed_s)}, ETA {format_duration(self.eta_s())}"
        )
        return f"{text} {self.note}".rstrip()

    # -- drawing -------------------------------------------------------------------------------
    def update(self, amount: float = 1.0, note: Optional[str] = None) -> None:
        """Add ``amount`` units of finished work (and optionally change the note)."""
        self.done += amount
        if note is not None:
            self.note = note
        self._draw()

    def set_note(self, note: str) -> None:
        self.note = note
        self._draw()

    def grow(self, amount: float) -> None:
        """Add ``amount`` units to the total: work found to be needed while running."""
        self.total += amount
        self._draw()

    def _draw(self, final: bool = False) -> None:
        if not self.enabled or self._closed:
            return
        now = self.clock()
        if self._tty:
            self.stream.write("\r\x1b[K" + self.render() + ("\n" if final else ""))
            self.stream.flush()
        elif final or now - self._last_print >= self.interval_s:
            line = self.render()
            if line != self._last_line:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_line = line
            self._last_print = now

    def close(self) -> None:
        """Draw the last state and end the line."""
        if not self._closed:
            self._draw(final=True)
            self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
