"""Progress, one way for every command and the server (credcheck._progress): bars on a terminal, a log line now
and then elsewhere; timed by a fake clock, never by the wall."""

from __future__ import annotations

import io
import itertools
import logging
import sys
from collections.abc import Callable

import pytest

from credcheck._progress import Reporter, size, span


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def counts(phase: str, total: int | None) -> str:
    return "ranges"


def lines_of(
    steps: list[tuple[float, int]], total: int | None, unit_of: Callable[[str, int | None], str] = counts
) -> list[str]:
    """What a reporter off a terminal writes for ``(time, done)`` steps of one phase."""
    clock, stream = Clock(), io.StringIO()
    reporter = Reporter("mirror", unit_of, stream=stream, clock=clock)
    for now, done in steps:
        clock.now = now
        reporter("fetch", done, total)
    return stream.getvalue().splitlines()


class TestCadence:
    def test_every_ten_seconds_and_every_tenth_whichever_is_rarer(self) -> None:
        """At 1% a second a line comes every 10 s (10% each); at 10% a second still every 10 s only; at 1% every
        10 s, only every 100 s (each 10%)."""
        assert len(lines_of([(t, 10 * t) for t in range(101)], total=1000)) == 10
        assert len(lines_of([(t, 100 * t) for t in range(11)], total=1000)) == 1
        slow = lines_of([(10 * t, 10 * t) for t in range(101)], total=1000)
        assert [line.split(": ", 2)[2].split(" of ")[0] for line in slow] == [f"{n:,}" for n in range(100, 1001, 100)]

    def test_nothing_in_the_first_ten_seconds(self) -> None:
        """A phase that ends within 10 s says nothing (a short command stays quiet)."""
        assert lines_of([(t / 10, 100 * t) for t in range(100)], total=10_000) == []
        assert lines_of([(t / 10, 100 * t) for t in range(100)], total=None) == []

    def test_without_a_total_the_lines_thin_out(self) -> None:
        """Without a total, a line every 10 s at first, then every tenth of the phase's time so far: an hour
        writes a few dozen lines, not 360."""
        clock, stream = Clock(), io.StringIO()
        reporter = Reporter("build", counts, stream=stream, clock=clock)
        said: list[float] = []
        for second in range(3601):
            clock.now = second
            before = len(stream.getvalue())
            reporter("merge", 1000 * second, None)
            if len(stream.getvalue()) > before:
                said.append(clock.now)
        assert said[:3] == [10, 20, 30]
        assert all(b - a >= max(10, a / 10) for a, b in itertools.pairwise(said))
        assert 20 < len(said) < 60

    def test_a_new_phase_starts_afresh(self) -> None:
        """A phase's rate counts from where it started, and a new phase waits its own 10 s."""
        clock, stream = Clock(), io.StringIO()
        reporter = Reporter(
            "build", lambda phase, total: "B" if phase == "read" else "digests", stream=stream, clock=clock
        )
        reporter("read", 0, 1_000_000)
        clock.now = 20
        reporter("read", 500_000, 1_000_000, 4321)
        reporter("merge", 0, None)
        clock.now = 25
        reporter("merge", 5_000, None)
        clock.now = 30
        reporter("merge", 10_000, None, 10_000)
        assert stream.getvalue().splitlines() == [
            "credcheck: build read: 500.0 kB of 1.0 MB (50%), 25.0 kB/s, about 20 s left; 4,321 lines",
            "credcheck: build merge: 10,000 digests, 1,000 digests/s; 10,000 lines",
        ]

    def test_a_resumed_task_counts_its_rate_from_its_start(self) -> None:
        """A mirror resumed at 600 of 1,000 ranges: the rate and the time left count only what this run did."""
        lines = lines_of([(0, 600), (40, 1000)], total=1000)
        assert lines == ["credcheck: mirror fetch: 1,000 of 1,000 ranges (100%), 10 ranges/s, about 0 s left"]


class TestWhere:
    def test_to_the_log_when_it_is_configured(self, caplog: pytest.LogCaptureFixture) -> None:
        """With logging configured to show INFO, a line is a record of credcheck.progress carrying its figures."""
        caplog.set_level(logging.INFO, logger="credcheck.progress")
        clock, stream = Clock(), io.StringIO()
        reporter = Reporter("export", counts, stream=stream, clock=clock)
        reporter("write", 0, 100)
        clock.now = 50
        reporter("write", 50, 100)
        (record,) = caplog.records
        assert record.name == "credcheck.progress" and record.levelno == logging.INFO
        assert record.getMessage() == "export write: 50 of 100 ranges (50%), 1 ranges/s, about 50 s left"
        assert getattr(record, "progress", None) == {
            "task": "export",
            "phase": "write",
            "done": 50,
            "total": 100,
            "unit": "ranges",
            "rate": 1.0,
            "eta_seconds": 50.0,
        }
        assert stream.getvalue() == ""

    def test_to_standard_error_otherwise(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Without a logger that would show it, the line goes to standard error, never lost."""
        clock = Clock()
        reporter = Reporter("export", counts, clock=clock)
        reporter("write", 0, 100)
        clock.now = 50
        reporter("write", 50, 100)
        assert capsys.readouterr().err.startswith("credcheck: export write: 50 of 100 ranges")

    def test_a_bar_on_a_terminal(self) -> None:
        """On a terminal with tqdm: a bar per phase, its unit and note, cleared by close()."""
        pytest.importorskip("tqdm")
        stream = Terminal()
        reporter = Reporter("mirror", counts, stream=stream)
        assert reporter.bars
        reporter("fetch", 0, 10, note="0 B received")
        reporter("fetch", 10, 10, note="2.0 MB received")
        bar = reporter._phase.bar if reporter._phase is not None else None
        assert stream.getvalue().startswith("\rmirror fetch:") and bar is not None
        assert "10/10" in str(bar) and " ranges/s" in str(bar) and "2.0 MB received" in str(bar)
        reporter.close()
        assert bar.disable  # closed

    def test_lines_on_a_terminal_without_tqdm(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without tqdm a terminal gets the lines too, and a server asks for lines whatever stderr is."""
        monkeypatch.setitem(sys.modules, "tqdm", None)
        assert not Reporter("mirror", counts, stream=Terminal()).bars
        monkeypatch.delitem(sys.modules, "tqdm")
        assert not Reporter("bodies", counts, stream=Terminal(), bars=False).bars
        assert not Reporter("build", counts, stream=io.StringIO()).bars


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (48_300_000, "48.3 MB"), (3.4e12, "3.4 TB")]
)
def test_size(count: float, text: str) -> None:
    """Sizes in powers of 1000, as people read them."""
    assert size(count) == text


@pytest.mark.parametrize(("seconds", "text"), [(0, "0 s"), (89, "89 s"), (720, "12 min"), (11_520, "3.2 h")])
def test_span(seconds: float, text: str) -> None:
    """Times left in seconds, minutes or hours."""
    assert span(seconds) == text
