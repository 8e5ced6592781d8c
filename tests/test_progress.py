"""Progress bars (tqdm, made by ``hwnas.progress``): weighted totals, resumed work, quiet logs."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from hwnas.progress import grow, progress_bar


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_resumed_work_counts_toward_fraction_not_speed() -> None:
    bar = progress_bar(10, "x", stream=io.StringIO(), done=6)
    bar.update(1)
    meter = tqdm.format_meter(**{**bar.format_dict, "elapsed": 3.0, "rate": None})
    bar.close()
    assert "7/10" in meter and "70%" in meter
    assert "00:09" in meter  # 1 unit in 3 s (the 6 resumed ones do not count), 3 units left


def test_work_found_while_running_grows_the_total() -> None:
    out = TTY()
    bar = progress_bar(10, "x", stream=out)
    bar.update(10)
    grow(bar, 5)  # e.g. extra timing rounds decided after the planned ones
    bar.close()
    assert bar.total == 15 and "10/15" in out.getvalue()


def test_weighted_units_and_notes() -> None:
    out = TTY()
    with progress_bar(4.5, "build-lut", stream=out) as bar:
        bar.set_postfix_str("round 1, blocks", refresh=False)
        bar.update(1.5)
        bar.update(3.0)
    text = out.getvalue()
    assert (
        "build-lut" in text and "round 1, blocks" in text and "100%" in text and "4.5/4.5" in text
    )


def test_plain_stream_is_throttled() -> None:
    out = io.StringIO()
    with progress_bar(100, "build", stream=out) as bar:
        for _ in range(100):
            bar.update(1)
    lines = [line for line in out.getvalue().replace("\r", "\n").splitlines() if line]
    assert len(lines) <= 3 and "100/100" in lines[-1]


def test_disabled_bar_writes_nothing_and_rejects_empty_total() -> None:
    out = io.StringIO()
    with progress_bar(3, stream=out, enabled=False) as bar:
        bar.update(3)
    assert out.getvalue() == ""
    with pytest.raises(ValueError):
        progress_bar(0)
