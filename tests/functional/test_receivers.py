"""The receiver threads against the in-memory queue: what they tell the tuner.

``Receivers.ahead`` is the tuner's second sign of backlog: the last receive brought every
message it asked for, so the queue holds more than is in hand even when the download slots
are not all busy (receiving is then the limit, as at 100 ms of round trip).
"""

from __future__ import annotations

import queue as queues
import time
from collections.abc import Iterator
from contextlib import contextmanager

from s3sqsd.worker.inbox import InboxEvent, Received
from s3sqsd.worker.lease import Capacity
from s3sqsd.worker.receiver import Receivers
from s3sqsd.worker.settings import WorkerSettings
from tests.support.emulator import wait_until
from tests.support.events import s3_body
from tests.support.stub_queue import StubQueue


@contextmanager
def receiving(stub: StubQueue, *, places: int) -> Iterator[tuple[Receivers, list[int]]]:
    """One poller with ``places`` places in hand; yields it and the sizes of what it got."""
    inbox: queues.SimpleQueue[InboxEvent] = queues.SimpleQueue()
    receivers = Receivers(
        queue=stub,
        dead_letter_queue=None,
        settings=WorkerSettings(workers=places // 2, wait_time_seconds=1),
        inbox=inbox,
        capacity=Capacity(limit=places),
        pollers=1,
        clock=time.monotonic,
    )
    sizes: list[int] = []

    def drain() -> bool:
        while not inbox.empty():
            event = inbox.get()
            if isinstance(event, Received):
                sizes.append(len(event.messages))
        return bool(sizes)

    receivers.start()
    try:
        wait_until(drain, what="a receive")
        yield receivers, sizes
    finally:
        receivers.stop()


def test_a_receive_that_brings_all_it_asked_for_says_the_queue_is_ahead() -> None:
    stub = StubQueue()
    for i in range(10):
        stub.put(s3_body(f"k{i}"))
    with receiving(stub, places=4) as (receivers, sizes):
        assert sizes == [4]  # the capacity asked for 4, 6 wait in the queue
        assert receivers.ahead()


def test_a_short_receive_says_the_queue_is_drained() -> None:
    stub = StubQueue()
    for i in range(2):
        stub.put(s3_body(f"k{i}"))
    with receiving(stub, places=4) as (receivers, sizes):
        assert sizes == [2]
        assert not receivers.ahead()
