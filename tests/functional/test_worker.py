"""The worker's rules, against an in-memory queue and a scripted fetcher (no network).

Synchronisation uses events and deadline polling, never fixed sleeps. Each test runs the real
``Worker.run`` loop in a thread and stops it the way the daemon does (setting ``stop``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from s3sqsd.config import CommandConfig
from s3sqsd.errors import (
    DownloadCancelledError,
    FetchError,
    LocalError,
    LowSpaceError,
    MessageError,
    ObjectAccessError,
    QueueError,
    UnsafeKeyError,
)
from s3sqsd.events import ObjectCreated, OtherRecord, object_url
from s3sqsd.fetcher import FetchOutcome, FetchResult, RemoveOutcome
from s3sqsd.metrics import Metrics
from s3sqsd.notify import Notifier
from s3sqsd.provenance import Origin
from s3sqsd.routing import Placement
from s3sqsd.sqs import Message
from s3sqsd.worker import FetcherLike, Place, Worker, WorkerSettings, least_batch
from s3sqsd.worker.job import DownloadJob
from s3sqsd.worker.plan import FetchItem
from tests.support.emulator import wait_until
from tests.support.events import notification, s3_body, s3_record
from tests.support.stub_queue import StubQueue


class ScriptedFetcher:
    """Calls ``behaviour(obj, cancel)`` for each fetch; records the keys fetched."""

    def __init__(
        self, behaviour: Callable[[ObjectCreated, threading.Event], FetchResult] | None = None
    ) -> None:
        self.behaviour = behaviour or (lambda obj, cancel: ok(obj))
        self.fetched: list[str] = []
        self.removed: list[str] = []
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def remove(self, record: OtherRecord, *, key_path: str | None = None) -> RemoveOutcome:
        self.removed.append(record.key)
        return RemoveOutcome.REMOVED

    def fetch(
        self,
        obj: ObjectCreated,
        *,
        cancel: threading.Event,
        key_path: str | None = None,
        origin: Origin | None = None,
    ) -> FetchResult:
        with self._lock:
            self.fetched.append(obj.key)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            return self.behaviour(obj, cancel)
        finally:
            with self._lock:
                self.running -= 1


def ok(obj: ObjectCreated) -> FetchResult:
    return FetchResult(
        outcome=FetchOutcome.DOWNLOADED,
        path=Path("/nonexistent") / obj.key,
        size=1,
        etag=None,
        version_id=None,
        duration_ms=1,
    )


SETTINGS = WorkerSettings(
    workers=2,
    wait_time_seconds=1,
    visibility_timeout_seconds=30,
    shutdown_timeout_seconds=5,
    max_attempts=3,
    base_delay_seconds=10,
    max_delay_seconds=40,
)


def start(
    queue: StubQueue,
    fetcher: ScriptedFetcher,
    *,
    settings: WorkerSettings = SETTINGS,
    dlq: StubQueue | None = None,
    place: Place | None = None,
    pollers: int = 1,
    reload: Callable[[], WorkerSettings | None] | None = None,
) -> tuple[Worker, threading.Event, threading.Thread]:
    """A worker running its loop in a thread, stopped by setting the event (and a wake)."""
    worker = Worker(
        receive_queue=queue,
        control_queue=queue,
        dead_letter_queue=dlq,
        fetcher=fetcher,
        settings=settings,
        notifier=Notifier(enabled=False),
        place=place,
        pollers=pollers,
        reload=reload,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop}, daemon=True)
    thread.start()
    return worker, stop, thread


@contextmanager
def running(
    queue: StubQueue,
    fetcher: ScriptedFetcher,
    *,
    settings: WorkerSettings = SETTINGS,
    dlq: StubQueue | None = None,
    place: Place | None = None,
    pollers: int = 1,
) -> Iterator[tuple[Worker, threading.Event]]:
    worker, stop, thread = start(
        queue, fetcher, settings=settings, dlq=dlq, place=place, pollers=pollers
    )
    try:
        yield worker, stop
    finally:
        stop.set()
        worker.wake()
        thread.join(timeout=15)
        assert not thread.is_alive(), "worker did not stop"


class TestSuccess:
    def test_deletes_only_after_the_fetch_returns(self) -> None:
        """The message is still in the queue while its file is being fetched."""
        gate = threading.Event()
        started = threading.Event()

        def slow(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            started.set()
            assert gate.wait(10)
            return ok(obj)

        queue = StubQueue()
        message_id = queue.put(s3_body("a.txt"))
        with running(queue, ScriptedFetcher(slow)):
            assert started.wait(10)
            assert queue.remaining() == [message_id]
            assert queue.deleted == []
            gate.set()
            wait_until(lambda: queue.deleted == [message_id], what="delete")
        assert queue.remaining() == []

    def test_every_record_of_a_message_is_fetched_before_the_delete(self) -> None:
        queue = StubQueue()
        queue.put(s3_body("a", "b", "c"))
        fetcher = ScriptedFetcher()
        with running(queue, fetcher):
            wait_until(lambda: queue.remaining() == [], what="delete")
        assert fetcher.fetched == ["a", "b", "c"]

    def test_one_failing_record_keeps_the_whole_message(self) -> None:
        def second_fails(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            if obj.key == "b":
                raise FetchError("s3://inbox/b: 503")
            return ok(obj)

        queue = StubQueue()
        message_id = queue.put(s3_body("a", "b", "c"))
        fetcher = ScriptedFetcher(second_fails)
        with running(queue, fetcher):
            wait_until(lambda: queue.visibility_calls, what="message returned")
        assert queue.deleted == []
        assert queue.remaining() == [message_id]
        assert fetcher.fetched == ["a", "b"]

    @pytest.mark.parametrize("pollers", [1, 3])
    def test_in_hand_messages_are_bounded_by_workers_plus_prefetch(self, pollers: int) -> None:
        """Never more messages received than can be worked on soon (2 workers -> 4 in hand),
        however many pollers share the capacity."""
        gate = threading.Event()

        def blocked(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            gate.wait(10)
            return ok(obj)

        queue = StubQueue()
        for i in range(30):
            queue.put(s3_body(f"k{i}"))
        fetcher = ScriptedFetcher(blocked)
        with running(queue, fetcher, pollers=pollers):
            wait_until(lambda: fetcher.running == 2, what="two downloads")
            wait_until(lambda: queue.in_flight() == SETTINGS.capacity, what="prefetch")
            time.sleep(0.3)  # more receive polls would happen now, were there capacity
            assert queue.max_in_flight == SETTINGS.capacity
            gate.set()
            wait_until(lambda: queue.remaining() == [], timeout=20, what="all deleted")
        assert fetcher.max_running == 2
        assert sorted(queue.deleted) == sorted(f"m{i}" for i in range(1, 31))

    def test_capacity_comes_back_when_the_work_is_done_not_when_the_delete_returns(
        self,
    ) -> None:
        """Deletes that take a round trip (0.2 s here) do not hold capacity: the receiver takes
        more messages while finished ones wait for their delete, so more than ``capacity`` are
        received-but-not-deleted at some point, while downloads never exceed ``workers``."""
        queue = StubQueue()
        queue.delete_delay = 0.2
        for i in range(40):
            queue.put(s3_body(f"k{i}"))
        fetcher = ScriptedFetcher(lambda obj, cancel: ok(obj))
        with running(queue, fetcher):
            wait_until(lambda: queue.remaining() == [], timeout=30, what="all deleted")
        assert queue.max_in_flight > SETTINGS.capacity
        assert fetcher.max_running <= SETTINGS.workers
        assert sorted(queue.deleted) == sorted(f"m{i}" for i in range(1, 41))

    def test_under_a_backlog_each_poll_waits_for_half_the_prefetch(self) -> None:
        """Downloads finishing one at a time do not each trigger a ReceiveMessage for one
        message: with 8 workers (16 in hand) every poll asks for at least 4."""
        settings = replace(SETTINGS, workers=8)

        def staggered(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            time.sleep(0.004 + 0.003 * (int(obj.key[1:]) % 5))  # they finish one by one
            return ok(obj)

        queue = StubQueue()
        for i in range(80):
            queue.put(s3_body(f"k{i}"))
        fetcher = ScriptedFetcher(staggered)
        with running(queue, fetcher, settings=settings):
            wait_until(lambda: queue.remaining() == [], timeout=30, what="all deleted")
        asked = [wanted for wanted, _ in queue.requested]
        assert least_batch(settings, share=settings.capacity) == 4
        assert min(asked) >= 4, asked
        assert fetcher.max_running <= 8
        assert sorted(queue.deleted) == sorted(f"m{i}" for i in range(1, 81))

    def test_a_slow_delete_does_not_hold_up_the_next_download(self) -> None:
        """The settler thread makes the deletes: a message received while a delete takes its
        round trip (1 s here) is downloaded before that delete returns."""
        fetched_at: dict[str, float] = {}

        def record(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            fetched_at[obj.key] = time.monotonic()
            return ok(obj)

        queue = StubQueue()
        queue.delete_delay = 1.0
        first = queue.put(s3_body("a"))
        with running(queue, ScriptedFetcher(record)):
            wait_until(lambda: "a" in fetched_at, what="first download")
            time.sleep(0.3)  # its delete is under way now
            second = queue.put(s3_body("b"))
            wait_until(lambda: sorted(queue.deleted) == sorted([first, second]), timeout=10)
        first_delete_done = next(at for at, ids in queue.deletes_done if first in ids)
        assert fetched_at["b"] < first_delete_done

    def test_test_event_and_removals_are_acknowledged_without_a_fetch(self) -> None:
        queue = StubQueue()
        queue.put(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}))
        queue.put(
            json.dumps(
                {
                    "Records": [
                        {
                            "eventVersion": "2.1",
                            "eventName": "ObjectRemoved:Delete",
                            "s3": {"bucket": {"name": "b"}, "object": {"key": "x"}},
                        }
                    ]
                }
            )
        )
        fetcher = ScriptedFetcher()
        with running(queue, fetcher):
            wait_until(lambda: queue.remaining() == [], what="both acknowledged")
        assert fetcher.fetched == []


class TestDeleteBatching:
    """Deletes wait, up to ``delete_linger_seconds``, to fill DeleteMessageBatch calls of ten."""

    def test_under_a_backlog_deletes_go_ten_at_a_time(self) -> None:
        """Downloads finishing one by one share calls of ten; sent as they came (the settler
        being idle), most would go alone or in twos."""
        settings = replace(SETTINGS, workers=8, delete_linger_seconds=5.0)

        def staggered(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            time.sleep(0.002 * (int(obj.key[1:]) % 4))
            return ok(obj)

        queue = StubQueue()
        ids = [queue.put(s3_body(f"k{i}")) for i in range(40)]
        with running(queue, ScriptedFetcher(staggered), settings=settings):
            wait_until(lambda: queue.remaining() == [], timeout=30, what="all deleted")
        # Whole batches of ten only (the adapter sends a call of 20 as two DeleteMessageBatch
        # calls of ten; one is handed over when deletes piled up behind a slow one).
        sizes = [len(batch) for _, batch in queue.deletes_done]
        assert sum(sizes) == 40
        assert all(size % 10 == 0 for size in sizes), sizes
        assert sorted(queue.deleted) == sorted(ids)

    def test_a_lone_delete_waits_for_the_linger_and_no_longer(self) -> None:
        settings = replace(SETTINGS, delete_linger_seconds=0.5)
        fetched_at: dict[str, float] = {}

        def record(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            fetched_at[obj.key] = time.monotonic()
            return ok(obj)

        queue = StubQueue()
        message_id = queue.put(s3_body("a"))
        with running(queue, ScriptedFetcher(record), settings=settings):
            wait_until(lambda: queue.deleted == [message_id], timeout=5, what="the delete")
        [(deleted_at, batch)] = queue.deletes_done
        assert batch == (message_id,)
        assert deleted_at - fetched_at["a"] >= 0.5

    def test_stopping_sends_the_lingering_deletes_at_once(self) -> None:
        """A drain does not wait out the linger: with an hour of it, the worker still stops
        (``running`` fails if it takes 15 s) and every finished message is deleted."""
        settings = replace(SETTINGS, delete_linger_seconds=3600.0)
        queue = StubQueue()
        ids = [queue.put(s3_body(f"k{i}")) for i in range(3)]
        fetcher = ScriptedFetcher()
        with running(queue, fetcher, settings=settings) as (worker, _stop):
            wait_until(
                lambda: worker.metrics.get("objects_downloaded") == 3, what="three downloads"
            )
            time.sleep(0.3)  # a delete sent as soon as its download ended would be done now
            assert queue.deleted == []
            stopping_at = time.monotonic()
        assert sorted(queue.deleted) == sorted(ids)
        assert len(queue.deletes_done) == 1
        assert queue.deletes_done[0][0] >= stopping_at


class TestDeletesInFlight:
    """Several DeleteMessageBatch calls at once, one per 10 download slots: with one at a time,
    at 100 ms of round trip the deletes fell behind the downloads (issue 17). The stub's deletes
    wait at a gate here, so the batches out at once can be counted."""

    @staticmethod
    def gated(queue: StubQueue, count: int) -> tuple[threading.Event, list[str]]:
        gate = threading.Event()
        queue.delete_gate = gate
        return gate, [queue.put(s3_body(f"k{i}")) for i in range(count)]

    def test_thirty_slots_keep_three_batches_in_flight(self) -> None:
        queue = StubQueue()
        gate, ids = self.gated(queue, 60)
        with running(queue, ScriptedFetcher(), settings=replace(SETTINGS, workers=30)) as (
            worker,
            _stop,
        ):
            wait_until(lambda: queue.deleting == 3, what="three batches out")
            wait_until(lambda: worker.metrics.get("objects_downloaded") == 60, what="downloads")
            time.sleep(0.3)  # a fourth batch, if one were sent, would be out by now
            assert (queue.deleting, worker.busy_threads()) == (3, 3)
            gate.set()
            wait_until(lambda: queue.remaining() == [], what="all deleted")
        assert queue.max_deleting == 3
        assert [len(batch) for _, batch in queue.deletes_done] == [10] * 6
        assert sorted(queue.deleted) == sorted(ids)

    def test_a_failed_batch_among_several_retries_only_its_own_entries(self) -> None:
        queue = StubQueue()
        queue.failing_delete_calls = {1}  # the second of the three batches out at once
        gate, ids = self.gated(queue, 30)
        with running(queue, ScriptedFetcher(), settings=replace(SETTINGS, workers=30)) as (
            worker,
            _stop,
        ):
            wait_until(lambda: queue.deleting == 3, what="three batches out")
            gate.set()
            wait_until(lambda: queue.remaining() == [], what="all deleted")
            wait_until(lambda: worker.idle(), what="every lease settled")
            assert worker.metrics.get("messages_deleted") == 30
        [failed] = queue.failed_delete_calls
        # A batch holds what had settled when it left (at most ten): not always ten.
        assert 0 < len(failed) <= 10
        calls = [batch for _, batch in queue.deletes_done]
        tries = {message_id: sum(message_id in batch for batch in calls) for message_id in ids}
        assert tries == {i: 2 if i in failed else 1 for i in ids}  # only the failed ones again
        assert sorted(queue.deleted) == sorted(ids)
        assert set(queue.receive_counts.values()) == {1}  # none came back to the queue

    @pytest.mark.parametrize("shutdown_timeout", [5.0, 0.2])
    def test_the_drain_waits_for_every_batch_in_flight(self, shutdown_timeout: float) -> None:
        """Within the drain's timeout, and past it (the abandon grace): the three batches'
        leases are neither released nor forgotten before their answers come back."""
        queue = StubQueue()
        gate, ids = self.gated(queue, 30)
        settings = replace(SETTINGS, workers=30, shutdown_timeout_seconds=shutdown_timeout)
        worker, stop, thread = start(queue, ScriptedFetcher(), settings=settings)
        try:
            wait_until(lambda: queue.deleting == 3, what="three batches out")
            stop.set()
            worker.wake()
            time.sleep(0.6)  # past the 0.2 s deadline too
            assert thread.is_alive()
            assert (queue.deleting, len(queue.deleted), queue.visibility_calls) == (3, 0, [])
        finally:
            gate.set()
            thread.join(timeout=15)
        assert not thread.is_alive()
        assert sorted(queue.deleted) == sorted(ids)
        assert worker.idle()
        assert worker.metrics.get("messages_deleted") == 30

    def test_eight_slots_keep_one_batch_of_ten_at_most_in_flight(self) -> None:
        """As before with up to 10 slots: one batch at a time; deletes piled up behind it go
        out ten at a time, one call each (no longer all of them in one call)."""
        queue = StubQueue()
        gate, ids = self.gated(queue, 40)
        with running(queue, ScriptedFetcher(), settings=replace(SETTINGS, workers=8)) as (
            worker,
            _stop,
        ):
            wait_until(lambda: worker.metrics.get("objects_downloaded") == 40, what="downloads")
            time.sleep(0.3)  # a second batch, if one were sent, would be out by now
            assert queue.deleting == 1
            gate.set()
            wait_until(lambda: queue.remaining() == [], what="all deleted")
        assert queue.max_deleting == 1
        assert all(len(batch) <= 10 for _, batch in queue.deletes_done), queue.deletes_done
        assert sorted(queue.deleted) == sorted(ids)


class TestFailures:
    def test_transient_failure_returns_the_message_with_backoff(self) -> None:
        def missing(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            raise FetchError("s3://inbox/a: NoSuchKey")

        queue = StubQueue()
        message_id = queue.put(s3_body("a"))
        with running(queue, ScriptedFetcher(missing)):
            wait_until(lambda: queue.visibility_calls, what="backoff")
        (changed_id, seconds), *_ = queue.visibility_calls
        assert changed_id == message_id
        # attempt 1 with base 10: equal jitter gives 5..10 s
        assert 5 <= seconds <= 10
        assert queue.deleted == []

    def test_exhausted_attempts_are_dead_lettered_with_the_reason(self) -> None:
        def missing(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            raise FetchError("s3://inbox/a: NoSuchKey")

        queue = StubQueue()
        dlq = StubQueue("stub://dlq")
        body = s3_body("a")
        message_id = queue.put(body, receive_count=2)  # the next receive is attempt 3 of 3
        with running(queue, ScriptedFetcher(missing), dlq=dlq):
            wait_until(lambda: queue.deleted, what="dead-lettered and deleted")
        assert queue.deleted == [message_id]
        [(sent_body, attributes)] = dlq.sent
        assert sent_body == body
        assert attributes["s3sqsd.reason"] == "too_many_attempts"
        assert attributes["s3sqsd.source_message_id"] == message_id
        assert attributes["s3sqsd.receive_count"] == "3"
        assert "NoSuchKey" in attributes["s3sqsd.error"]

    def test_garbage_is_dead_lettered_at_once(self) -> None:
        queue = StubQueue()
        dlq = StubQueue("stub://dlq")
        queue.put("this is not json")
        fetcher = ScriptedFetcher()
        with running(queue, fetcher, dlq=dlq):
            wait_until(lambda: queue.remaining() == [], what="deleted")
        assert [a["s3sqsd.reason"] for _, a in dlq.sent] == ["bad_message"]
        assert fetcher.fetched == []

    def test_without_dead_letter_queue_a_permanent_failure_is_left_for_redrive(self) -> None:
        def unsafe(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            raise UnsafeKeyError("s3://inbox/../x: '..' segment")

        queue = StubQueue()
        message_id = queue.put(s3_body("../x"))
        with running(queue, ScriptedFetcher(unsafe)):
            wait_until(lambda: queue.visibility_calls, what="returned")
        assert queue.deleted == []
        assert queue.remaining() == [message_id]
        assert queue.visibility_calls[0] == (message_id, SETTINGS.max_delay_seconds)

    def test_bucket_outside_the_allow_list_is_dead_lettered(self) -> None:
        settings = WorkerSettings(
            workers=1, wait_time_seconds=1, allowed_buckets=frozenset({"inbox"})
        )
        queue = StubQueue()
        dlq = StubQueue("stub://dlq")
        queue.put(s3_body("a", bucket="elsewhere"))
        fetcher = ScriptedFetcher()
        with running(queue, fetcher, settings=settings, dlq=dlq):
            wait_until(lambda: dlq.sent, what="dead-lettered")
        assert dlq.sent[0][1]["s3sqsd.reason"] == "bucket_not_allowed"
        assert fetcher.fetched == []

    def test_local_failure_keeps_the_message_in_hand_and_retries(self) -> None:
        """A full disk is not the message's fault: never dead-lettered, even past
        max_attempts, and not received again (SQS's receive count, which a queue redrive
        policy acts on, does not grow); the download is retried from the lease."""
        calls: list[int] = []

        def full_then_ok(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            calls.append(1)
            if len(calls) < 3:
                raise LocalError("s3://inbox/a: No space left on device")
            return ok(obj)

        settings = WorkerSettings(
            workers=1, wait_time_seconds=1, base_delay_seconds=0.4, max_delay_seconds=1
        )
        queue = StubQueue()
        dlq = StubQueue("stub://dlq")
        message_id = queue.put(s3_body("a"), receive_count=10)
        with running(queue, ScriptedFetcher(full_then_ok), settings=settings, dlq=dlq):
            wait_until(lambda: queue.deleted == [message_id], timeout=15, what="retried")
        assert len(calls) == 3
        assert dlq.sent == []
        assert queue.receive_counts[message_id] == 11  # received once, never again

    def test_kept_messages_failing_in_turn_do_not_stop_receiving_for_good(self) -> None:
        """Two kept messages keep failing locally, one after the other. Each failure pauses
        receiving, but a failure during a pause does not make it longer: the pause ends at
        the first failure's retry, and a message sent meanwhile is received (and, its own
        disk being fine, downloaded) while the other two still fail."""
        failures = {"a": 0, "b": 0}

        def a_and_b_fail(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            if obj.key in failures:
                failures[obj.key] += 1
                raise LocalError(f"s3://inbox/{obj.key}: Read-only file system")
            return ok(obj)

        settings = WorkerSettings(
            workers=2, wait_time_seconds=1, base_delay_seconds=0.5, max_delay_seconds=1
        )
        queue = StubQueue()
        queue.put(s3_body("a"))
        queue.put(s3_body("b"))
        with running(queue, ScriptedFetcher(a_and_b_fail), settings=settings):
            wait_until(lambda: min(failures.values()) >= 2, timeout=15, what="a and b kept")
            later = queue.put(s3_body("c"))
            wait_until(lambda: later in queue.deleted, timeout=20, what="c received and done")
        assert queue.deleted == [later]  # a and b: still in hand

    def test_waiting_for_disk_space_holds_receiving_and_is_said_once(
        self, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        """min_free_bytes refuses the download: the message stays in hand and is tried again
        (not counted as a failure), receiving is held for as long as it waits (a message sent
        meanwhile is not received), one warning and one info line frame it, and the paused
        gauge says so; once there is room, both messages are downloaded."""
        monkeypatch.setattr("s3sqsd.worker.failures.SPACE_RECHECK_SECONDS", 0.2)
        caplog.set_level(logging.INFO, logger="s3sqsd")
        full = threading.Event()
        full.set()
        tries: list[str] = []

        def below_the_floor(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            if not full.is_set():
                return ok(obj)
            tries.append(obj.key)
            raise LowSpaceError(
                f"/srv/in: 1.0 MiB free; s3://inbox/{obj.key} would leave less than "
                "min_free_bytes: waiting for space",
                folder=Path("/srv/in"),
                free=1 << 20,
                size=10,
                floor=2 << 20,
            )

        queue = StubQueue()
        first = queue.put(s3_body("a"))
        settings = replace(SETTINGS, workers=1)
        with running(queue, ScriptedFetcher(below_the_floor), settings=settings) as (worker, _):
            wait_until(lambda: len(tries) >= 3, timeout=15, what="a tried again")
            wait_until(lambda: queue.receiving == 0, timeout=15, what="the open poll over")
            polls = len(queue.requested)
            second = queue.put(s3_body("b"))
            wait_until(lambda: len(tries) >= 6, timeout=15, what="a tried again, more")
            assert len(queue.requested) == polls  # held: no receive while a waits
            assert set(tries) == {"a"}
            assert worker.metrics.get("paused", reason="disk") == 1
            assert worker.metrics.get("messages_failed") == 0
            full.clear()
            wait_until(lambda: set(queue.deleted) == {first, second}, timeout=15, what="both")
            assert worker.metrics.get("paused", reason="disk") == 0
        assert queue.receive_counts[first] == 1
        events = [getattr(r, "event", "") for r in caplog.records]
        assert events.count("disk.low_space") == 1
        assert events.count("disk.space_recovered") == 1
        assert "local.storage_error" not in events

    def test_failed_delete_is_retried(self) -> None:
        queue = StubQueue()
        message_id = queue.put(s3_body("a"))
        queue.delete_failures[message_id] = 1
        with running(queue, ScriptedFetcher()):
            wait_until(lambda: queue.deleted == [message_id], what="delete after a retry")

    @pytest.mark.parametrize("pollers", [1, 3])
    def test_receive_errors_log_once_per_state_and_recover(
        self, caplog: pytest.LogCaptureFixture, pollers: int
    ) -> None:
        """One failure line and one recovery line per outage, however many pollers see it."""
        caplog.set_level(logging.INFO, logger="s3sqsd")
        queue = StubQueue()
        queue.receive_error = QueueError("ReceiveMessage failed: endpoint down")
        with running(queue, ScriptedFetcher(), pollers=pollers):
            wait_until(
                lambda: any(
                    getattr(r, "event", "") == "sqs.receive.failed" for r in caplog.records
                ),
                what="failure logged",
            )
            wait_until(lambda: queue.receive_error is not None, what="still failing")
            # Receive retries back off (1 s, 2 s ...); let it fail a few times.
            threading.Event().wait(3.5)
            queue.receive_error = None
            message_id = queue.put(s3_body("a"))
            wait_until(lambda: queue.deleted == [message_id], timeout=30, what="recovered")
        failed = [r for r in caplog.records if getattr(r, "event", "") == "sqs.receive.failed"]
        recovered = [
            r for r in caplog.records if getattr(r, "event", "") == "sqs.receive.recovered"
        ]
        assert len(failed) == 1
        assert len(recovered) == 1
        assert recovered[0].attempts >= 2  # type: ignore[attr-defined]


class TestPollers:
    @pytest.mark.parametrize("pollers", [1, 3])
    def test_pollers_long_poll_at_once(self, pollers: int) -> None:
        """``pollers`` receive calls are open at the same time on an idle queue; never more."""
        queue = StubQueue()
        with running(queue, ScriptedFetcher(), pollers=pollers):
            wait_until(lambda: queue.max_receiving == pollers, what=f"{pollers} open polls")
            time.sleep(0.5)  # several poll rounds
        assert queue.max_receiving == pollers

    def test_worker_refuses_zero_pollers(self) -> None:
        with pytest.raises(ValueError, match="pollers"):
            Worker(
                receive_queue=StubQueue(),
                control_queue=StubQueue(),
                dead_letter_queue=None,
                fetcher=ScriptedFetcher(),
                settings=SETTINGS,
                notifier=Notifier(enabled=False),
                pollers=0,
            )


class TestRedriveCheck:
    @pytest.mark.parametrize("pollers", [1, 3])
    def test_no_redrive_policy_is_warned_once(
        self, caplog: pytest.LogCaptureFixture, pollers: int
    ) -> None:
        queue = StubQueue(redrive=False)
        message_id = queue.put(s3_body("a"))
        with running(queue, ScriptedFetcher(), pollers=pollers):
            wait_until(lambda: queue.deleted == [message_id], what="delete")
        events = [getattr(r, "event", "") for r in caplog.records]
        assert events.count("queue.no_redrive") == 1

    def test_refused_policy_read_does_not_stop_receiving(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """GetQueueAttributes denied: one warning, and messages are still received."""
        denied = ClientError(
            {"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetQueueAttributes"
        )
        queue = StubQueue(redrive=False)
        error = QueueError("GetQueueAttributes failed: AccessDenied")
        error.__cause__ = denied
        queue.attributes_error = error
        message_id = queue.put(s3_body("a"))
        with running(queue, ScriptedFetcher()):
            wait_until(lambda: queue.deleted == [message_id], what="delete")
        events = [getattr(r, "event", "") for r in caplog.records]
        assert events.count("queue.redrive_unknown") == 1
        assert "queue.no_redrive" not in events


class TestLeases:
    def test_visibility_is_renewed_for_running_and_queued_messages(self) -> None:
        """Heartbeat for every message in hand, not only the one downloading."""
        settings = WorkerSettings(
            workers=1, wait_time_seconds=1, visibility_timeout_seconds=2, shutdown_timeout_seconds=5
        )
        gate = threading.Event()

        def blocked(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            gate.wait(10)
            return ok(obj)

        queue = StubQueue()
        first = queue.put(s3_body("a"))
        second = queue.put(s3_body("b"))
        with running(queue, ScriptedFetcher(blocked), settings=settings):
            wait_until(
                lambda: {first, second} <= {mid for mid, _ in queue.visibility_calls},
                timeout=10,
                what="both renewed",
            )
            # Nobody else could have received them meanwhile: still in flight, never redelivered.
            assert queue.in_flight() == 2
            gate.set()
            wait_until(lambda: queue.remaining() == [], what="deleted")
        assert all(seconds == 2 for _, seconds in queue.visibility_calls)

    def test_drain_releases_queued_messages_and_finishes_the_running_one(self) -> None:
        settings = WorkerSettings(workers=1, wait_time_seconds=1, shutdown_timeout_seconds=10)
        started = threading.Event()
        gate = threading.Event()

        def blocked(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            started.set()
            gate.wait(10)
            return ok(obj)

        queue = StubQueue()
        ids = [queue.put(s3_body(f"k{i}")) for i in range(2)]
        fetcher = ScriptedFetcher(blocked)
        worker = Worker(
            receive_queue=queue,
            control_queue=queue,
            dead_letter_queue=None,
            fetcher=fetcher,
            settings=settings,
            notifier=Notifier(enabled=False),
        )
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, kwargs={"stop": stop}, daemon=True)
        thread.start()
        assert started.wait(10)
        wait_until(lambda: queue.in_flight() == 2, what="second message prefetched")
        stop.set()
        worker.wake()
        wait_until(lambda: (ids[1], 0) in queue.visibility_calls, what="queued one released")
        assert thread.is_alive(), "must wait for the running download"
        gate.set()
        thread.join(10)
        assert not thread.is_alive()
        assert queue.deleted == [ids[0]]
        assert queue.remaining() == [ids[1]]
        assert fetcher.fetched == ["k0"]

    def test_drain_timeout_cancels_and_releases(self, caplog: pytest.LogCaptureFixture) -> None:
        """A download cut short by the drain deadline is a planned stop, not a failure: its
        message is released once (visibility 0), with no retry line and no failure counted."""
        settings = WorkerSettings(workers=1, wait_time_seconds=1, shutdown_timeout_seconds=0.5)
        started = threading.Event()

        def until_cancelled(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            started.set()
            assert cancel.wait(20)
            raise DownloadCancelledError(f"download of s3://inbox/{obj.key} cancelled")

        queue = StubQueue()
        message_id = queue.put(s3_body("big"))
        caplog.set_level(logging.INFO, logger="s3sqsd")
        with running(queue, ScriptedFetcher(until_cancelled), settings=settings) as (worker, stop):
            assert started.wait(10)
            stop.set()
        assert queue.deleted == []
        assert [call for call in queue.visibility_calls if call[0] == message_id] == [
            (message_id, 0)
        ]
        events = [getattr(record, "event", None) for record in caplog.records]
        assert "message.retry" not in events
        assert events.count("message.released") == 1
        assert worker.metrics.get("messages_failed") == 0
        drain = [r for r in caplog.records if getattr(r, "event", None) == "daemon.drain_timeout"]
        assert [r.getMessage() for r in drain] == [
            "shutdown_timeout_seconds reached: 1 downloads cancelled and their messages released"
        ]


def removal_body(key: str, *, bucket: str = "inbox") -> str:
    return notification(
        s3_record(
            bucket,
            key,
            event_name="ObjectRemoved:Delete",
            size=None,
            source=False,
            sequencer="0B",
        )
    )


class TestRoutingAndRemoval:
    def test_unrouted_objects_are_acknowledged_or_dead_lettered(self) -> None:
        fetcher = ScriptedFetcher()

        def place(bucket: str, key: str) -> Placement[FetcherLike] | None:
            return Placement(folder=fetcher) if key.startswith("keep/") else None

        for unrouted, expect_dlq in (("acknowledge", False), ("dead_letter", True)):
            settings = WorkerSettings(workers=1, wait_time_seconds=1, unrouted=unrouted)
            queue = StubQueue()
            dlq = StubQueue("stub://dlq")
            queue.put(s3_body("keep/a", "other/b"))
            with running(queue, fetcher, settings=settings, dlq=dlq, place=place):
                wait_until(lambda q=queue: q.remaining() == [], what=f"settled ({unrouted})")
            if expect_dlq:
                assert [a["s3sqsd.reason"] for _, a in dlq.sent] == ["unrouted"]
            else:
                assert dlq.sent == []
        # acknowledge: keep/a fetched, other/b skipped; dead_letter: nothing fetched at all
        assert fetcher.fetched == ["keep/a"]

    def test_key_path_of_the_placement_reaches_the_fetcher(self) -> None:
        seen: list[str | None] = []

        class Recording(ScriptedFetcher):
            def fetch(
                self,
                obj: ObjectCreated,
                *,
                cancel: threading.Event,
                key_path: str | None = None,
                origin: Origin | None = None,
            ) -> FetchResult:
                seen.append(key_path)
                return ok(obj)

        fetcher = Recording()
        queue = StubQueue()
        queue.put(s3_body("reports/2026/a.csv"))
        with running(
            queue,
            fetcher,
            settings=WorkerSettings(workers=1, wait_time_seconds=1),
            place=lambda b, k: Placement(folder=fetcher, key_path=k.removeprefix("reports/")),
        ):
            wait_until(lambda: queue.remaining() == [], what="deleted")
        assert seen == ["2026/a.csv"]

    def test_removals_reach_the_fetcher_only_with_on_remove_delete(self) -> None:
        for on_remove, expected in (("keep", []), ("delete", ["gone.txt"])):
            fetcher = ScriptedFetcher()
            queue = StubQueue()
            queue.put(removal_body("gone.txt"))
            settings = WorkerSettings(workers=1, wait_time_seconds=1, on_remove=on_remove)
            with running(queue, fetcher, settings=settings):
                wait_until(lambda q=queue: q.remaining() == [], what="acknowledged")
            assert fetcher.removed == expected


class TestOnDownload:
    @staticmethod
    def script(tmp_path: Path, body: str) -> CommandConfig:
        path = tmp_path / "hook.sh"
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
        return CommandConfig(command=(str(path),), timeout_seconds=5)

    def run_with(
        self, command: CommandConfig, outcome: FetchOutcome, queue: StubQueue
    ) -> ScriptedFetcher:
        def result(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            return FetchResult(
                outcome=outcome,
                path=Path("/srv/x") / obj.key,
                size=7,
                etag="abc",
                version_id="v1",
                duration_ms=1,
            )

        fetcher = ScriptedFetcher(result)
        with running(
            queue,
            fetcher,
            settings=WorkerSettings(workers=1, wait_time_seconds=1, base_delay_seconds=30),
            place=lambda b, k: Placement(folder=fetcher, on_download=command),
        ):
            wait_until(lambda: queue.deleted or queue.visibility_calls, timeout=15, what="settled")
        return fetcher

    def test_success_deletes_and_the_command_sees_the_facts(self, tmp_path: Path) -> None:
        out = tmp_path / "facts"
        command = self.script(
            tmp_path, f'echo "$S3SQSD_PATH $S3SQSD_KEY $S3SQSD_SIZE $S3SQSD_ETAG" > {out}\n'
        )
        queue = StubQueue()
        message_id = queue.put(s3_body("a b.txt"))
        self.run_with(command, FetchOutcome.DOWNLOADED, queue)
        assert queue.deleted == [message_id]
        assert out.read_text() == "/srv/x/a b.txt a b.txt 7 abc\n"

    def test_failure_returns_the_message(self, tmp_path: Path) -> None:
        command = self.script(tmp_path, "exit 3\n")
        queue = StubQueue()
        message_id = queue.put(s3_body("a"))
        self.run_with(command, FetchOutcome.DOWNLOADED, queue)
        assert queue.deleted == []
        assert queue.visibility_calls
        assert queue.visibility_calls[0][0] == message_id

    def test_a_duplicate_runs_the_command_again_and_stale_does_not(self, tmp_path: Path) -> None:
        marker = tmp_path / "ran"
        command = self.script(tmp_path, f"echo x >> {marker}\n")
        queue = StubQueue()
        queue.put(s3_body("a"))
        self.run_with(command, FetchOutcome.DUPLICATE, queue)
        assert marker.read_text() == "x\n"
        queue = StubQueue()
        queue.put(s3_body("a"))
        self.run_with(command, FetchOutcome.STALE, queue)
        assert marker.read_text() == "x\n"


def test_every_way_of_not_reaching_the_endpoint_is_one_state() -> None:
    """An outage cuts the open poll, then refuses connections: one state, logged once."""
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

    from s3sqsd.worker import _failure_state

    def wrapped(cause: Exception) -> QueueError:
        error = QueueError(f"ReceiveMessage failed: {cause}")
        error.__cause__ = cause
        return error

    closed = wrapped(ConnectionClosedError(endpoint_url="http://127.0.0.1:1/"))
    refused = wrapped(EndpointConnectionError(endpoint_url="http://127.0.0.1:1/"))
    denied = wrapped(ClientError({"Error": {"Code": "AccessDenied"}}, "ReceiveMessage"))
    assert _failure_state(closed) == _failure_state(refused) == "unreachable"
    assert _failure_state(denied) == "AccessDenied"


@pytest.mark.parametrize(
    ("workers", "pollers", "least"),
    [(1, 1, 1), (2, 1, 1), (3, 1, 1), (8, 1, 4), (10, 1, 5), (32, 1, 5), (8, 4, 4), (8, 16, 1)],
)
def test_least_batch_is_half_the_prefetch_within_a_pollers_share(
    workers: int, pollers: int, least: int
) -> None:
    settings = replace(SETTINGS, workers=workers)
    share = max(1, settings.capacity // pollers)
    assert least_batch(settings, share=share) == least


# A key a log line must not carry raw: a newline would split the line, and 300 characters
# would flood it. The ``key`` field keeps it whole; the message shows ``events.object_url``.
HOSTILE_KEY = "evil\nline/" + "k" * 300


def run_job(fetcher: ScriptedFetcher) -> MessageError | None:
    """One download thread's job for HOSTILE_KEY, run here; its error, if any."""
    obj = ObjectCreated(bucket="inbox", key=HOSTILE_KEY, event_name="ObjectCreated:Put")
    job = DownloadJob(
        message=Message(message_id="m", receipt_handle="r", body="{}", receive_count=1),
        items=(FetchItem(obj, Placement(folder=fetcher)),),
        metrics=Metrics(),
        cancel=threading.Event(),
    )
    return job.run().error


