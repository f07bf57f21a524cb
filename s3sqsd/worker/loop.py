"""The work loop: receive, lease, download, renew, settle, drain. The worker owns every thread.

Design (read this before changing anything here):

- **Five kinds of thread.** *Receiver* threads (one per ``pollers``, 1 by default) do nothing
  but long-poll ReceiveMessage; they share the capacity and one failure state. *Download*
  threads (``slots``: a lane for small objects, whose cap is ``workers`` or the ``workers:
  auto`` target, and one for large objects) run the fetcher: S3 GETs and local disk work, never
  an SQS call. The ``tuning.Tuner`` sizes the lanes, the capacity and the pollers
  (``concurrency`` has the rules). *Part* threads (``parts_executor``,
  ``large_objects.concurrency`` of them, shared by every download) run the ranged GETs of large
  objects for the download threads waiting on them; they never wait on anything but S3, so a
  download thread waiting on them cannot deadlock.
  The *loop* thread (the caller of ``Worker.run``, the process's main thread) makes every
  decision and every other SQS call (visibility, dead-letter send) but one: the deletes, which
  the *settler* threads make, handing each answer back to the loop (at 20 ms of round trip the
  loop spent half its time waiting on deletes while received messages waited for it). A batch
  deletes ten messages per round trip, so one per 10 download slots is in flight at once
  (``concurrency.deletes_for``, 1 to 8): with one at a time, at 100 ms the deletes fell behind
  the downloads (docs/performance.md, "Concurrency at real RTT"). Threads talk only through
  one inbox queue of typed events (``inbox``), so leases and counters have a single owner and
  need no locks; the one exception is ``lease.Capacity``, under its own condition.
- **Why the long poll has its own thread.** A 20 s long poll cannot be interrupted. If the loop
  made it, a SIGTERM would wait up to 20 s and watchdog pings would stall. With the poll apart,
  the loop wakes at least once a second: an idle daemon stops within a second or two, and the
  watchdog ping proves the loop that settles messages is alive (it also checks that the receiver
  thread has made progress recently, so a hung receiver stops the pings too).
- **Leases.** Every message in hand has a lease (receipt handle, receive time, visible-until).
  The receiver reserves capacity before each poll, so the daemon never has more messages in work
  or waiting for it than ``workers`` plus a small prefetch (``workers`` more, at most 10 per
  poller), and a place lent to each large message in its lane: a message is never received
  long before a thread can work on it. A message whose work is over
  gives its capacity back at once; only its (batched) delete is left. Every lease, started or
  still queued, is renewed (ChangeMessageVisibility back to ``visibility_timeout_seconds``) once
  half of it has run out, within SQS's 12 h cap counted from the receive (``renewal``). A lease
  moves through the stages listed in ``lease.Stage`` by named moves only; a move the table does
  not allow is a bug and raises.
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
  again after a delay, and receiving pauses meanwhile. A download that ``min_free_bytes`` refuses
  is kept the same way; receiving is held while any message waits for space (``spacewait``).
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
import queue as queue_module
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures

from s3sqsd.errors import DownloadCancelledError, FetchError, MessageError
from s3sqsd.limits import PartShare
from s3sqsd.metrics import Metrics
from s3sqsd.notify import Notifier
from s3sqsd.routing import Placement
from s3sqsd.sqs import Message
from s3sqsd.worker.admission import admit
from s3sqsd.worker.concurrency import deletes_for
from s3sqsd.worker.failures import Action, FailurePolicy
from s3sqsd.worker.heartbeat import Heartbeat
from s3sqsd.worker.inbox import (
    WAKE,
    Deleted,
    Finished,
    Inbox,
    InboxEvent,
    Received,
    ReceiveFailed,
)
from s3sqsd.worker.lease import Lease, Leases, Outcome, Stage
from s3sqsd.worker.plan import FetcherLike, Place
from s3sqsd.worker.ports import QueueLike
from s3sqsd.worker.receiver import Receivers
from s3sqsd.worker.renewal import Renewer
from s3sqsd.worker.settings import (
    ABANDON_GRACE_SECONDS,
    MAX_LOOP_SLEEP_SECONDS,
    SWEEP_INTERVAL_SECONDS,
    WorkerSettings,
)
from s3sqsd.worker.settle import Settler
from s3sqsd.worker.spacewait import SpaceWait
from s3sqsd.worker.tuning import Tuner

# The logger keeps the name it had when the worker was one module: it is in every JSON log line
# ("logger"), and operators filter on it.
logger = logging.getLogger("s3sqsd.worker")


class Worker:
    """Runs the loop until ``stop`` is set and the drain is over. Its own state: the leases in
    hand; it owns and starts and stops the other thread kinds (``Receivers``, ``Downloads``,
    ``Settler``) and loop-thread helpers (``Renewer``, ``FailurePolicy``, ``Heartbeat``,
    ``Tuner``: the concurrency, and the ``Capacity`` and ``Downloads`` it sizes)."""

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
        pollers: int = 1,
        share: PartShare | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._queue = control_queue
        default = Placement(folder=fetcher)
        self._place: Place = place or (lambda _bucket, _key: default)
        self._settings = settings
        self._notifier = notifier
        self._reload_hook = reload
        self._clock = clock
        self._inbox: Inbox = queue_module.SimpleQueue()
        self._reload_requested = threading.Event()
        self._sweep_at = 0.0  # next walk of the leases for local retries
        self.metrics = metrics or Metrics()
        self._tuner = Tuner(
            settings=settings, pollers=pollers, metrics=self.metrics, clock=clock, share=share
        )
        self._capacity, self._downloads = self._tuner.capacity, self._tuner.downloads
        self._leases = Leases(capacity=self._capacity)
        self._receiving = Receivers(
            queue=receive_queue,
            dead_letter_queue=dead_letter_queue,
            settings=settings,
            inbox=self._inbox,
            capacity=self._capacity,
            pollers=pollers,
            clock=clock,
        )
        self._settler = Settler(
            queue=control_queue,
            dead_letter_queue=dead_letter_queue,
            settings=settings,
            metrics=self.metrics,
            inbox=self._inbox,
            clock=clock,
            stopped=self._receiving.stopped,
            give_back=self._capacity.give_back,
            forget=self._leases.forget,
            deletes_in_flight=lambda: deletes_for(self._tuner.target),
        )
        self._renewer = Renewer(queue=control_queue, metrics=self.metrics, settings=settings)
        self._failures = FailurePolicy(
            settings=settings,
            metrics=self.metrics,
            rng=rng or random.Random(),  # noqa: S311 - jitter, not cryptography
        )
        self._space = SpaceWait(metrics=self.metrics, hold=self._receiving.hold, clock=clock)
        self._heartbeat = Heartbeat(
            queue=control_queue,
            notifier=notifier,
            metrics=self.metrics,
            in_hand=lambda: len(self._leases),
            receivers_healthy=self._receiving.healthy,
            queue_depth_every_seconds=queue_depth_every_seconds,
            paused=self._space.status,
        )

    # ---- called from signal handlers (must stay trivial) ------------------------------------

    def wake(self) -> None:
        """Wake the loop now (SimpleQueue.put is safe to call from a signal handler)."""
        self._inbox.put(WAKE)

    def request_reload(self) -> None:
        self._reload_requested.set()
        self.wake()

    # ---- the loop ----------------------------------------------------------------------------

    def run(self, *, stop: threading.Event) -> None:
        """Receive and work until ``stop`` is set; then drain and return."""
        self._tuner.start(self._receiving)  # the receivers, polling for the tuner's target
        self._heartbeat.ready(workers="auto" if self._settings.auto else self._tuner.target)
        deadline: float | None = None
        while True:
            self._wait_and_dispatch(deadline)
            if self._reload_requested.is_set():
                self._reload_requested.clear()
                self._reload()
            self._settler.settle()
            now = self._clock()
            if now >= self._sweep_at:
                # A tenth of a second is far inside any renewal or retry delay, and under load
                # the loop passes hundreds of times a second.
                self._sweep_at = now + SWEEP_INTERVAL_SECONDS
                # SQS no longer knows these receipts (the messages went back to the queue): a
                # kept one is let go now, with its capacity; work in progress finishes, and its
                # delete then fails the same way.
                self._leases.forget(self._leases.kept(self._renewer.renew(now)))
                self._space.sweep(self._leases.holds)
                if deadline is None:  # messages kept after a local failure, once their time comes
                    for lease in self._leases.in_stage(Stage.KEPT):
                        if now >= lease.retry_at:
                            self._submit(lease)
            self._heartbeat.beat(now)
            self._tuner.tick(now)
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
        self._shutdown()

    def idle(self) -> bool:
        """Nothing in hand (any thread: one read of a length). The reconcile pass waits for it."""
        return len(self._leases) == 0

    def busy_threads(self) -> int:
        """Download threads still running a task (a stuck read, say), and delete batches out."""
        return self._downloads.running() + self._settler.in_flight()

    # ---- dispatch (loop thread) --------------------------------------------------------------

    def _wait_and_dispatch(self, deadline: float | None) -> None:
        timeout = MAX_LOOP_SLEEP_SECONDS
        if self._notifier.watchdog_interval:
            timeout = min(timeout, self._notifier.watchdog_interval / 4)
        # Wake when a lingering delete is due (inf while every batch's place is taken).
        timeout = max(0.0, min(timeout, self._settler.delete_due_in()))
        try:
            event = self._inbox.get(timeout=timeout)
        except queue_module.Empty:
            return
        while True:
            self._dispatch(event, draining=deadline is not None)
            try:
                event = self._inbox.get_nowait()
            except queue_module.Empty:
                return

    def _dispatch(self, event: InboxEvent, *, draining: bool) -> None:
        match event:
            case Received(messages=messages, received_at=at, visibility_timeout_seconds=granted):
                for message in messages:
                    self._accept(message, received_at=at, granted=granted, draining=draining)
            case Finished(lease=lease):
                self._finished(lease)
            case Deleted(answer=answer):
                self._settler.deleted(answer)
            case ReceiveFailed(error=error):
                self.metrics.inc("receive_errors")
                self.metrics.last_error = error[:200]

    def _accept(
        self, message: Message, *, received_at: float, granted: int, draining: bool
    ) -> None:
        settings = self._settings
        lease = Lease(message=message, received_at=received_at, visible_until=received_at + granted)
        self._leases.add(lease)
        self._renewer.track(lease, granted=granted)
        self.metrics.inc("messages_received")
        _log_received(message)
        if draining:
            self._settler.release([lease], why="received while stopping")
            return
        plan = admit(message, settings=settings, place=self._place, metrics=self.metrics)
        if plan.error is not None:
            self._fail(lease, plan.error)
        elif plan.test_event is not None or not plan.items:
            self._settler.done(lease)
        else:
            lease.items = plan.items
            self._submit(lease)

    def _submit(self, lease: Lease) -> None:
        done, lane = functools.partial(self._post_done, lease), self._tuner.lane(lease)
        lease.start(self._downloads.submit(lease.message, lease.items, lane=lane, when_done=done))

    def _post_done(self, lease: Lease, future: Future[Outcome]) -> None:
        """Runs in the download thread (or here, if already done): hand the lease back.

        A success gives its capacity back here, before the loop thread (perhaps in the middle
        of a delete call, a round trip) gets to it: the receiver may poll for the next message
        at once. A failure keeps it until the loop decides (a local failure keeps the message).
        """
        if not future.cancelled() and future.exception() is None and future.result().error is None:
            self._capacity.give_back(lease)
        self._inbox.put(Finished(lease=lease))

    # ---- outcomes (loop thread) --------------------------------------------------------------

    def _finished(self, lease: Lease) -> None:
        if not self._leases.holds(lease):
            return  # released or abandoned already
        future = lease.future
        if future is None or future.cancelled() or lease.stage is not Stage.WORKING:
            return
        try:
            outcome = future.result()
        except Exception as exc:  # noqa: BLE001 - DownloadJob.run catches everything; a last defence
            outcome = Outcome(error=FetchError(f"download task failed: {exc!r}"))
        self._space.finished(lease, outcome.error)
        if outcome.error is None:
            self._failures.succeeded()
            self._settler.done(lease)
        elif isinstance(outcome.error, DownloadCancelledError):
            # The daemon's own stop cut the work short (the drain deadline): not the message's
            # failure, so no retry is logged or counted; another consumer may take it now.
            self._settler.release([lease], why="stopped by the shutdown timeout")
        else:
            self._fail(lease, outcome.error)

    def _fail(self, lease: Lease, exc: MessageError) -> None:
        verdict = self._failures.decide(lease.message, exc)
        if verdict.action is Action.RETRY:
            self._settler.return_later(lease, verdict.delay, reason="retry")
        elif verdict.action is Action.DEAD_LETTER:
            self._settler.dead_letter(lease, verdict.error)
        elif self._receiving.stopped():  # kept, but draining: another host may take it now
            self._settler.release([lease], why="local failure while stopping")
        else:
            lease.keep(until=self._clock() + verdict.delay)
            self._receiving.pause_until(lease.retry_at)
            self._space.kept(lease, verdict.error)

    # ---- reload and shutdown (loop thread) ---------------------------------------------------

    def _reload(self) -> None:
        new = self._reload_hook() if self._reload_hook is not None else None
        if new is None:
            return
        self._settings = new
        parts = (self._tuner, self._receiving, self._settler, self._renewer, self._failures)
        for part in parts:
            part.update(new)

    def _begin_drain(self) -> None:
        self._receiving.stop()
        working = self._leases.in_stage(Stage.WORKING)
        unstarted = self._leases.in_stage(Stage.KEPT) + [
            lease for lease in working if lease.future is not None and lease.future.cancel()
        ]
        self._settler.release(unstarted, why="stopping before its download started")
        in_progress = len(self._leases) - len(unstarted)
        self._heartbeat.stopping(
            in_progress=in_progress,
            released=len(unstarted),
            timeout_seconds=self._settings.shutdown_timeout_seconds,
        )

    def _abandon(self) -> None:
        """The drain deadline passed: cancel downloads, release their messages."""
        self._downloads.cancel.set()
        running = {id(lease): lease.future for lease in self._leases if lease.future is not None}
        wait_futures(running.values(), timeout=ABANDON_GRACE_SECONDS)
        self._wait_and_dispatch(deadline=0.0)  # a cancelled download releases its message
        returned = sum(1 for lease in self._settler.returning() if id(lease) in running)
        # Send what those outcomes queued (a dead letter among them) before choosing what to
        # release: a lease whose dead letter is still pending must not be released as well.
        self._settler.settle()
        settling = {id(lease) for lease in self._settler.settling()}
        leftover = [lease for lease in self._leases if id(lease) not in settling]
        self._settler.release(leftover, why="shutdown timeout reached")
        cancelled = returned + len(leftover)
        self._settler.settle()
        self._finish_deletes(timeout=ABANDON_GRACE_SECONDS)
        self._heartbeat.drain_timed_out(cancelled=cancelled)

    def _finish_deletes(self, *, timeout: float) -> None:
        """Let the deletes out and pending finish (else their messages come back) in time."""
        give_up = self._clock() + timeout
        while self._settler.deletes_outstanding() and self._clock() < give_up:
            self._wait_and_dispatch(deadline=0.0)
            self._settler.settle()

    def _shutdown(self) -> None:
        self._receiving.stop()
        self._downloads.shutdown()
        self._settler.shutdown()  # idle by now, or given its grace by _abandon


def _log_received(message: Message) -> None:
    """The debug line of one received message (kept out of the loop's class for its size)."""
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
