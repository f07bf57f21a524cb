"""Reconcile: the daemon's own listing pass, so the folder converges even when events are lost.

Events can be missed for reasons s3sqsd never sees (a notification misconfigured for a while, a
purged queue, messages past their retention, a dead-letter queue drained by hand, a host rebuilt
with an empty disk). With ``reconcile: {interval_seconds: N}`` one *reconcile* thread runs the
same pass as ``s3sqsd sync`` (list, compare with the provenance on disk, fetch what is missing or
older) at start and then every N seconds; SIGUSR1 (``systemctl kill -s USR1 s3sqsd``) asks for a
pass now, configured or not. Each object a pass had to fetch is an event the daemon missed:
logged as ``reconcile.missing`` and counted, so an operator learns that the event path is broken
instead of relying on the pass forever.

The pass shares the daemon's fetchers, so an event and the pass never race on one path: both go
through the same per-path locks and the same compare-before-rename. It runs at low priority: one
pass at a time, on few threads of its own (the engine's), never taking the worker's capacity.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from s3sqsd.metrics import Metrics

logger = logging.getLogger("s3sqsd.reconcile")


@dataclass(frozen=True, slots=True)
class PassReport:
    """What one pass did, as the engine counts it."""

    listed: int = 0
    missing: int = 0  # objects it had to fetch: absent here, or older than the bucket's
    skipped: int = 0
    conflicts: int = 0
    failed: int = 0
    complete: bool = True  # False: stopped early, or the listing failed part way


# Runs one pass until done or until the event is set.
RunPass = Callable[[threading.Event], PassReport]


class Reconciler:
    """The reconcile thread: a pass at start and every ``interval_seconds`` when configured,
    and one whenever ``trigger`` is called (the SIGUSR1 handler: it only sets an event)."""

    def __init__(
        self,
        *,
        run_pass: RunPass,
        interval_seconds: float | None,
        metrics: Metrics,
        idle: Callable[[], bool] = lambda: True,
        idle_poll_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run_pass = run_pass
        self._idle = idle
        self._idle_poll = idle_poll_seconds
        self._interval = interval_seconds
        self._metrics = metrics
        self._clock = clock
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="s3sqsd-reconcile", daemon=True)
        if interval_seconds is not None:
            self._wanted.set()  # the first pass at start: a host may come back with gaps

    def start(self) -> None:
        self._thread.start()

    def trigger(self) -> None:
        """Ask for a pass now (safe from a signal handler: one ``Event.set``)."""
        self._wanted.set()

    def stop(self) -> None:
        """No new pass; a pass under way stops listing and submitting at once."""
        self._stop.set()
        self._wanted.set()

    def join(self, timeout: float) -> bool:
        """Wait for the thread; True when it has ended."""
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wanted.wait(self._interval)
            if self._stop.is_set():
                return
            self._wanted.clear()
            if self._wait_for_idle():
                self._one_pass()

    def _wait_for_idle(self) -> bool:
        """Wait until the event path has nothing in hand; False if stopped meanwhile.

        A pass run while a backlog drains would fetch the backlog's objects before their
        events and call each one missing: noise that hides a real gap. Waiting costs nothing:
        while events flow, they are what keeps the folder current.
        """
        while not self._idle():
            if self._stop.wait(self._idle_poll):
                return False
        return True

    def _one_pass(self) -> None:
        started = self._clock()
        logger.info("reconcile pass started", extra={"event": "reconcile.started"})
        try:
            report = self._run_pass(self._stop)
        except Exception as exc:  # the thread must outlive any failure; the next pass retries
            self._metrics.inc("reconcile_passes", result="failed")
            logger.exception(
                "reconcile pass failed; the next one tries again",
                extra={"event": "reconcile.failed", "error": str(exc)},
            )
            return
        if report.failed:
            result = "failed"
        elif report.complete:
            result = "complete"
        else:  # cut short: stopped, or its listing failed part way
            result = "stopped" if self._stop.is_set() else "failed"
        self._metrics.inc("reconcile_passes", result=result)
        self._metrics.inc("reconcile_missing", report.missing)
        if report.complete:
            self._metrics.set("reconcile_last_complete_timestamp_seconds", time.time())
        level = logging.WARNING if report.missing or report.failed else logging.INFO
        logger.log(
            level,
            "reconcile pass %s in %.1f s: %d listed, %d missing (events lost), %d failed, "
            "%d conflicts",
            "finished" if report.complete else "stopped early",
            self._clock() - started,
            report.listed,
            report.missing,
            report.failed,
            report.conflicts,
            extra={
                "event": "reconcile.finished",
                "listed": report.listed,
                "missing": report.missing,
                "skipped": report.skipped,
                "failed": report.failed,
                "conflicts": report.conflicts,
                "complete": report.complete,
                "duration_ms": int((self._clock() - started) * 1000),
            },
        )