@pytest.mark.parametrize("outcome", list(FetchOutcome))
def test_download_threads_name_objects_as_object_url_does(
    outcome: FetchOutcome, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="s3sqsd")
    # The path is a plain one: paths.local_path refuses control characters in a real one.
    fetcher = ScriptedFetcher(
        lambda o, _cancel: replace(ok(o), outcome=outcome, path=Path("/srv/evil"))
    )
    assert run_job(fetcher) is None
    (record,) = [r for r in caplog.records if getattr(r, "key", None) == HOSTILE_KEY]
    assert object_url("inbox", HOSTILE_KEY) in record.getMessage()
    assert "\n" not in record.getMessage()


def test_an_unexpected_fetch_error_names_the_object_as_object_url_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bug(_obj: ObjectCreated, _cancel: threading.Event) -> FetchResult:
        raise ZeroDivisionError("a bug")

    caplog.set_level(logging.INFO, logger="s3sqsd")
    error = run_job(ScriptedFetcher(bug))
    assert error is not None
    assert str(error).startswith(f"{object_url('inbox', HOSTILE_KEY)}: unexpected error: ")
    (record,) = [
        r for r in caplog.records if getattr(r, "event", None) == "object.unexpected_error"
    ]
    assert "\n" not in record.getMessage()


class TestDrainEdges:
    """Failures that land inside the drain, found by review: each failed before its fix."""

    def run_until_stopped(
        self, queue: StubQueue, fetcher: ScriptedFetcher, started: threading.Event, **kwargs: object
    ) -> tuple[Worker, list[BaseException]]:
        worker = Worker(
            receive_queue=queue,
            control_queue=queue,
            fetcher=fetcher,
            notifier=Notifier(enabled=False),
            **kwargs,  # type: ignore[arg-type]
        )
        stop, errors = threading.Event(), []

        def run() -> None:
            try:
                worker.run(stop=stop)
            except BaseException as exc:  # the test reports it
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert started.wait(10)
        stop.set()
        worker.wake()
        thread.join(20)
        assert not thread.is_alive()
        return worker, errors

    def test_a_permanent_failure_in_the_abandon_grace_is_dead_lettered_once(self) -> None:
        """The download outlives the drain deadline, then fails for good while the drain gives
        up: its dead letter is sent and the message deleted, not also released (which crashed
        the loop with a LeaseStageError)."""
        queue, dlq, started = StubQueue(), StubQueue("stub://dlq"), threading.Event()
        queue.put(s3_body("a.txt"))

        def denied(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            started.set()
            cancel.wait(10)
            raise ObjectAccessError("403 AccessDenied")

        settings = replace(SETTINGS, shutdown_timeout_seconds=0.3)
        _, errors = self.run_until_stopped(
            queue, ScriptedFetcher(denied), started, settings=settings, dead_letter_queue=dlq
        )
        assert errors == []
        assert len(dlq.sent) == 1
        assert queue.remaining() == []
        assert queue.in_flight() == 0

    def test_a_download_stuck_past_the_drain_still_counts_as_busy(self) -> None:
        """The drain forgets its lease, but the thread is still in a socket read: the daemon
        must know, or interpreter exit would wait on it."""
        queue, started, never = StubQueue(), threading.Event(), threading.Event()
        queue.put(s3_body("a.txt"))

        def stuck(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            started.set()
            never.wait(30)  # ignores cancel, as a blocked read does
            return ok(obj)

        settings = replace(SETTINGS, shutdown_timeout_seconds=0.2)
        try:
            worker, errors = self.run_until_stopped(
                queue, ScriptedFetcher(stuck), started, settings=settings, dead_letter_queue=None
            )
            assert errors == []
            assert worker.busy_threads() == 1
        finally:
            never.set()

    def test_a_local_failure_while_stopping_releases_the_message(self) -> None:
        """A local failure during the drain is not kept for a retry this run will never make
        (the drain waited its whole timeout for it): the message goes back at once."""
        queue, started = StubQueue(), threading.Event()
        queue.put(s3_body("a.txt"))

        def disk_full(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            started.set()
            time.sleep(0.3)  # the stop arrives meanwhile
            raise LocalError("No space left on device")

        settings = replace(SETTINGS, shutdown_timeout_seconds=30)
        begun = time.monotonic()
        _, errors = self.run_until_stopped(
            queue, ScriptedFetcher(disk_full), started, settings=settings, dead_letter_queue=None
        )
        assert errors == []
        assert time.monotonic() - begun < 10  # not the 30 s drain
        assert queue.in_flight() == 0
        assert len(queue.remaining()) == 1


def test_a_reload_during_a_poll_renews_by_what_the_poll_asked_for() -> None:
    """The poll asked SQS for 2 s of visibility; a reload meanwhile sets 120 s. The lease must
    be renewed by the 2 s SQS granted (at 1 s), not by the new setting (at 60 s, long after
    the message went back to the queue)."""

    class HeldPoll(StubQueue):
        def __init__(self) -> None:
            super().__init__()
            self.release = threading.Event()
            self.opened = threading.Event()

        def receive(
            self, *, max_messages: int, wait_seconds: int, visibility_timeout: int
        ) -> list[Message]:
            self.opened.set()
            self.release.wait(10)
            return super().receive(
                max_messages=max_messages,
                wait_seconds=wait_seconds,
                visibility_timeout=visibility_timeout,
            )

    queue = HeldPoll()
    message_id = queue.put(s3_body("slow.bin"))
    short = replace(SETTINGS, visibility_timeout_seconds=2)
    reloaded = threading.Event()

    def reload() -> WorkerSettings:
        reloaded.set()
        return replace(SETTINGS, visibility_timeout_seconds=120)

    def slow(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
        time.sleep(2.5)
        return ok(obj)

    worker = Worker(
        receive_queue=queue,
        control_queue=queue,
        dead_letter_queue=None,
        fetcher=ScriptedFetcher(slow),
        settings=short,
        notifier=Notifier(enabled=False),
        reload=reload,
    )
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, kwargs={"stop": stop}, daemon=True)
    thread.start()
    try:
        assert queue.opened.wait(10)
        worker.request_reload()
        assert reloaded.wait(10)
        queue.release.set()
        wait_until(lambda: queue.deleted == [message_id], timeout=15, what="the delete")
        renewals = [seconds for mid, seconds in queue.visibility_calls if mid == message_id]
        assert renewals, "the lease was not renewed before its 2 s ran out"
        assert renewals[0] == 120
    finally:
        stop.set()
        worker.wake()
        thread.join(10)


class TestConcurrency:
    """``workers: auto`` and the large objects' lane, applied by the real loop."""

    def test_auto_grows_the_downloads_within_the_bounds_and_says_so(
        self, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Each download waits 40 ms (a round trip), so more slots finish more files: the
        target climbs from 8, never past max_workers, and every message is deleted."""
        caplog.set_level(logging.INFO, logger="s3sqsd.worker")
        settings = replace(SETTINGS, workers=8, auto=True, min_workers=4, max_workers=24)

        def round_trip(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            time.sleep(0.04)  # the workload's latency, not a measurement
            return ok(obj)

        queue = StubQueue()
        for i in range(1500):
            queue.put(s3_body(f"k{i}"))
        fetcher = ScriptedFetcher(round_trip)
        with running(queue, fetcher, settings=settings) as (worker, _stop):
            wait_until(lambda: fetcher.max_running > 8, timeout=30, what="more than 8 at once")
            wait_until(lambda: queue.remaining() == [], timeout=60, what="all deleted")
            target = worker.metrics.get("workers_target")
        assert 4 <= target <= 24
        assert 8 < fetcher.max_running <= 24
        assert sorted(queue.deleted) == sorted(f"m{i}" for i in range(1, 1501))
        changes = [r for r in caplog.records if getattr(r, "event", "") == "concurrency.changed"]
        assert changes
        assert all(4 <= r.workers <= 24 for r in changes)  # type: ignore[attr-defined]
        assert changes[0].previous == 8  # type: ignore[attr-defined]

    def test_an_idle_auto_daemon_stays_where_it_starts(self) -> None:
        settings = replace(SETTINGS, workers=8, auto=True, min_workers=4, max_workers=24)
        queue = StubQueue()
        for i in range(5):
            queue.put(s3_body(f"k{i}"))
        fetcher = ScriptedFetcher()
        with running(queue, fetcher, settings=settings) as (worker, _stop):
            wait_until(lambda: queue.remaining() == [], what="all deleted")
            time.sleep(1.0)  # idle: samples without backlog, nothing should move
            assert worker.metrics.get("workers_target") == 8

    def test_large_objects_queued_first_do_not_starve_small_ones(self) -> None:
        """Two large objects (their events announce the threshold) are received first and
        never finish until released; with 2 workers, the 40 small ones behind them all
        download meanwhile: the large ones run in their own lane (1 slot with 2 workers),
        not in the small files' slots, and take no place of the small files' in hand."""
        settings = replace(SETTINGS, workers=2, large_threshold_bytes=1000)
        release = threading.Event()
        large_running: list[str] = []

        def behaviour(obj: ObjectCreated, cancel: threading.Event) -> FetchResult:
            if obj.key.startswith("large"):
                large_running.append(obj.key)
                assert release.wait(20)
            return ok(obj)

        queue = StubQueue()
        for i in range(2):
            queue.put(s3_body(f"large{i}", size=5000))
        for i in range(40):
            queue.put(s3_body(f"small{i}"))
        fetcher = ScriptedFetcher(behaviour)
        with running(queue, fetcher, settings=settings):
            wait_until(
                lambda: sum(key.startswith("small") for key in fetcher.fetched) == 40,
                timeout=30,
                what="every small object while the large ones wait",
            )
            # Fetched is recorded before the settler deletes: wait for the deletes to land.
            wait_until(
                lambda: sorted(queue.remaining()) == ["m1", "m2"],
                timeout=30,
                what="every small message deleted, the two large ones still in hand",
            )
            assert large_running == ["large0"]  # one lane slot: the second one waits
            release.set()
            wait_until(lambda: queue.remaining() == [], timeout=30, what="all deleted")
        assert fetcher.max_running <= 2 + 1

    def test_a_reload_from_auto_to_a_fixed_count_applies_it(self) -> None:
        settings = replace(SETTINGS, workers=8, auto=True, min_workers=4, max_workers=24)
        new = replace(SETTINGS, workers=3)
        queue = StubQueue()
        worker, stop, thread = start(
            queue, ScriptedFetcher(), settings=settings, reload=lambda: new
        )
        try:
            wait_until(lambda: worker.metrics.get("workers_target") == 8, what="started at 8")
            worker.request_reload()
            wait_until(lambda: worker.metrics.get("workers_target") == 3, what="reloaded to 3")
        finally:
            stop.set()
            worker.wake()
            thread.join(timeout=15)
        assert not thread.is_alive()
