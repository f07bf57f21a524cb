"""What the loop tells the outside while it runs: watchdog pings, the STATUS line, queue depth.

Runs on the loop thread, once per pass. The watchdog ping is fed only by the loop and only
while every receiver thread shows progress, so systemd restarts a daemon whose loop or
receiver hangs, not just one whose process died.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from s3sqsd.errors import QueueError
from s3sqsd.metrics import Metrics
from s3sqsd.notify import Notifier
from s3sqsd.worker.ports import QueueLike

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")

STATUS_EVERY_SECONDS = 1.0


class Heartbeat:
    """The watchdog, STATUS and queue-depth timers, and the text of the STATUS line."""

    def __init__(
        self,
        *,
        queue: QueueLike,
        notifier: Notifier,
        metrics: Metrics,
        in_hand: Callable[[], int],
        receivers_healthy: Callable[[float], bool],
        queue_depth_every_seconds: float | None,
        paused: Callable[[], str | None] = lambda: None,
    ) -> None:
        """``paused``: why receiving is held, for the STATUS line (None: it is not)."""
        self._queue = queue
        self._notifier = notifier
        self._metrics = metrics
        self._in_hand = in_hand
        self._receivers_healthy = receivers_healthy
        self._paused = paused
        # Queue depth costs an API call: read only when metrics are served, at most this often.
        self._queue_depth_every = queue_depth_every_seconds
        self._queue_depth_at = -math.inf
        self._last_ping = 0.0
        self._last_status_at = 0.0

    def ready(self, *, workers: int | str) -> None:
        self._notifier.ready(self.status_text())
        logger.info(
            "s3sqsd is running: queue %s, download threads: %s",
            self._queue.url,
            workers,
            extra={"event": "daemon.ready", "queue_url": self._queue.url},
        )

    def beat(self, now: float) -> None:
        interval = self._notifier.watchdog_interval
        if interval and now - self._last_ping >= interval / 4 and self._receivers_healthy(now):
            self._notifier.watchdog()
            self._last_ping = now
        if now - self._last_status_at >= STATUS_EVERY_SECONDS:
            self._last_status_at = now
            self._metrics.set("messages_in_hand", self._in_hand())
            self._notifier.status(self.status_text())
        if self._queue_depth_every and now - self._queue_depth_at >= self._queue_depth_every:
            self._queue_depth_at = now
            self._read_queue_depth()

    def status_text(self) -> str:
        m = self._metrics
        text = (
            f"in flight {self._in_hand()}, workers {m.get('workers_target'):.0f}, "
            f"downloaded {m.get('objects_downloaded'):.0f}, "
            f"failed {m.get('messages_failed'):.0f}, "
            f"dead-lettered {m.get('messages_dead_lettered'):.0f}"
        )
        paused = self._paused()
        if paused:
            text += f"; {paused}"
        if m.last_error:
            text += f"; last error: {m.last_error[:120]}"
        return text

    def stopping(self, *, in_progress: int, released: int, timeout_seconds: float) -> None:
        """The drain began: say so to systemd (STOPPING=1, and more time if the config grants
        more than the unit's TimeoutStopSec, plus a margin) and in the log."""
        self._notifier.stopping(f"stopping: {in_progress} downloads finishing")
        self._notifier.extend_timeout(timeout_seconds + 15)
        logger.info(
            "stopping: %d downloads in progress may finish within %.0f s; %d queued messages "
            "released",
            in_progress,
            timeout_seconds,
            released,
            extra={"event": "daemon.stopping"},
        )

    def drain_timed_out(self, *, cancelled: int) -> None:
        if cancelled > 0:
            logger.warning(
                "shutdown_timeout_seconds reached: %d downloads cancelled and their messages "
                "released",
                cancelled,
                extra={"event": "daemon.drain_timeout"},
            )

    def _read_queue_depth(self) -> None:
        try:
            attributes = self._queue.attributes(
                ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )
        except QueueError as exc:
            logger.debug(
                "cannot read the queue depth: %s",
                exc,
                extra={"event": "sqs.depth.failed", "error": str(exc)},
            )
            return
        for state, name in (
            ("visible", "ApproximateNumberOfMessages"),
            ("in_flight", "ApproximateNumberOfMessagesNotVisible"),
        ):
            value = attributes.get(name, "")
            if value.isdigit():
                self._metrics.set("queue_messages", float(value), state=state)
