"""A message in hand (``Lease``) and what a download thread reports for it (``Outcome``).

Kept apart from the loop so that the record every thread kind touches, and which of its fields
each may touch, is written down in one short place.
"""

from __future__ import annotations

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


@dataclass(slots=True, eq=False)
class Lease:
    """A message in hand, from its receive until it is deleted, returned or released.

    Owned by the loop thread: only the loop reads or writes it, except ``holds_capacity``,
    which a download thread may clear too (``Receivers.give_back``, under the capacity lock).
    Mutable on purpose: a lease's state changes many times while it is in hand, and the
    loop finds it again by identity (``eq=False``), never by value.
    """

    message: Message
    received_at: float
    visible_until: float
    future: Future[Outcome] | None = None
    delete_tries: int = 0
    cap_warned: bool = False
    lost: bool = False
    items: tuple[Item, ...] = ()
    retry_at: float | None = None  # a local failure: kept in hand, tried again at this time
    holds_capacity: bool = True  # False once only its delete is left; ``Receivers.give_back``
    deleting: bool = False  # in the DeleteMessageBatch the settler thread is making
    delete_queued_at: float = 0.0  # when its delete was queued (``Settler._queue_delete``)
