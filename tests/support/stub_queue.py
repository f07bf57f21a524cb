"""An in-memory SQS queue with the semantics the worker relies on (dramatiq's StubBroker idea).

It stands in for ``s3sqsd.sqs.Queue`` (the adapter, which splits batches into tens itself). It is
strict where the emulator is lenient: a receipt handle is valid only for the latest receive of a
message, and visibility is enforced, so the worker's mistakes show up here even when moto would
accept them.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from s3sqsd.errors import QueueError
from s3sqsd.sqs import BatchFailure, BatchResult, Message


@dataclass
class _Stored:
    message_id: str
    body: str
    receive_count: int = 0
    visible_at: float = 0.0
    receipt: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


class StubQueue:
    """Thread-safe; records every call for assertions."""

    def __init__(self, url: str = "stub://queue", *, redrive: bool = True) -> None:
        self.url = url
        self._lock = threading.Condition()
        self._messages: dict[str, _Stored] = {}
        self._ids = itertools.count(1)
        self._receipts = itertools.count(1)
        self.deleted: list[str] = []
        self.visibility_calls: list[tuple[str, int]] = []
        self.sent: list[tuple[str, dict[str, str]]] = []
        self.receive_error: QueueError | None = None
        self.delete_failures: dict[str, int] = {}  # message id -> failures still to inject
        self.max_in_flight = 0
        self.redrive = redrive
        self.attributes_error: QueueError | None = None
        self.receive_counts: dict[str, int] = {}  # kept after a delete, for assertions
        self.delete_delay = 0.0  # seconds each delete call takes (a round trip), lock not held
        self.deletes_done: list[tuple[float, tuple[str, ...]]] = []  # (monotonic, ids) per call
        self.delete_gate: threading.Event | None = None  # set: each delete call waits for it
        self.deleting = 0  # delete calls open right now
        self.max_deleting = 0  # the most delete calls ever open at once
        self.delete_calls = 0  # delete calls begun
        self.failing_delete_calls: set[int] = set()  # these calls (0 = the first) fail whole
        self.failed_delete_calls: list[tuple[str, ...]] = []  # the ids each of them carried
        self.receiving = 0  # receive calls open right now
        self.max_receiving = 0  # the most receive calls ever open at once
        self.requested: list[tuple[int, int]] = []  # (max_messages, messages queued) per call

    # ---- test helpers ------------------------------------------------------------------------

    def put(self, body: str, *, receive_count: int = 0) -> str:
        with self._lock:
            message_id = f"m{next(self._ids)}"
            self._messages[message_id] = _Stored(message_id, body, receive_count=receive_count)
            self._lock.notify_all()
            return message_id

    def remaining(self) -> list[str]:
        with self._lock:
            return sorted(self._messages)

    def in_flight(self) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(1 for m in self._messages.values() if m.visible_at > now)

    def visible_in(self, message_id: str) -> float:
        with self._lock:
            return self._messages[message_id].visible_at - time.monotonic()

    # ---- QueueLike ---------------------------------------------------------------------------

    def receive(
        self, *, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Message]:
        assert 1 <= max_messages <= 10, max_messages
        with self._lock:
            self.requested.append((max_messages, len(self._messages)))
            self.receiving += 1
            self.max_receiving = max(self.max_receiving, self.receiving)
        try:
            return self._receive(max_messages, wait_seconds, visibility_timeout)
        finally:
            with self._lock:
                self.receiving -= 1

    def _receive(
        self, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Message]:
        deadline = time.monotonic() + min(wait_seconds, 0.2)  # short polls keep tests quick
        with self._lock:
            while True:
                if self.receive_error is not None:
                    raise self.receive_error
                now = time.monotonic()
                ready = [m for m in self._messages.values() if m.visible_at <= now]
                if ready or now >= deadline:
                    break
                self._lock.wait(deadline - now)
            out = []
            for stored in ready[:max_messages]:
                stored.receive_count += 1
                self.receive_counts[stored.message_id] = stored.receive_count
                stored.visible_at = now + visibility_timeout
                stored.receipt = f"r{next(self._receipts)}"
                out.append(
                    Message(
                        message_id=stored.message_id,
                        receipt_handle=stored.receipt,
                        body=stored.body,
                        receive_count=stored.receive_count,
                    )
                )
            self.max_in_flight = max(
                self.max_in_flight,
                sum(1 for m in self._messages.values() if m.visible_at > now),
            )
            return out

    def delete(self, messages: Sequence[Message]) -> BatchResult:
        ids = tuple(m.message_id for m in messages)
        with self._lock:
            call = self.delete_calls
            self.delete_calls += 1
            self.deleting += 1
            self.max_deleting = max(self.max_deleting, self.deleting)
        try:
            if self.delete_delay:
                time.sleep(self.delete_delay)
            if self.delete_gate is not None:
                assert self.delete_gate.wait(30), "the delete gate was never opened"
            if call in self.failing_delete_calls:  # as the adapter reports a failed call
                with self._lock:
                    self.failed_delete_calls.append(ids)
                result = BatchResult(
                    failed=tuple(BatchFailure(i, "InternalError", "") for i in ids)
                )
            else:
                result = self._batch(messages, self._delete_one)
            with self._lock:
                self.deletes_done.append((time.monotonic(), ids))
            return result
        finally:
            with self._lock:
                self.deleting -= 1

    def change_visibility(self, items: Sequence[tuple[Message, int]]) -> BatchResult:
        seconds = {m.message_id: s for m, s in items}

        def change(stored: _Stored, message: Message) -> None:
            self.visibility_calls.append((message.message_id, seconds[message.message_id]))
            stored.visible_at = time.monotonic() + seconds[message.message_id]
            if seconds[message.message_id] == 0:
                self._lock.notify_all()

        return self._batch([m for m, _ in items], change)

    def send(self, *, body: str, attributes: dict[str, str]) -> str:
        with self._lock:
            self.sent.append((body, dict(attributes)))
            return f"dlq{len(self.sent)}"

    def attributes(self, names: Sequence[str]) -> dict[str, str]:
        if self.attributes_error is not None:
            raise self.attributes_error
        return {"RedrivePolicy": '{"maxReceiveCount": "5"}'} if self.redrive else {}

    # ---- internals ---------------------------------------------------------------------------

    def _delete_one(self, stored: _Stored, message: Message) -> None:
        left = self.delete_failures.get(message.message_id, 0)
        if left:
            self.delete_failures[message.message_id] = left - 1
            raise QueueError("InternalError")
        del self._messages[stored.message_id]
        self.deleted.append(stored.message_id)

    def _batch(self, messages: Sequence[Message], action: object) -> BatchResult:
        ok: list[str] = []
        failed: list[BatchFailure] = []
        with self._lock:
            for message in messages:
                stored = self._messages.get(message.message_id)
                if stored is None or stored.receipt != message.receipt_handle:
                    failed.append(
                        BatchFailure(message.message_id, "ReceiptHandleIsInvalid", "stale")
                    )
                    continue
                try:
                    action(stored, message)  # type: ignore[operator]
                except QueueError as exc:
                    failed.append(BatchFailure(message.message_id, str(exc), "injected"))
                    continue
                ok.append(message.message_id)
        return BatchResult(succeeded=tuple(ok), failed=tuple(failed))
