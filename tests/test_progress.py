"""The progress bar: fraction, ETA arithmetic, throttled plain-text output, resumed work."""

from __future__ import annotations

import io

import pytest

from hwnas.progress import Progress, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_format_duration() -> None:
    assert format_duration(75.2) == "1:15"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("inf")) == "?"
    assert format_duration(-1) == "?"


def test_eta_from_speed_so_far() -> None:
    clock = Clock()
    bar = Progress(10, "x", stream=io.StringIO(), clock=clock)
    assert bar.eta_s() == float("inf")
    clock.now += 4.0
    bar.update(2)
    assert bar.fraction == pytest.approx(0.2)
    assert bar.eta_s() == pytest.approx(16.0)  # 4 s for 2 units, 8 left


def test_resumed_work_counts_toward_fraction_not_speed() -> None:
    clock = Clock()
    bar = Progress(10, "x", stream=io.StringIO(), clock=clock, done=6)
    clock.now += 3.0
    bar.update(1)
    assert bar.fraction == pytest.approx(0.7)
    assert bar.eta_s() == pytest.approx(9.0)  # 3 s per unit, 3 units left


def test_work_found_while_running_grows_the_total() -> None:
    clock = Clock()
    bar = Progress(10, "x", stream=io.StringIO(), clock=clock)
    clock.now += 5.0
    bar.update(10)
    bar.grow(5)  # e.g. extra timing rounds decided after the planned ones
    assert bar.fraction == pytest.approx(10 / 15)
    assert bar.eta_s() == pytest.approx(2.5)  # 0.5 s per unit, 5 units left
    assert "10/15" in bar.render()


def test_plain_stream_prints_throttled_lines_and_final_state() -> None:
    clock = Clock()
    out = io.StringIO()
    with Progress(4, "build", stream=out, clock=clock, interval_s=5.0) as bar:
        bar.update(1, note="blocks")  # printed (first line)
        clock.now += 1.0
        bar.update(1)  # throttled
        clock.now += 10.0
        bar.update(1)  # printed
        clock.now += 1.0  # close() prints the final state; an identical line is not repeated
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("build [") and "1/4" in lines[0] and lines[0].endswith("blocks")
    assert "3/4" in lines[1]
    assert "3/4" in lines[2] and "\r" not in out.getvalue()


def test_disabled_bar_writes_nothing_and_rejects_empty_total() -> None:
    out = io.StringIO()
    with Progress(3, stream=out, enabled=False) as bar:
        bar.update(3)
    assert out.getvalue() == ""
    with pytest.raises(ValueError):
        Progress(0)


def test_tty_redraws_in_place() -> None:
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = TTY()
    with Progress(2, "t", stream=out, clock=Clock()) as bar:
        bar.update(1)
        bar.update(1)
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\n") and "2/2 100%" in text
