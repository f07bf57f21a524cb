"""A message in hand (``Lease``), its stages, and what a download thread reports (``Outcome``).

Kept apart from the loop so that the record every thread kind touches, the stages it goes
through and which thread may move it, are written down in one short place. A move the table
does not allow is a bug in the worker: it raises ``LeaseStageError`` at once (the daemon stops,
systemd restarts it, the message comes back) rather than settling a message twice or never.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

from s3sqsd.errors import MessageError
from s3sqsd.sqs import Message
from s3sqsd.worker.plan import Item


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a download thread reports for one message."""

    error: MessageError | None = None
    downloaded: int = 0
    size: int = 0  # bytes of the objects downloaded (workers: auto weighs throughput by them)


class Stage(enum.Enum):
    """Where a message in hand is. Every stage but ``SETTLED`` is renewed while it lasts."""

    WORKING = "working"  # planned; with a download thread (queued or running), or about to be
    KEPT = "kept"  # a local failure (disk full): held, submitted again at ``retry_at``
    DEAD_LETTERING = "dead_lettering"  # its copy to the dead-letter queue is pending
    DELETE_QUEUED = "delete_queued"  # work over: its delete waits for a batch to fill
    DELETING = "deleting"  # in a DeleteMessageBatch a settler thread is making
    RETURNING = "returning"  # its visibility change (a retry delay, a release) is pending
    SETTLED = "settled"  # deleted, returned, released or given up: no longer in hand


# Each named move and the stages it may start from.
_MOVES: dict[str, tuple[frozenset[Stage], Stage]] = {
    "start": (frozenset({Stage.WORKING, Stage.KEPT}), Stage.WORKING),
    "keep": (frozenset({Stage.WORKING}), Stage.KEPT),
    "dead_letter": (frozenset({Stage.WORKING}), Stage.DEAD_LETTERING),
    "queue_delete": (
        frozenset({Stage.WORKING, Stage.DEAD_LETTERING, Stage.DELETING}),
        Stage.DELETE_QUEUED,
    ),
    "send_delete": (frozenset({Stage.DELETE_QUEUED}), Stage.DELETING),
    "return_to_queue": (
        frozenset({Stage.WORKING, Stage.KEPT, Stage.DEAD_LETTERING}),
        Stage.RETURNING,
    ),
}


class LeaseStageError(RuntimeError):
    """A move the stage table does not allow: a bug in the worker, never a message's fault."""


@dataclass(slots=True, eq=False)
class Lease:
    """A message in hand, from its receive until it is deleted, returned or released.

    Owned by the loop thread: only the loop moves it, through the named moves below. The one
    field another thread writes is ``holds_capacity``, a token rather than a stage: a download
    thread that succeeded gives its place back before the loop sees the result, so it is
    tested and cleared under the capacity condition (``Capacity.give_back``). Mutable on
    purpose, and found again by identity (``eq=False``), never by value.
    """

    message: Message
    received_at: float
    visible_until: float
    stage: Stage = Stage.WORKING
    items: tuple[Item, ...] = ()
    future: Future[Outcome] | None = None
    retry_at: float = 0.0  # in KEPT: when it is submitted again
    delete_queued_at: float = 0.0  # in DELETE_QUEUED: when (the linger counts from it)
    delete_tries: int = 0
    holds_capacity: bool = True  # guarded by ``Capacity``; see the class docstring
    lent: bool = False  # a large message: its place is one of the large lane's (``Capacity.lend``)

    def _move(self, move: str) -> None:
        allowed, to = _MOVES[move]
        if self.stage not in allowed:
            raise LeaseStageError(
                f"message {self.message.message_id}: cannot {move} from {self.stage.value}"
            )
        self.stage = to

    def start(self, future: Future[Outcome]) -> None:
        """Handed to a download thread (first time, or again after a local failure)."""
        self._move("start")
        self.future = future

    def keep(self, *, until: float) -> None:
        """A local failure: held in hand (visibility renewed) and tried again ``until``."""
        self._move("keep")
        self.future = None
        self.retry_at = until

    def dead_letter(self) -> None:
        """Its copy to the dead-letter queue is queued; the delete follows once it is sent."""
        self._move("dead_letter")

    def queue_delete(self, *, now: float) -> None:
        """Its work is over (or a delete failed and is tried again): wait for a batch."""
        self._move("queue_delete")
        self.delete_queued_at = now

    def send_delete(self) -> None:
        """In a batch a settler thread is deleting now."""
        self._move("send_delete")

    def return_to_queue(self) -> None:
        """Made visible again (later, or now for another consumer); settled once sent."""
        self._move("return_to_queue")

    def settle(self) -> None:
        """No longer in hand, whatever the stage: the loop forgets it."""
        self.stage = Stage.SETTLED


