"""The work loop: receive, lease, download, renew, settle, drain. The worker owns every thread.

Design (read this before changing anything here):

- **Five kinds of thread.** *Receiver* threads (one per ``pollers``, 1 by default) do nothing
  but long-poll ReceiveMessage; they share the capacity and one failure state. N
  *download* threads (a bounded pool) run the fetcher: S3 GETs and local disk work, never an SQS
  call. *Part* threads (``parts_executor``, ``large_objects.concurrency`` of them, shared by
  every download) run the ranged GETs of large objects for the download threads waiting on them;
  they never wait on anything but S3, so a download thread waiting on them cannot deadlock.
  The *loop* thread (the caller of ``Worker.run``, the process's main thread) makes every
  decision and every other SQS call (visibility, dead-letter send) but one: the deletes, which
  one *settler* thread makes, a batch at a time, handing each answer back to the loop (at
  20 ms of round trip the loop spent half its time waiting on deletes while received messages
  waited for it). Threads talk only through one inbox queue, so leases and counters have a
  single owner and need no locks.
- **Why the long poll has its own thread.** A 20 s long poll cannot be interrupted. If the loop
  made it, a SIGTERM would wait up to 20 s and watchdog pings would stall. With the poll apart,
  the loop wakes at least once a second: an idle daemon stops within a second or two, and the
  watchdog ping proves the loop that settles messages is alive (it also checks that the receiver
  thread has made progress recently, so a hung receiver stops the pings too).
- **Leases.** Every message in hand has a lease (receipt handle, receive time, visible-until).
  The receiver reserves capacity before each poll, so the daemon never has more messages in work
  or waiting for it than ``workers`` plus a small prefetch (``workers`` more, at most 10): a
  message is never received long before a thread can work on it. A message whose work is over
  gives its capacity back at once; only its (batched) delete is left. Every lease, started or
  still queued, is renewed (ChangeMessageVisibility back to ``visibility_timeout_seconds``) once
  half of it has run out, within SQS's 12 h cap counted from the receive.
- **Settling.** Success: DeleteMessageBatch, partial failures checked and retried. Deletes
  wait to fill a batch of 10, for ``DELETE_LINGER_SECONDS`` at most (the AWS SDK for Java's
  buffered SQS client holds a batch open 200 ms by default the same way): under a backlog every
  call then carries ten, fewer than half the calls (and their CPU, and the SQS bill for them)
  of sending whatever is ready. The wait costs nothing else: the message's capacity is already
  given back, and a crash in it means one more delivery of a file already in place. Once
  receiving stops they go at once. A transient failure: the message is made visible again after
  a capped, jittered exponential delay (a visibility change, never a sleep), and its attempt
  number is SQS's ApproximateReceiveCount, so it survives restarts; after
  ``retry.max_attempts`` it is dead-lettered. A permanent failure: dead-lettered at once. A
  local failure (disk full, read-only): the message stays in hand (its visibility renewed, so
  SQS's receive count does not grow and a queue redrive policy cannot dead-letter it), is tried
  again after a delay, and receiving pauses meanwhile.
- **Dead-lettering.** With ``dead_letter_queue_url``: send the original body there with the
  reason in message attributes, then delete it here. Without: leave it for the queue's own redrive
  policy (returned with the maximum retry delay, so it does not hot-loop until then).
- **Drain.** On stop: no new receives; queued-but-unstarted messages are released at once
  (visibility 0) so another host takes them; downloads in progress may finish within
  ``shutdown_timeout_seconds`` while leases keep being renewed and the watchdog fed. Past the
  deadline, downloads are cancelled (their temp files removed) and their messages released.
"""

from __future__ import annotations

import functools
import logging
import math
import queue as queue_module
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import cast

from s3sqsd.backoff import retry_delay, visibility_seconds
from s3sqsd.errors import (
    AttemptsExhaustedError,
    DownloadCancelledError,
    FetchError,
    LocalError,
    MessageError,
    QueueError,
    TransientError,
)
from s3sqsd.events import object_url
from s3sqsd.metrics import Metrics
from s3sqsd.notify import Notifier
from s3sqsd.sqs import BatchResult, Message
from s3sqsd.worker.job import DownloadJob
from s3sqsd.worker.lease import Lease, Outcome
from s3sqsd.worker.plan import (
    FetcherLike,
    Place,
    Placement,
    plan_message,
)
from s3sqsd.worker.ports import QueueLike
from s3sqsd.worker.receiver import Receivers
from s3sqsd.worker.settings import (
    ABANDON_GRACE_SECONDS,
    MAX_LOOP_SLEEP_SECONDS,
    RECEIPT_GONE,
    SWEEP_INTERVAL_SECONDS,
    WorkerSettings,
)
from s3sqsd.worker.settle import Settler

