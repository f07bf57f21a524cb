"""What to do with one received message, decided before any I/O: a pure function.

``plan_message`` makes every admission, routing and removal decision the loop makes for a
message body (parse it, check the bucket allow-list, route each object, pick the removals to
act on); ``Worker._accept`` only acts on the answer (logs, metrics, submit, acknowledge,
dead-letter). Kept apart so the decisions can be tested, and the hostile corpus run through
them, without queues, threads or a clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from s3sqsd.errors import BucketNotAllowedError, MessageError, PermanentError, UnroutedError
from s3sqsd.events import (
    ObjectCreated,
    OtherRecord,
    TestEvent,
    is_removal,
    object_url,
    parse_message,
)
from s3sqsd.outcomes import FetchResult, RemoveOutcome
from s3sqsd.provenance import Origin
from s3sqsd.routing import Placement
from s3sqsd.sources import Answer, Target
from s3sqsd.worker.settings import WorkerSettings


class FetcherLike(Protocol):
    def fetch(
        self,
        obj: ObjectCreated,
        *,
        cancel: threading.Event,
        key_path: str | None = None,
        origin: Origin | None = None,
    ) -> FetchResult: ...

    def remove(self, record: OtherRecord, *, key_path: str | None = None) -> RemoveOutcome: ...

    def delete_source(self, target: Target) -> Answer: ...


# The daemon's routing (``routing.route``, the folder's Fetcher swapped in); None: no route.
Place = Callable[[str, str], Placement[FetcherLike] | None]


@dataclass(frozen=True, slots=True)
class FetchItem:
    """An object to download, and where."""

    obj: ObjectCreated
    placement: Placement[FetcherLike]


@dataclass(frozen=True, slots=True)
class RemoveItem:
    """A removal event to act on (``on_remove: delete``): the local file it names goes."""

    record: OtherRecord
    placement: Placement[FetcherLike]


Item = FetchItem | RemoveItem


@dataclass(frozen=True, slots=True)
class MessagePlan:
    """The decisions for one message, in the order the loop acts on them.

    ``ignored`` records and ``unrouted`` objects are acknowledged (each logged); then either
    ``error`` fails the message (permanent errors are dead-lettered), or ``items`` are handed to
    a download thread, or, with neither, the message is done (acknowledged). ``ignored`` and
    ``unrouted`` hold only what was decided before the first refusal, as the loop logged them.
    """

    error: MessageError | None = None
    test_event: TestEvent | None = None
    items: tuple[Item, ...] = ()
    ignored: tuple[OtherRecord, ...] = ()
    unrouted: tuple[ObjectCreated, ...] = ()


def plan_message(*, body: str, settings: WorkerSettings, place: Place) -> MessagePlan:
    """Decide what to do with a message body: parse, allow-list, route, stopping at the first
    refusal (the allow-list is checked for every object before any is routed)."""
    try:
        parsed = parse_message(body, decoding=settings.key_decoding)
    except PermanentError as exc:
        return MessagePlan(error=exc)
    if parsed.test_event is not None:
        return MessagePlan(test_event=parsed.test_event)
    items: list[Item] = []
    ignored: list[OtherRecord] = []
    for record in parsed.other:
        if settings.on_remove == "delete" and is_removal(record.event_name):
            placement = place(record.bucket, record.key)
            if placement is not None:
                items.append(RemoveItem(record, placement))
                continue
        ignored.append(record)
    if settings.allowed_buckets:
        for obj in parsed.created:
            if obj.bucket not in settings.allowed_buckets:
                return MessagePlan(
                    error=BucketNotAllowedError(
                        f"{object_url(obj.bucket, obj.key)}: bucket {obj.bucket!r} is not "
                        "in s3_bucket_name"
                    ),
                    ignored=tuple(ignored),
                )
    unrouted: list[ObjectCreated] = []
    for obj in parsed.created:
        placement = place(obj.bucket, obj.key)
        if placement is not None:
            items.append(FetchItem(obj, placement))
        elif settings.unrouted == "dead_letter":
            return MessagePlan(
                error=UnroutedError(f"{object_url(obj.bucket, obj.key)}: no route takes it"),
                ignored=tuple(ignored),
                unrouted=tuple(unrouted),
            )
        else:
            unrouted.append(obj)
    return MessagePlan(items=tuple(items), ignored=tuple(ignored), unrouted=tuple(unrouted))
