"""Receiving: the receiver threads long-poll ReceiveMessage and hand what they get to the loop.

A 20 s long poll cannot be interrupted, so it has threads of its own and the loop never waits on
it (see the design notes in ``loop``). Each poll first reserves capacity, so the daemon never
holds more messages than its download threads plus a small prefetch.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from s3sqsd.backoff import ReceiveBackoff
from s3sqsd.errors import QueueError
from s3sqsd.sqs import error_code
from s3sqsd.worker.inbox import Inbox, Received, ReceiveFailed
from s3sqsd.worker.lease import Capacity
from s3sqsd.worker.ports import QueueLike
from s3sqsd.worker.settings import (
    HOLD_POLL_SECONDS,
    MAX_LOOP_SLEEP_SECONDS,
    WorkerSettings,
    least_for,
)

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")


def _failure_state(exc: BaseException) -> str:
    """What kind of receive failure this is, for logging once per change of state.

    Every way of not reaching the endpoint is one state ("unreachable"): an outage starts with
    the open long poll cut (ConnectionClosedError), then connections are refused
    (EndpointConnectionError), then may time out; that is one thing to tell the operator, not
    three. Errors the service answered with keep their AWS code (AccessDenied,
    QueueDoesNotExist...), each a state of its own.
    """
    cause = exc.__cause__ or exc
    if isinstance(cause, (HTTPClientError, BotoConnectionError)):
        return "unreachable"
    return error_code(cause)


class _ReceiveState:
    """Whether receiving fails, shared by the receiver threads: a change of state is logged
    once however many pollers see it, and the recovery once, with the attempts of them all."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failing: str | None = None
        self._since = 0.0
        self._failures = 0

    def failed(self, state: str) -> bool:
        """Count a failed receive; True when ``state`` is new (log it)."""
        with self._lock:
            self._failures += 1
            if state == self._failing:
                return False
            if self._failing is None:
                self._since = self._clock()
            self._failing = state
            return True

    def succeeded(self) -> tuple[int, float] | None:
        """A receive worked; (failed attempts, seconds) when it ends an outage (log it)."""
        with self._lock:
            if self._failing is None:
                return None
            outage = (self._failures, self._clock() - self._since)
            self._failing, self._failures = None, 0
            return outage