# The logger keeps the name it had when the worker was one module: it is in every JSON log line
# ("logger"), and operators filter on it.
logger = logging.getLogger("s3sqsd.worker")


class Worker:
    """Runs the loop until ``stop`` is set and the drain is over."""

    def __init__(
        self,
        *,
        receive_queue: QueueLike,
        control_queue: QueueLike,
        dead_letter_queue: QueueLike | None,
        fetcher: FetcherLike,
        settings: WorkerSettings,
        notifier: Notifier,
        reload: Callable[[], WorkerSettings | None] | None = None,
        place: Place | None = None,
        metrics: Metrics | None = None,
        queue_depth_every_seconds: float | None = None,
        parts: ThreadPoolExecutor | None = None,
        pollers: int = 1,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._queue = control_queue
        self._dlq = dead_letter_queue
        self._fetcher = fetcher
        default = Placement(fetcher=fetcher)
        self._place: Place = place or (lambda _bucket, _key: default)
        self._settings = settings
        self._notifier = notifier
        self._reload_hook = reload
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._inbox: queue_module.SimpleQueue[tuple[object, ...]] = queue_module.SimpleQueue()
        self._leases: dict[str, Lease] = {}
        self._pool = ThreadPoolExecutor(
            max_workers=settings.workers, thread_name_prefix="s3sqsd-download"
        )
        self._old_pools: list[ThreadPoolExecutor] = []
        self._parts = parts
        self._cancel = threading.Event()
        self._reload_requested = threading.Event()
        self._receiving = Receivers(
            queue=receive_queue,
            dead_letter_queue=dead_letter_queue,
            settings=settings,
            inbox=self._inbox,
            pollers=pollers,
            clock=clock,
        )
        self._local_failures = 0
        self._last_ping = 0.0
        self._last_status_at = 0.0
        self._sweep_at = 0.0  # next walk of the leases for renewals and local retries
        self.metrics = metrics or Metrics()
        # Queue depth costs an API call: read it only when metrics are served, at most this often.
        self._queue_depth_every = queue_depth_every_seconds
        self._queue_depth_at = -math.inf
        self._settler = Settler(
            queue=control_queue,
            dead_letter_queue=dead_letter_queue,
            settings=settings,
            metrics=self.metrics,
            inbox=self._inbox,
            clock=clock,
            stopped=self._receiving.stopped,
            give_back=self._receiving.give_back,
            forget=self._forget,
        )

    # ---- called from signal handlers (must stay trivial) ------------------------------------

    def wake(self) -> None:
        """Wake the loop now (SimpleQueue.put is safe to call from a signal handler)."""
        self._inbox.put(("wake",))

    def request_reload(self) -> None:
        self._reload_requested.set()
        self.wake()

    # ---- the loop ----------------------------------------------------------------------------

    def run(self, *, stop: threading.Event) -> None:
        """Receive and work until ``stop`` is set; then drain and return."""
        self._receiving.start()
        self._notifier.ready(self._status_text())
        logger.info(
            "s3sqsd is running: queue %s, %d download threads",
            self._queue.url,
            self._settings.workers,
            extra={"event": "daemon.ready", "queue_url": self._queue.url},
        )
        deadline: float | None = None
        while True:
            self._wait_and_dispatch(deadline)
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self._reload()
            self._settler.settle()
            now = self._clock()
            if now >= self._sweep_at:
                # Both walk every lease: under load the loop passes hundreds of times a
                # second, and a tenth of a second is far inside any renewal or retry delay.
                self._sweep_at = now + SWEEP_INTERVAL_SECONDS
                self._renew(now)
                if deadline is None:
                    self._retry_local(now)
            self._heartbeat(now)
            if stop.is_set() and deadline is None:
                deadline = now + self._settings.shutdown_timeout_seconds
                self._begin_drain()
                self._settler.settle()
            if deadline is not None:
                if not self._leases:
                    break
                if now >= deadline:
                    self._abandon()
                    break
        self._shutdown_pools()

    def busy_threads(self) -> int:
        """Download threads still running a task (stuck in a socket read, say), and the
        settler thread if its delete has not answered."""
        downloads = sum(
            1 for lease in self._leases.values() if lease.future and lease.future.running()
        )
        return downloads + (1 if self._settler.busy() else 0)

    # ---- dispatch (loop thread) --------------------------------------------------------------

    def _wait_and_dispatch(self, deadline: float | None) -> None:
        timeout = MAX_LOOP_SLEEP_SECONDS
        if self._notifier.watchdog_interval:
            timeout = min(timeout, self._notifier.watchdog_interval / 4)
        if not self._settler.busy():  # wake when a lingering delete is due
            timeout = max(0.0, min(timeout, self._settler.delete_due_in()))
        try:
            item = self._inbox.get(timeout=timeout)
        except queue_module.Empty:
            return
        while True:
            self._dispatch(item, draining=deadline is not None)
            try:
                item = self._inbox.get_nowait()
            except queue_module.Empty:
                return

    def _dispatch(self, item: tuple[object, ...], *, draining: bool) -> None:
        kind = item[0]
        if kind == "received":
            messages = cast(list[Message], item[1])
            received_at = cast(float, item[2])
            for message in messages:
                self._accept(message, received_at=received_at, draining=draining)
        elif kind == "done":
            self._finished(cast(Lease, item[1]))
        elif kind == "deleted":
            self._settler.deleted(cast(Future[BatchResult], item[1]))
        elif kind == "receive_error":
            self.metrics.inc("receive_errors")
            self.metrics.last_error = str(item[1])[:200]

    def _accept(self, message: Message, *, received_at: float, draining: bool) -> None:
        settings = self._settings
        lease = Lease(
            message=message,
            received_at=received_at,
            visible_until=received_at + settings.visibility_timeout_seconds,
        )
        self._leases[message.receipt_handle] = lease
        self.metrics.inc("messages_received")
        logger.debug(
            "received message %s (receive count %d)",
            message.message_id,
            message.receive_count,
            extra={
                "event": "message.received",
                "message_id": message.message_id,
                "receive_count": message.receive_count,
            },
        )
        if draining:
            self._settler.release([lease], why="received while stopping")
            return
        plan = plan_message(body=message.body, settings=settings, place=self._place)
        if plan.test_event is not None:
            logger.info(
                "s3:TestEvent for bucket %s acknowledged",
                plan.test_event.bucket,
                extra={
                    "event": "message.test_event",
                    "bucket": plan.test_event.bucket,
                    "message_id": message.message_id,
                },
            )
            self._settler.done(lease)
            return
        for record in plan.ignored:
            self.metrics.inc("records_ignored")
            logger.info(
                "%s for %s acknowledged; nothing to download, local files kept",
                record.event_name,
                object_url(record.bucket, record.key),
                extra={
                    "event": "record.ignored",
                    "bucket": record.bucket,
                    "key": record.key,
                    "event_name": record.event_name,
                    "message_id": message.message_id,
                },
            )
        for obj in plan.unrouted:
            self.metrics.inc("objects_skipped", outcome="unrouted")
            logger.info(
                "%s: no route takes it; acknowledged (unrouted: acknowledge)",
                object_url(obj.bucket, obj.key),
                extra={
                    "event": "object.unrouted",
                    "bucket": obj.bucket,
                    "key": obj.key,
                    "message_id": message.message_id,
                },
            )
        if plan.error is not None:
            self._fail(lease, plan.error)
            return
        if not plan.items:
            self._settler.done(lease)
            return
        lease.items = plan.items
        self._submit(lease)

    def _submit(self, lease: Lease) -> None:
        job = DownloadJob(
            message=lease.message, items=lease.items, metrics=self.metrics, cancel=self._cancel
        )
        future = self._pool.submit(job.run)
        lease.future = future
        future.add_done_callback(functools.partial(self._post_done, lease))

    def _retry_local(self, now: float) -> None:
        """Try again the messages kept in hand after a local failure, once their delay is up."""
        for lease in list(self._leases.values()):
            if lease.retry_at is None:
                continue
            if lease.lost:
                # SQS no longer knows this receipt (the message went back to the queue): let go
                # of it, and of the capacity it held; the next delivery brings it back.
                lease.retry_at = None
                self._forget([lease])
            elif now >= lease.retry_at:
                lease.retry_at = None
                self._submit(lease)

    def _post_done(self, lease: Lease, future: Future[Outcome]) -> None:
        """Runs in the download thread (or here, if already done): hand the lease back.

        A success gives its capacity back here, before the loop thread (perhaps in the middle
        of a delete call, a round trip) gets to it: the receiver may poll for the next message
        at once. A failure keeps it until the loop decides (a local failure keeps the message).
        """
        if not future.cancelled() and future.exception() is None and future.result().error is None:
            self._receiving.give_back(lease)
        self._inbox.put(("done", lease))

    # ---- outcomes (loop thread) --------------------------------------------------------------

    def _finished(self, lease: Lease) -> None:
        if self._leases.get(lease.message.receipt_handle) is not lease:
            return  # released or abandoned already
        future = lease.future
        if future is None or future.cancelled():
            return
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - DownloadJob.run catches everything; a last defence
            outcome = Outcome(error=FetchError(f"download task failed: {exc!r}"))
        if outcome.error is None:
            self._local_failures = 0
            self._settler.done(lease)
        elif isinstance(outcome.error, DownloadCancelledError):
            # The daemon's own stop cut the work short (the drain deadline): not the message's
            # failure, so no retry is logged or counted; another consumer may take it now.
            self._settler.release([lease], why="stopped by the shutdown timeout")
        else:
            self._fail(lease, outcome.error)

    def _fail(self, lease: Lease, exc: MessageError) -> None:
        settings = self._settings
        message = lease.message
        self.metrics.inc("messages_failed", reason=exc.reason)
        self.metrics.last_error = str(exc)[:200]
        if isinstance(exc, LocalError):
            self._local_failures += 1
            delay = retry_delay(
                self._local_failures,
                base_seconds=settings.base_delay_seconds,
                max_seconds=settings.max_delay_seconds,
                rng=self._rng,
            )
            now = self._clock()
            self._receiving.pause_until(now + delay)
            logger.error(
                "%s; the message stays in hand and is tried again in %.0f s, receiving paused "
                "meanwhile (not counted as an attempt)",
                exc,
                delay,
                extra={
                    "event": "local.storage_error",
                    "message_id": message.message_id,
                    "error": str(exc),
                    "reason": exc.reason,
                    "delay_seconds": round(delay, 1),
                },
            )
            # Kept in hand (its visibility renewed) rather than returned: every new receive
            # would raise SQS's ApproximateReceiveCount, and a queue redrive policy would then
            # dead-letter messages for a full disk, which is not their fault.
            lease.future = None
            lease.retry_at = now + delay
        elif isinstance(exc, TransientError):
            if message.receive_count >= settings.max_attempts:
                self._settler.dead_letter(
                    lease,
                    AttemptsExhaustedError(
                        f"{exc} (attempt {message.receive_count} of {settings.max_attempts})"
                    ),
                )
                return
            delay = retry_delay(
                message.receive_count,
                base_seconds=settings.base_delay_seconds,
                max_seconds=settings.max_delay_seconds,
                rng=self._rng,
            )
            logger.warning(
                "%s; retrying in %.0f s (attempt %d of %d)",
                exc,
                delay,
                message.receive_count,
                settings.max_attempts,
                extra={
                    "event": "message.retry",
                    "message_id": message.message_id,
                    "error": str(exc),
                    "reason": exc.reason,
                    "attempt": message.receive_count,
                    "receive_count": message.receive_count,
                    "delay_seconds": round(delay, 1),
                },
            )
            self._settler.return_later(lease, delay, reason="retry")
        else:
            self._settler.dead_letter(lease, exc)

    def _forget(self, leases: Sequence[Lease]) -> None:
        for lease in leases:
            if self._leases.pop(lease.message.receipt_handle, None) is not None:
                self._receiving.give_back(lease)

    # ---- renewal and health (loop thread) ----------------------------------------------------

    def _renew(self, now: float) -> None:
        timeout = self._settings.visibility_timeout_seconds
        due: list[tuple[Lease, int]] = []
        for lease in self._leases.values():
            if lease.lost or lease.deleting or lease.visible_until - now > timeout / 2:
                continue
            seconds = visibility_seconds(timeout, held_for_seconds=now - lease.received_at)
            if seconds <= max(0.0, lease.visible_until - now):
                if not lease.cap_warned:
                    lease.cap_warned = True
                    logger.warning(
                        "message %s reaches SQS's 12 h visibility cap; it will be delivered "
                        "again if its download does not finish first",
                        lease.message.message_id,
                        extra={
                            "event": "lease.cap_reached",
                            "message_id": lease.message.message_id,
                        },
                    )
                continue
            due.append((lease, seconds))
        if not due:
            return
        result = self._queue.change_visibility([(lease.message, s) for lease, s in due])
        ok = set(result.succeeded)
        for lease, seconds in due:
            if lease.message.message_id in ok:
                lease.visible_until = now + seconds
        self.metrics.inc("visibility_extensions", len(ok))
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
            if failure.code in RECEIPT_GONE:
                for lease, _ in due:
                    if lease.message.message_id == failure.message_id:
                        lease.lost = True

    def _heartbeat(self, now: float) -> None:
        interval = self._notifier.watchdog_interval
        if interval and now - self._last_ping >= interval / 4 and self._receiving.healthy(now):
            self._notifier.watchdog()
            self._last_ping = now
        if now - self._last_status_at >= 1.0:
            self._last_status_at = now
            self.metrics.set("messages_in_hand", len(self._leases))
            self._notifier.status(self._status_text())
        if self._queue_depth_every and now - self._queue_depth_at >= self._queue_depth_every:
            self._queue_depth_at = now
            self._read_queue_depth()

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
                self.metrics.set("queue_messages", float(value), state=state)

    def _status_text(self) -> str:
        m = self.metrics
        text = (
            f"in flight {len(self._leases)}, downloaded {m.get('objects_downloaded'):.0f}, "
            f"failed {m.get('messages_failed'):.0f}, "
            f"dead-lettered {m.get('messages_dead_lettered'):.0f}"
        )
        if m.last_error:
            text += f"; last error: {m.last_error[:120]}"
        return text

    # ---- reload and shutdown (loop thread) ---------------------------------------------------

    def _reload(self) -> None:
        if self._reload_hook is None:
            return
        new = self._reload_hook()
        if new is None:
            return
        old = self._settings
        self._settings = new
        if new.workers != old.workers:
            self._old_pools.append(self._pool)
            self._pool.shutdown(wait=False)
            self._pool = ThreadPoolExecutor(
                max_workers=new.workers, thread_name_prefix="s3sqsd-download"
            )
        self._receiving.update(new)
        self._settler.update(new)

    def _begin_drain(self) -> None:
        self._receiving.stop()
        unstarted = [
            lease
            for lease in self._leases.values()
            if lease.retry_at is not None or (lease.future is not None and lease.future.cancel())
        ]
        for lease in unstarted:
            lease.retry_at = None
        self._settler.release(unstarted, why="stopping before its download started")
        in_progress = len(self._leases) - len(unstarted)
        text = f"stopping: {in_progress} downloads finishing"
        self._notifier.stopping(text)
        # The configured drain may be longer than the unit's TimeoutStopSec (an operator raised
        # shutdown_timeout_seconds): ask systemd for the time the config grants, plus a margin.
        self._notifier.extend_timeout(self._settings.shutdown_timeout_seconds + 15)
        logger.info(
            "stopping: %d downloads in progress may finish within %.0f s; %d queued messages "
            "released",
            in_progress,
            self._settings.shutdown_timeout_seconds,
            len(unstarted),
            extra={"event": "daemon.stopping"},
        )

    def _abandon(self) -> None:
        """The drain deadline passed: cancel downloads, release their messages."""
        self._cancel.set()
        started = {id(lease) for lease in self._leases.values() if lease.future is not None}
        running = [lease.future for lease in self._leases.values() if lease.future is not None]
        wait_futures(running, timeout=ABANDON_GRACE_SECONDS)
        self._wait_and_dispatch(deadline=0.0)  # a cancelled download releases its message
        returned = sum(1 for lease in self._settler.returning() if id(lease) in started)
        settling = {id(lease) for lease in self._settler.settling()}
        leftover = [lease for lease in self._leases.values() if id(lease) not in settling]
        self._settler.release(leftover, why="shutdown timeout reached")
        cancelled = returned + len(leftover)
        self._settler.settle()
        self._finish_deletes(timeout=ABANDON_GRACE_SECONDS)
        if cancelled > 0:
            logger.warning(
                "shutdown_timeout_seconds reached: %d downloads cancelled and their messages "
                "released",
                cancelled,
                extra={"event": "daemon.drain_timeout"},
            )

    def _finish_deletes(self, *, timeout: float) -> None:
        """Let the delete in flight answer and send the ones still pending, for up to
        ``timeout``: a finished message whose delete is dropped would be downloaded again."""
        give_up = self._clock() + timeout
        while self._settler.deletes_outstanding() and self._clock() < give_up:
            self._wait_and_dispatch(deadline=0.0)
            self._settler.settle()

    def _shutdown_pools(self) -> None:
        self._receiving.stop()
        for pool in [*self._old_pools, self._pool]:
            pool.shutdown(wait=False, cancel_futures=True)
        if self._parts is not None:
            self._parts.shutdown(wait=False, cancel_futures=True)
        self._settler.shutdown()  # idle by now, or given its grace by _abandon
