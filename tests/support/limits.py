"""Fakes for the limiter of s3sqsd/limits.py: a clock that moves only when a download waits,
and s3transfer's bucket counting what it grants. No test waits on, or measures, real time."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from s3transfer.bandwidth import LeakyBucket

from s3sqsd.limits import Clock


class FakeClock(Clock):
    """Time moves only when a download waits; ``stop_on_wait``: an event set by each wait (a
    stop arriving while a download is throttled)."""

    def __init__(self, stop_on_wait: threading.Event | None = None) -> None:
        self.now = 1000.0
        self.waits: list[float] = []
        self.stop_on_wait = stop_on_wait
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return self.now

    def wait(self, seconds: float, interrupt: Sequence[threading.Event]) -> None:
        with self._lock:
            self.waits.append(seconds)
        if self.stop_on_wait is not None:
            self.stop_on_wait.set()
        if any(event.is_set() for event in interrupt):
            return
        with self._lock:
            self.now += seconds


class CountingBucket(LeakyBucket):
    """s3transfer's bucket, counting the bytes it granted."""

    def __init__(self, rate: int, clock: Clock) -> None:
        super().__init__(rate, time_utils=clock)
        self.granted = 0
        self._count_lock = threading.Lock()

    def consume(self, amt: int, request_token: object) -> int:
        granted = super().consume(amt, request_token)  # type: ignore[arg-type]
        with self._count_lock:
            self.granted += granted
        return granted
