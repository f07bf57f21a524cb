"""Keeping messages in hand invisible: the renewal due-list and its ChangeMessageVisibility calls.

Every message in hand, started or still queued, is renewed (visibility back to
``visibility_timeout_seconds``) once half of what it was last granted has run out, within SQS's
12 h cap counted from its receive. The leases wait in a heap ordered by that moment, so a sweep
costs nothing until one is due, however many are in hand. Runs on the loop thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging

from s3sqsd.backoff import visibility_seconds
from s3sqsd.metrics import Metrics
from s3sqsd.worker.lease import Lease, Stage
from s3sqsd.worker.ports import QueueLike
from s3sqsd.worker.settings import RECEIPT_GONE, SWEEP_INTERVAL_SECONDS, WorkerSettings

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")


class Renewer:
    """The due-list of renewals. ``track`` a lease once, at its receive; each renewal puts it
    back with its next due time. A lease leaves the list when it is settled, when SQS says its
    receipt is gone (``renew`` hands those back to the loop) or when the 12 h cap is reached
    (said once, as it leaves)."""

    def __init__(
        self,
        *,
        queue: QueueLike,
        metrics: Metrics,
        settings: WorkerSettings,
    ) -> None:
        self._queue = queue
        self._metrics = metrics
        self._timeout = settings.visibility_timeout_seconds
        self._due: list[tuple[float, int, Lease]] = []
        self._order = itertools.count()  # ties never compare leases
        self._compact_at = 64  # settled leases wait in the heap until due: drop them past this

    def update(self, settings: WorkerSettings) -> None:
        """A reload: renewals from now on grant the new visibility timeout."""
        self._timeout = settings.visibility_timeout_seconds

    def track(self, lease: Lease, *, granted: float) -> None:
        """Renew ``lease`` when half of the ``granted`` seconds it is visible until are left."""
        self._push(lease, due=lease.visible_until - granted / 2)

    def _push(self, lease: Lease, *, due: float) -> None:
        heapq.heappush(self._due, (due, next(self._order), lease))
        if len(self._due) > self._compact_at:
            # A settled lease stays here until its due time (half a visibility timeout, up to
            # 6 h) with its message body: drop them once they are most of the heap.
            self._due = [entry for entry in self._due if entry[2].stage is not Stage.SETTLED]
            heapq.heapify(self._due)
            self._compact_at = 2 * len(self._due) + 64

    def renew(self, now: float) -> list[Lease]:
        """Extend every lease that is due; return those whose receipt SQS no longer knows."""
        due: list[tuple[Lease, int]] = []
        while self._due and self._due[0][0] <= now:
            _, _, lease = heapq.heappop(self._due)
            if lease.stage is Stage.SETTLED:
                continue
            if lease.stage is Stage.DELETING:
                # Its delete is out: no renewal while it is, but if the delete fails and is
                # tried again, it still needs one. Look again a sweep later.
                self._push(lease, due=now + SWEEP_INTERVAL_SECONDS)
                continue
            seconds = visibility_seconds(self._timeout, held_for_seconds=now - lease.received_at)
            if seconds <= max(0.0, lease.visible_until - now):
                logger.warning(
                    "message %s reaches SQS's 12 h visibility cap; it will be delivered again "
                    "if its download does not finish first",
                    lease.message.message_id,
                    extra={"event": "lease.cap_reached", "message_id": lease.message.message_id},
                )
                continue
            due.append((lease, seconds))
        if not due:
            return []
        result = self._queue.change_visibility([(lease.message, s) for lease, s in due])
        ok = set(result.succeeded)
        for lease, seconds in due:
            if lease.message.message_id in ok:
                lease.visible_until = now + seconds
                self.track(lease, granted=seconds)
        self._metrics.inc("visibility_extensions", len(ok))
        gone: list[Lease] = []
        for failure in result.failed:
            logger.warning(
                "could not extend visibility of message %s (%s: %s)",
                failure.message_id,
                failure.code,
                failure.text,
                extra={
                    "event": "sqs.visibility.extend_failed",
                    "message_id": failure.message_id,
                    "code": failure.code,
                },
            )
            for lease, _ in due:
                if lease.message.message_id != failure.message_id:
                    continue
                if failure.code in RECEIPT_GONE:
                    gone.append(lease)
                else:
                    self._push(lease, due=now)  # throttled, say: tried again next sweep
        return gone
