"""How ``s3sqsd sync`` shows its progress: a live line on a terminal, JSON lines without one.

``render`` (pure) words one ``Tally``: objects and bytes done, the rate, and the ETA once the
total is known. While the listing still streams the total is not known, and the line says
"listed so far" instead of inventing an ETA. ``TerminalProgress`` redraws that line on stderr
(carriage return, erase to end of line) at most a few times a second; ``LogProgress`` logs it
as a ``sync.progress`` JSON line every ``every_seconds`` (a timer unit, a pipe, a CI log),
where a redrawn line would be noise. Both are fed by the caller's thread (cli.py), never by
the engine, which knows nothing of terminals.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol, TextIO

from s3sqsd.sync import Tally

logger = logging.getLogger("s3sqsd.sync")

LOG_EVERY_SECONDS = 5.0
REDRAW_EVERY_SECONDS = 0.25


class Reporter(Protocol):
    def update(self, tally: Tally, *, elapsed: float) -> None: ...

    def finish(self) -> None: ...


def format_bytes(count: float) -> str:
    """Binary units, three significant figures (pure)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def format_seconds(seconds: float) -> str:
    """``h:mm:ss`` or ``m:ss`` (pure)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def eta_seconds(tally: Tally, *, elapsed: float) -> float | None:
    """Seconds left at the rate so far; None while the total is unknown or nothing is done."""
    if not tally.listing_finished or elapsed <= 0:
        return None
    if tally.listed_bytes > 0 and tally.done_bytes > 0:
        return (tally.listed_bytes - tally.done_bytes) / (tally.done_bytes / elapsed)
    if tally.done > 0:
        return (tally.listed - tally.done) / (tally.done / elapsed)
    return None


def render(tally: Tally, *, elapsed: float) -> str:
    """The progress line for ``tally`` after ``elapsed`` seconds (pure)."""
    rate = tally.downloaded_bytes / elapsed if elapsed > 0 else 0.0
    per_second = tally.done / elapsed if elapsed > 0 else 0.0
    if tally.listing_finished:
        objects = f"{tally.done}/{tally.listed} objects"
        volume = f"{format_bytes(tally.done_bytes)}/{format_bytes(tally.listed_bytes)}"
    else:
        objects = f"{tally.done} of {tally.listed} objects listed so far"
        volume = format_bytes(tally.done_bytes)
    parts = [
        objects,
        volume,
        f"{per_second:.0f} objects/s",
        f"{format_bytes(rate)}/s downloaded",
    ]
    eta = eta_seconds(tally, elapsed=elapsed)
    if eta is not None:
        parts.append(f"ETA {format_seconds(eta)}")
    problems = [
        f"{count} {name}"
        for count, name in ((tally.failed, "failed"), (tally.conflicts, "conflicts"))
        if count
    ]
    return ", ".join(parts + problems)


class TerminalProgress:
    """The live line on a terminal's stderr; ``clear`` before anything else is written."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._shown = False
        self._last = 0.0

    def update(self, tally: Tally, *, elapsed: float) -> None:
        now = time.monotonic()
        if now - self._last < REDRAW_EVERY_SECONDS:
            return
        self._last = now
        with self._lock:
            self._stream.write("\r\x1b[K" + render(tally, elapsed=elapsed))
            self._stream.flush()
            self._shown = True

    def clear(self) -> None:
        """Erase the line (a log line is about to be written over it)."""
        with self._lock:
            if self._shown:
                self._stream.write("\r\x1b[K")
                self._stream.flush()
                self._shown = False

    def finish(self) -> None:
        self.clear()


class LogProgress:
    """A ``sync.progress`` log line every ``every_seconds``."""

    def __init__(self, *, every_seconds: float = LOG_EVERY_SECONDS) -> None:
        self._every = every_seconds
        self._next = time.monotonic() + every_seconds

    def update(self, tally: Tally, *, elapsed: float) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        eta = eta_seconds(tally, elapsed=elapsed)
        logger.info(
            "%s",
            render(tally, elapsed=elapsed),
            extra={
                "event": "sync.progress",
                "elapsed_seconds": round(elapsed, 1),
                "eta_seconds": None if eta is None else round(eta, 1),
                **tally.fields(),
            },
        )

    def finish(self) -> None:
        return


class ClearBeforeLogging(logging.Filter):
    """On a terminal, logging writes to the stream the live line is on: erase the line
    before each record (the next update draws it again)."""

    def __init__(self, progress: TerminalProgress) -> None:
        super().__init__()
        self._progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self._progress.clear()
        return True