class Capacity:
    """How many messages may be in hand, and how many are: the one state three kinds of
    thread write (receivers reserve, download threads and the loop give back), all under one
    condition. A lease's place is given back once, whoever comes first (``give_back``).

    The limit is the small lane's slots plus its prefetch (``resize``); a large message's place
    is lent on top of it, up to ``lane`` of them (``lend``), so large objects in hand never
    take the places the small ones are received into (``concurrency``: *Fairness*).
    """

    def __init__(self, *, limit: int, lane: int = 0) -> None:
        self._condition = threading.Condition()
        self._limit = limit
        self._lane = lane
        self._lent = 0
        self._reserved = 0

    def resize(self, limit: int, *, lane: int | None = None) -> None:
        """A new limit (the tuner, a reload): the next reservation uses it; waiting receivers
        look again. Places reserved beyond a lowered limit are simply not given out again."""
        with self._condition:
            self._limit = limit
            if lane is not None:
                self._lane = lane
            self._condition.notify_all()

    def limit(self) -> int:
        """The small lane's places (slots and prefetch), without those lent."""
        return self._limit

    def lend(self, lease: Lease) -> None:
        """A large message (loop thread): its place becomes one of the large lane's, if one
        is left, and a place for a small message comes free."""
        with self._condition:
            if lease.holds_capacity and not lease.lent and self._lent < self._lane:
                lease.lent = True
                self._lent += 1
                self._condition.notify_all()

    def reserve(self, *, least: int, most: int, timeout: float) -> int:
        """Reserve between ``least`` and ``most`` places, waiting up to ``timeout`` for
        ``least`` to come free; 0 if they did not."""
        with self._condition:
            if not self._condition.wait_for(lambda: self.free() >= least, timeout):
                return 0
            wanted = min(most, self.free())
            self._reserved += wanted
            return wanted

    def free(self) -> int:
        return self._limit + self._lent - self._reserved

    def unreserve(self, count: int) -> None:
        """Places reserved for a receive that brought fewer messages (or failed)."""
        if count <= 0:
            return
        with self._condition:
            self._reserved -= count
            self._condition.notify_all()

    def give_back(self, lease: Lease) -> None:
        """Return the lease's place, once: the download thread (a success) and the loop
        thread (done, forgotten) may both try, so the token is tested and cleared here."""
        with self._condition:
            if lease.holds_capacity:
                lease.holds_capacity = False
                self._reserved -= 1
                if lease.lent:
                    self._lent -= 1
                self._condition.notify_all()


class Leases:
    """The messages in hand, by receipt handle: the loop thread's own table, and the only
    place a lease is let go (``forget``: settled, and its capacity given back)."""

    def __init__(self, *, capacity: Capacity) -> None:
        self._capacity = capacity
        self._by_receipt: dict[str, Lease] = {}

    def __len__(self) -> int:
        return len(self._by_receipt)

    def __iter__(self) -> Iterator[Lease]:
        """A snapshot: the loop may forget leases while it walks them."""
        return iter(list(self._by_receipt.values()))

    def add(self, lease: Lease) -> None:
        self._by_receipt[lease.message.receipt_handle] = lease

    def holds(self, lease: Lease) -> bool:
        """Still in hand (not released, returned or abandoned meanwhile)."""
        return self._by_receipt.get(lease.message.receipt_handle) is lease

    def forget(self, leases: Iterable[Lease]) -> None:
        for lease in leases:
            if self._by_receipt.pop(lease.message.receipt_handle, None) is not None:
                lease.settle()
                self._capacity.give_back(lease)

    @staticmethod
    def kept(leases: Iterable[Lease]) -> list[Lease]:
        return [lease for lease in leases if lease.stage is Stage.KEPT]

    def in_stage(self, stage: Stage) -> list[Lease]:
        return [lease for lease in self._by_receipt.values() if lease.stage is stage]
