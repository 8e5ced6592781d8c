"""Progress bars on stderr for long loops, drawn by tqdm (installed by the ``host`` extra).

One factory, so ``hwnas build-lut``, ``hwnas lut validate`` and the search stages look alike: a
label, the bar, done/total, elapsed time and an ETA, and a note after it (``set_postfix_str``).
Work may be weighted (a whole network costs more device time than one block): ``total`` and the
amounts given to ``update`` are floats, and ``total`` may grow while running (work found to be
needed). Work done before this run started (a resumed build) is ``done``: tqdm counts it toward
the fraction but not toward the speed behind the ETA. On a terminal the bar redraws in place;
elsewhere (a log file, CI) it redraws at most every ``LOG_INTERVAL_S`` seconds, so logs stay short.

tqdm is imported when a bar is made, never by ``import hwnas``; the device agent never uses it.
"""

from __future__ import annotations

import sys
from typing import Any, Optional, TextIO

LOG_INTERVAL_S = 5.0
BAR_FORMAT = "{desc} {percentage:3.0f}%|{bar}| {n:g}/{total:g} [{elapsed}<{remaining}]{postfix}"


def progress_bar(
    total: float,
    label: str = "",
    enabled: bool = True,
    done: float = 0.0,
    stream: Optional[TextIO] = None,
) -> Any:
    """A ``tqdm`` bar over ``total`` units of work (``enabled=False`` draws nothing).

    Args:
        total: units of work in all (> 0; items may be weighted).
        label: shown before the bar.
        enabled: False draws nothing (the bar still counts).
        done: units already done before this run started.
        stream: where to draw (default: ``sys.stderr``).
    """
    from tqdm import tqdm

    if total <= 0:
        raise ValueError(f"progress total must be > 0, got {total}")
    stream = stream if stream is not None else sys.stderr
    tty = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(
        total=total,
        desc=label,
        initial=done,
        file=stream,
        disable=not enabled,
        mininterval=0.1 if tty else LOG_INTERVAL_S,
        dynamic_ncols=tty,
        ascii=not tty,
        leave=True,
        bar_format=BAR_FORMAT,
    )


def grow(bar: Any, amount: float) -> None:
    """Add ``amount`` units to ``bar``'s total: work found to be needed while running."""
    bar.total += amount
    bar.refresh()