class Receivers:
    """The receiver threads (``pollers`` of them), which reserve ``Capacity`` before a poll.

    Owns the receive failure state and the pause a local failure asks for. The loop starts and
    stops them, swaps their settings on a reload, and asks whether they are healthy before it
    feeds the watchdog.
    """

    def __init__(
        self,
        *,
        queue: QueueLike,
        dead_letter_queue: QueueLike | None,
        settings: WorkerSettings,
        inbox: Inbox,
        capacity: Capacity,
        pollers: int,
        clock: Callable[[], float],
    ) -> None:
        if pollers < 1:
            raise ValueError("pollers must be at least 1")
        self._queue = queue
        self._dlq = dead_letter_queue
        self._settings = settings
        self._inbox = inbox
        self._clock = clock
        self._stop = threading.Event()
        self._capacity = capacity
        self._paused_until = 0.0
        self._held = False  # messages wait for disk space (spacewait.py)
        self._receive_state = _ReceiveState(clock)
        self._alive: list[float] = []  # each receiver's last sign of progress
        self._threads: list[threading.Thread] = []
        self._active = pollers  # how many poll; the others (workers: auto) wait their turn
        self._target = settings.workers  # the small lane's slots: the prefetch is the rest
        self._started = False
        self._ahead = False  # the last receive brought all it asked for (see ``ahead``)

    def start(self) -> None:
        self._started = True
        self._add_threads()

    def follow(self, *, target: int, pollers: int) -> None:
        """The concurrency tuner's target (loop thread): how many of the capacity's places are
        slots, and how many receivers poll. A receiver beyond ``pollers`` finishes its open
        poll and waits; more receivers are started when needed, never ended."""
        self._target = target
        self._active = max(1, pollers)
        if self._started:
            self._add_threads()

    def _add_threads(self) -> None:
        while len(self._threads) < self._active:
            index = len(self._threads)
            self._alive.append(self._clock())
            thread = threading.Thread(
                target=self._receive_loop,
                args=(index,),
                name="s3sqsd-receiver" if index == 0 else f"s3sqsd-receiver-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def ahead(self) -> bool:
        """The last receive brought every message it asked for: the queue most likely holds
        more than is in hand. The tuner counts this as backlog even while the slots are not
        all busy: then receiving, not downloading, is the limit (one poller at 100 ms of round
        trip brings 10 messages per round trip, and 8 slots finish about as many), and more
        slots bring more pollers. A receive that came back short or empty, or failed, says
        the queue is drained (or unknown)."""
        return self._ahead

    def stop(self) -> None:
        """No new receives (a poll already open finishes; its messages are released)."""
        self._stop.set()

    def stopped(self) -> bool:
        return self._stop.is_set()

    def update(self, settings: WorkerSettings) -> None:
        """A reload: the next poll uses the new settings (the tuner resizes the capacity)."""
        self._settings = settings

    def paused(self) -> bool:
        """Receiving is paused now (a local failure: the disk is full, say; or held while
        messages wait for disk space)."""
        return self._held or self._paused_until > self._clock()

    def pause_until(self, when: float) -> None:
        """No receive before ``when`` (a local failure: the disk is full, say).

        A pause already running is not made longer: while kept messages fail again one after
        the other, each failure would push the end further, and messages still in the queue
        (the other objects on that disk) would not be received for as long as the failures
        go on. Each pause ends at the first failure's retry, and the receiver polls then.
        """
        if self._paused_until <= self._clock():
            self._paused_until = when

    def hold(self, held: bool) -> None:
        """No receive at all while ``held`` (messages wait for disk space), until released."""
        self._held = held

    def _receive_loop(self, index: int) -> None:
        """One poller. Several (``pollers``) share the capacity and one failure state, so an
        outage is logged once, not once per poller; the first one checks the redrive policy."""
        backoff = ReceiveBackoff(rng=random.Random())  # noqa: S311 - jitter
        redrive_checked = index != 0
        while not self._stop.is_set():
            self._alive[index] = self._clock()
            if index >= self._active:  # not needed at the current target: wait
                self._stop.wait(MAX_LOOP_SLEEP_SECONDS)
                continue
            pause = self._paused_until - self._clock()
            if pause > 0 or self._held:
                self._stop.wait(min(pause, 1.0) if pause > 0 else HOLD_POLL_SECONDS)
                continue
            wanted = self._reserve(timeout=MAX_LOOP_SLEEP_SECONDS)
            if wanted == 0:
                continue
            settings = self._settings
            if not redrive_checked:
                redrive_checked = self._check_redrive()
            try:
                messages = self._queue.receive(
                    max_messages=wanted,
                    wait_seconds=settings.wait_time_seconds,
                    visibility_timeout=settings.visibility_timeout_seconds,
                )
            except Exception as exc:  # the receiver must outlive any failure
                # QueueError is the expected case; anything else is a bug, logged with its
                # traceback, and handled the same way so the daemon keeps receiving.
                self._capacity.unreserve(wanted)
                code = error_code(exc.__cause__ or exc)
                if self._receive_state.failed(_failure_state(exc)):
                    logger.error(
                        "cannot receive from %s (%s); retrying with backoff, next message when "
                        "it recovers",
                        self._queue.url,
                        exc,
                        exc_info=not isinstance(exc, QueueError),
                        extra={"event": "sqs.receive.failed", "error": str(exc), "code": code},
                    )
                self._ahead = False
                self._inbox.put(ReceiveFailed(error=str(exc)))
                self._stop.wait(backoff.next_delay())
                continue
            self._alive[index] = self._clock()
            outage = self._receive_state.succeeded()
            if outage is not None:
                attempts, seconds = outage
                logger.info(
                    "receiving from %s again after %d failed attempts",
                    self._queue.url,
                    attempts,
                    extra={
                        "event": "sqs.receive.recovered",
                        "attempts": attempts,
                        "duration_ms": int(seconds * 1000),
                    },
                )
            backoff.reset()
            self._capacity.unreserve(wanted - len(messages))
            self._ahead = len(messages) >= wanted
            if messages:
                self._inbox.put(
                    Received(
                        messages=tuple(messages),
                        received_at=self._clock(),
                        visibility_timeout_seconds=settings.visibility_timeout_seconds,
                    )
                )

    def _check_redrive(self) -> bool:
        """Warn once when permanent failures would have nowhere to go; True once settled.

        Never blocks receiving: if the policy cannot be read because the endpoint is down, the
        check is tried again before the next receive; if it is refused (no permission for
        GetQueueAttributes), that is said once and receiving goes on without it.
        """
        if self._dlq is not None:
            return True
        try:
            attributes = self._queue.attributes(["RedrivePolicy"])
        except QueueError as exc:
            if not isinstance(exc.__cause__, ClientError):
                return False  # no answer at all: the receive will report it; try again later
            logger.warning(
                "cannot read the redrive policy of %s (%s); if it has none, messages that can "
                "never succeed come back until the queue's retention expires",
                self._queue.url,
                error_code(exc.__cause__),
                extra={"event": "queue.redrive_unknown", "error": str(exc)},
            )
            return True
        if not attributes.get("RedrivePolicy"):
            logger.warning(
                "queue %s has no redrive policy and dead_letter_queue_url is not set: messages "
                "that can never succeed will come back until the queue's retention expires",
                self._queue.url,
                extra={"event": "queue.no_redrive"},
            )
        return True

    def _reserve(self, *, timeout: float) -> int:
        """Reserve room for the next receive: 0 if not enough came free within ``timeout``.

        Several pollers split the capacity, so each can have a poll open on an idle queue. A
        poll waits until at least ``least_batch`` places are free: under a backlog, places
        come back one download at a time, and a ReceiveMessage per place would cost a call
        (SQS bills per request) for one message each. Waiting costs no throughput: it only
        happens while all workers are busy and at least half the prefetch is still queued.
        """
        limit = self._capacity.limit()
        share = max(1, limit // self._active)
        least = least_for(prefetch=limit - self._target, share=share)
        return self._capacity.reserve(least=least, most=min(10, share), timeout=timeout)

    def healthy(self, now: float) -> bool:
        """Every receiver thread made progress recently (a poll is at most wait + timeouts)."""
        if self._stop.is_set():
            return True
        if not all(receiver.is_alive() for receiver in self._threads):
            return False
        if not self._alive:
            return True
        limit = self._settings.wait_time_seconds + 60.0
        return now - min(self._alive) < limit
