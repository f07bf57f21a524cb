"""Settling: what happens to a message once the loop has decided (delete, return, release,
dead-letter), and the calls that do it.

Every method runs on the loop thread except the DeleteMessageBatch calls themselves, which the
*settler* threads make (at 20 ms of round trip the loop spent half its time waiting on deletes);
each answer comes back through the loop's inbox (``Deleted``). Deletes wait up to
``delete_linger_seconds`` to fill a batch of ten (see the design notes in ``loop``). One batch
deletes ten messages per round trip, so several are in flight at once, as many as
``deletes_in_flight`` says (``concurrency.deletes_for``: one per 10 download slots, 1 to
``MAX_DELETE_BATCHES``); each batch is its own: its answer settles its leases and no other's.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from s3sqsd.backoff import visibility_seconds
from s3sqsd.errors import MessageError, QueueError
from s3sqsd.metrics import Metrics
from s3sqsd.redact import redact
from s3sqsd.sqs import BATCH_LIMIT, MAX_DELETE_BATCHES, BatchFailure, BatchResult
from s3sqsd.worker.inbox import Deleted, Inbox
from s3sqsd.worker.lease import Lease
from s3sqsd.worker.ports import QueueLike
from s3sqsd.worker.settings import (
    DLQ_ERROR_TEXT_LIMIT,
    MAX_DELETE_TRIES,
    RECEIPT_GONE,
    WorkerSettings,
)

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")


class Settler:
    """The pending deletes, visibility changes and dead letters, and the settler threads.

    Owned by the loop thread, which calls every method; the leases stay the worker's, so the
    settler gives them back through what it is handed: ``give_back`` (a lease's capacity, once)
    and ``forget`` (the lease is settled; the worker drops it). ``stopped`` says whether
    receiving has stopped: then deletes go at once, a drain does not wait for a batch to fill.
    ``deletes_in_flight`` says how many batches may be out at once now (it follows the
    concurrency; a lower value sends nothing until enough answers are back).
    """

    def __init__(
        self,
        *,
        queue: QueueLike,
        dead_letter_queue: QueueLike | None,
        settings: WorkerSettings,
        metrics: Metrics,
        inbox: Inbox,
        clock: Callable[[], float],
        stopped: Callable[[], bool],
        give_back: Callable[[Lease], None],
        forget: Callable[[Iterable[Lease]], None],
        deletes_in_flight: Callable[[], int],
    ) -> None:
        self._queue = queue
        self._dlq = dead_letter_queue
        self._settings = settings
        self._metrics = metrics
        self._inbox = inbox
        self._clock = clock
        self._stopped = stopped
        self._give_back = give_back
        self._forget = forget
        self._deletes_in_flight = deletes_in_flight
        # Deletes are made here, so the loop never waits a round trip on them; the loop hands
        # batches over and decides on each answer when it comes back. Sized for the most that
        # may ever be out; ``settle`` hands out no more than ``deletes_in_flight`` at a time.
        self._pool = ThreadPoolExecutor(
            max_workers=MAX_DELETE_BATCHES, thread_name_prefix="s3sqsd-settler"
        )
        # The batches out (their answers not yet handled), by the future that answers each.
        self._deleting: dict[Future[BatchResult], list[Lease]] = {}
        self._pending_deletes: list[Lease] = []
        self._pending_visibility: list[tuple[Lease, int]] = []
        self._pending_dlq: list[tuple[Lease, MessageError]] = []

    def update(self, settings: WorkerSettings) -> None:
        """A reload: delays and the delete linger follow the new settings."""
        self._settings = settings

    def in_flight(self) -> int:
        """The delete batches out (their answers not yet handled)."""
        return len(self._deleting)

    def deletes_outstanding(self) -> bool:
        """A delete is out or still pending."""
        return bool(self._deleting or self._pending_deletes)

    def returning(self) -> list[Lease]:
        """The leases whose visibility change (a return or release) is pending."""
        return [lease for lease, _ in self._pending_visibility]

    def settling(self) -> list[Lease]:
        """Every lease whose settlement is under way: pending or in-flight deletes, pending
        visibility changes. The drain leaves them be when it releases the rest."""
        return [
            *self._pending_deletes,
            *(lease for batch in self._deleting.values() for lease in batch),
            *self.returning(),
            *(lease for lease, _ in self._pending_dlq),
        ]

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)

    def dead_letter(self, lease: Lease, exc: MessageError) -> None:
        """A message that cannot succeed: to the dead-letter queue (sent on the next
        ``settle``), or, without one, back to the queue late for its own redrive policy."""
        if self._dlq is not None:
            lease.dead_letter()
            self._pending_dlq.append((lease, exc))
            return
        logger.error(
            "message %s cannot succeed (%s): %s; left for the queue's redrive policy",
            lease.message.message_id,
            exc.reason,
            exc,
            extra={
                "event": "message.left_for_redrive",
                "message_id": lease.message.message_id,
                "reason": exc.reason,
                "error": str(exc),
                "receive_count": lease.message.receive_count,
            },
        )
        self.return_later(lease, self._settings.max_delay_seconds, reason="left_for_redrive")

    def return_later(self, lease: Lease, delay: float, *, reason: str) -> None:
        """Make the message visible again after ``delay`` (a visibility change, never a sleep),
        within SQS's 12 h cap counted from its receive."""
        lease.return_to_queue()
        self._metrics.inc("messages_returned", reason=reason)
        held = self._clock() - lease.received_at
        self._pending_visibility.append((lease, visibility_seconds(delay, held_for_seconds=held)))

    def release(self, leases: Sequence[Lease], *, why: str) -> None:
        """Make messages visible again at once, so another consumer can take them now."""
        for lease in leases:
            logger.info(
                "message %s released (%s)",
                lease.message.message_id,
                why,
                extra={"event": "message.released", "message_id": lease.message.message_id},
            )
            lease.return_to_queue()
            self._metrics.inc("messages_returned", reason="released")
            self._pending_visibility.append((lease, 0))

    def settle(self) -> None:
        if self._pending_dlq:
            letters, self._pending_dlq = self._pending_dlq, []
            for lease, exc in letters:
                self._send_to_dlq(lease, exc)
        while len(self._deleting) < self._deletes_in_flight():
            sending = self._deletes_to_send()
            if not sending:
                break
            batch = self._pending_deletes[:sending]
            del self._pending_deletes[:sending]
            for lease in batch:
                lease.send_delete()
            future = self._pool.submit(self._queue.delete, [lease.message for lease in batch])
            self._deleting[future] = batch  # before its answer can be handled
            future.add_done_callback(lambda done: self._inbox.put(Deleted(answer=done)))
        if self._pending_visibility:
            changes, self._pending_visibility = self._pending_visibility, []
            result = self._queue.change_visibility([(lease.message, s) for lease, s in changes])
            for failure in result.failed:
                logger.warning(
                    "could not return message %s (%s: %s); it comes back when its visibility "
                    "timeout ends",
                    failure.message_id,
                    failure.code,
                    failure.text,
                    extra={
                        "event": "sqs.visibility.failed",
                        "message_id": failure.message_id,
                        "code": failure.code,
                    },
                )
            self._forget([lease for lease, _ in changes])

    def _deletes_to_send(self) -> int:
        """How many of the pending deletes go out in the next batch (a free place for one is
        the caller's to check): a whole batch of ten; fewer once the oldest has waited
        ``delete_linger_seconds`` or receiving has stopped (a drain does not wait); else none."""
        pending = len(self._pending_deletes)
        if pending >= BATCH_LIMIT:
            return BATCH_LIMIT
        if pending and (self._stopped() or self._linger_left() <= 0):
            return pending
        return 0

    def delete_due_in(self) -> float:
        """Seconds until a lingering delete may be sent: its linger over and a batch's place
        free (inf: none pending, or every place taken; an answer wakes the loop then)."""
        if len(self._deleting) >= self._deletes_in_flight():
            return math.inf
        return self._linger_left()

    def _linger_left(self) -> float:
        """Seconds until the oldest pending delete has waited its linger (inf: none pending)."""
        if not self._pending_deletes:
            return math.inf
        oldest = self._pending_deletes[0].delete_queued_at
        return oldest + self._settings.delete_linger_seconds - self._clock()

    def _queue_delete(self, lease: Lease) -> None:
        lease.queue_delete(now=self._clock())
        self._pending_deletes.append(lease)

    def _send_to_dlq(self, lease: Lease, exc: MessageError) -> None:
        if self._dlq is None:  # only queued when a dead-letter queue is configured
            return
        message = lease.message
        try:
            self._dlq.send(
                body=message.body,
                attributes={
                    "s3sqsd.reason": exc.reason,
                    "s3sqsd.error": redact(str(exc))[:DLQ_ERROR_TEXT_LIMIT],
                    "s3sqsd.source_message_id": message.message_id,
                    "s3sqsd.receive_count": str(message.receive_count),
                },
            )
        except QueueError as send_error:
            logger.error(
                "could not dead-letter message %s (%s); it will be retried",
                message.message_id,
                send_error,
                extra={
                    "event": "sqs.dead_letter.failed",
                    "message_id": message.message_id,
                    "error": str(send_error),
                },
            )
            self.return_later(lease, self._settings.base_delay_seconds, reason="retry")
            return
        self._metrics.inc("messages_dead_lettered", reason=exc.reason)
        logger.error(
            "message %s dead-lettered (%s): %s",
            message.message_id,
            exc.reason,
            exc,
            extra={
                "event": "message.dead_lettered",
                "message_id": message.message_id,
                "reason": exc.reason,
                "error": str(exc),
                "receive_count": message.receive_count,
            },
        )
        self.done(lease)  # its delete is queued like any other

    def deleted(self, future: Future[BatchResult]) -> None:
        """A settler thread's answer for the batch ``future`` was handed (loop thread): forget
        what is deleted, queue the retries (a failed entry goes back among the pending deletes,
        the other batches out are not touched); more go out when ``settle`` says so."""
        leases = self._deleting.pop(future)  # an answer for no batch out is a bug: KeyError
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - Queue.delete reports failures; a last defence
            text = f"{type(exc).__name__}: {exc}"
            result = BatchResult(
                failed=tuple(
                    BatchFailure(lease.message.message_id, "Unexpected", text) for lease in leases
                )
            )
        self._after_delete(leases, result)

    def _after_delete(self, leases: list[Lease], result: BatchResult) -> None:
        # By message id, several leases each: a standard queue may deliver a message twice
        # (two receipts, one id), and both copies can finish in one batch.
        by_id: dict[str, list[Lease]] = {}
        for lease in leases:
            by_id.setdefault(lease.message.message_id, []).append(lease)
        done = [by_id[mid].pop() for mid in result.succeeded if by_id.get(mid)]
        self._metrics.inc("messages_deleted", len(done))
        for deleted in done:
            logger.debug(
                "deleted message %s",
                deleted.message.message_id,
                extra={"event": "message.deleted", "message_id": deleted.message.message_id},
            )
        for failure in result.failed:
            copies = by_id.get(failure.message_id)
            if not copies:
                continue
            lease = copies.pop()
            lease.delete_tries += 1
            if failure.code not in RECEIPT_GONE and lease.delete_tries < MAX_DELETE_TRIES:
                self._queue_delete(lease)  # retried with the next batch
                continue
            logger.warning(
                "could not delete message %s (%s: %s); it will be delivered again and the "
                "download repeated (harmless: files are replaced atomically)",
                failure.message_id,
                failure.code,
                failure.text,
                extra={
                    "event": "sqs.delete.failed",
                    "message_id": failure.message_id,
                    "code": failure.code,
                },
            )
            done.append(lease)
        # An entry the answer did not name (it names every entry it was sent): let it go too,
        # rather than hold it in hand for ever; at worst the message comes back once more.
        done.extend(lease for copies in by_id.values() for lease in copies)
        self._forget(done)

    def done(self, lease: Lease) -> None:
        """The message's work is over (downloaded, acknowledged or dead-lettered): queue its
        delete and give its capacity back now, not when the delete returns. Capacity bounds the
        work in hand; a delete is one batched request, and at 20 ms of round trip waiting for it
        kept a third of the slots idle. A delete that fails is retried without capacity."""
        self._queue_delete(lease)
        self._give_back(lease)
