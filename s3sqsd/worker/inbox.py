"""What the other threads tell the loop: one typed event per fact, through one queue.

The loop thread is the only owner of the leases; receivers, download threads and the settler
thread never touch them, they put one of these in the inbox and the loop acts on it. Frozen
dataclasses rather than tagged tuples, so that the type checker knows what each one carries.
"""

from __future__ import annotations

import queue
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING

from s3sqsd.sqs import BatchResult, Message

if TYPE_CHECKING:
    from s3sqsd.worker.lease import Lease


@dataclass(frozen=True, slots=True)
class Received:
    """A receiver thread's poll brought these messages (never empty)."""

    messages: tuple[Message, ...]
    received_at: float
    # The visibility timeout the poll asked for: a reload during a 20 s poll may have changed
    # the setting since, and the renewal must count from what SQS was told.
    visibility_timeout_seconds: int


@dataclass(frozen=True, slots=True)
class ReceiveFailed:
    """A receive failed (the receiver logs it once per change of state; this feeds STATUS)."""

    error: str


@dataclass(frozen=True, slots=True)
class Finished:
    """A download thread finished the work of this lease (its future holds the outcome)."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class Deleted:
    """The settler thread's DeleteMessageBatch answered (or raised: the future says)."""

    answer: Future[BatchResult]


@dataclass(frozen=True, slots=True)
class Wake:
    """Nothing happened but the loop should look now: a signal (stop, reload) arrived."""


InboxEvent = Received | ReceiveFailed | Finished | Deleted | Wake
Inbox = queue.SimpleQueue[InboxEvent]
WAKE = Wake()
