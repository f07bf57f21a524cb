"""plan_message: the admission, routing and removal decisions for one message, without I/O."""

from __future__ import annotations

import dataclasses
import json
import threading

import pytest

from s3sqsd.errors import (
    BucketNotAllowedError,
    MessageFormatError,
    PermanentError,
    UnroutedError,
)
from s3sqsd.events import ObjectCreated, OtherRecord
from s3sqsd.fetcher import FetchResult, RemoveOutcome
from s3sqsd.provenance import Origin
from s3sqsd.routing import Placement
from s3sqsd.worker import FetcherLike, MessagePlan, WorkerSettings, plan_message
from s3sqsd.worker.plan import FetchItem, RemoveItem
from tests.support.events import notification, s3_record


class NoFetcher:
    """Never called: planning does no I/O."""

    def fetch(
        self,
        obj: ObjectCreated,
        *,
        cancel: threading.Event,
        key_path: str | None = None,
        origin: Origin | None = None,
    ) -> FetchResult:
        raise AssertionError("plan_message fetched")

    def remove(self, record: OtherRecord, *, key_path: str | None = None) -> RemoveOutcome:
        raise AssertionError("plan_message removed")


PLACEMENT = Placement(folder=NoFetcher())
ROUTED = Placement(folder=NoFetcher(), key_path="routed", route_index=0)


def everywhere(_bucket: str, _key: str) -> Placement[FetcherLike] | None:
    return PLACEMENT


def only_under_routed(_bucket: str, key: str) -> Placement[FetcherLike] | None:
    return ROUTED if key.startswith("routed/") else None


def record(bucket: str, key: str, event_name: str = "ObjectCreated:Put") -> dict[str, object]:
    return s3_record(bucket, key, event_name=event_name)


body = notification


def keys(plan: MessagePlan) -> list[str]:
    return [item.obj.key if isinstance(item, FetchItem) else item.record.key for item in plan.items]


def test_an_allowed_bucket_is_fetched_in_order() -> None:
    settings = WorkerSettings(allowed_buckets=frozenset({"inbox"}))
    plan = plan_message(
        body=body(record("inbox", "a"), record("inbox", "b")), settings=settings, place=everywhere
    )
    assert plan.error is None
    assert plan.test_event is None
    assert keys(plan) == ["a", "b"]
    assert all(isinstance(item, FetchItem) and item.placement is PLACEMENT for item in plan.items)
    assert plan.ignored == plan.unrouted == ()


def test_without_an_allow_list_every_bucket_is_fetched() -> None:
    plan = plan_message(body=body(record("x", "a")), settings=WorkerSettings(), place=everywhere)
    assert plan.error is None
    assert keys(plan) == ["a"]


def test_another_bucket_refuses_the_whole_message() -> None:
    """One object of a bucket not allowed fails the message: nothing of it is fetched, even
    the objects of an allowed bucket listed before it."""
    settings = WorkerSettings(allowed_buckets=frozenset({"inbox"}))
    plan = plan_message(
        body=body(record("inbox", "a"), record("elsewhere", "b")),
        settings=settings,
        place=everywhere,
    )
    assert isinstance(plan.error, BucketNotAllowedError)
    assert plan.error.reason == "bucket_not_allowed"
    assert "'elsewhere' is not in s3_bucket_name" in str(plan.error)
    assert plan.items == ()


def test_unrouted_acknowledge_keeps_the_routed_objects() -> None:
    settings = WorkerSettings(unrouted="acknowledge")
    plan = plan_message(
        body=body(record("b", "routed/a"), record("b", "stray"), record("b", "routed/c")),
        settings=settings,
        place=only_under_routed,
    )
    assert plan.error is None
    assert keys(plan) == ["routed/a", "routed/c"]
    assert all(isinstance(item, FetchItem) and item.placement is ROUTED for item in plan.items)
    assert [obj.key for obj in plan.unrouted] == ["stray"]


def test_unrouted_acknowledge_alone_leaves_nothing_to_do() -> None:
    plan = plan_message(
        body=body(record("b", "stray")), settings=WorkerSettings(), place=only_under_routed
    )
    assert plan == MessagePlan(unrouted=plan.unrouted)
    assert [obj.key for obj in plan.unrouted] == ["stray"]


def test_unrouted_dead_letter_fails_the_message_at_the_first_unrouted_object() -> None:
    settings = WorkerSettings(unrouted="dead_letter")
    plan = plan_message(
        body=body(record("b", "routed/a"), record("b", "stray"), record("b", "other")),
        settings=settings,
        place=only_under_routed,
    )
    assert isinstance(plan.error, UnroutedError)
    assert isinstance(plan.error, PermanentError)
    assert "stray" in str(plan.error)
    assert "no route takes it" in str(plan.error)
    assert plan.items == ()
    assert plan.unrouted == ()


def test_removals_are_ignored_with_on_remove_keep() -> None:
    plan = plan_message(
        body=body(record("b", "gone", "ObjectRemoved:Delete")),
        settings=WorkerSettings(on_remove="keep"),
        place=everywhere,
    )
    assert plan.error is None
    assert plan.items == ()
    assert [(r.key, r.event_name) for r in plan.ignored] == [("gone", "ObjectRemoved:Delete")]


def test_removals_are_acted_on_with_on_remove_delete() -> None:
    plan = plan_message(
        body=body(
            record("b", "gone", "ObjectRemoved:Delete"),
            record("b", "new"),
            record("b", "marker", "ObjectRemoved:DeleteMarkerCreated"),
        ),
        settings=WorkerSettings(on_remove="delete"),
        place=everywhere,
    )
    assert plan.error is None
    # Removals first (records other than creations come first), then the downloads.
    assert [type(item) for item in plan.items] == [RemoveItem, RemoveItem, FetchItem]
    assert keys(plan) == ["gone", "marker", "new"]
    assert plan.ignored == ()


def test_an_unrouted_removal_is_ignored_even_with_on_remove_delete() -> None:
    plan = plan_message(
        body=body(record("b", "stray", "ObjectRemoved:Delete")),
        settings=WorkerSettings(on_remove="delete"),
        place=only_under_routed,
    )
    assert plan.items == ()
    assert [r.key for r in plan.ignored] == ["stray"]


def test_a_lifecycle_expiration_is_not_a_removal() -> None:
    plan = plan_message(
        body=body(record("b", "old", "LifecycleExpiration:Delete")),
        settings=WorkerSettings(on_remove="delete"),
        place=everywhere,
    )
    assert plan.items == ()
    assert [r.key for r in plan.ignored] == ["old"]


def test_ignored_records_are_kept_when_the_bucket_is_refused() -> None:
    """The loop logs the ignored records before it dead-letters the message, as it always did."""
    settings = WorkerSettings(allowed_buckets=frozenset({"inbox"}))
    plan = plan_message(
        body=body(record("inbox", "gone", "ObjectRemoved:Delete"), record("elsewhere", "a")),
        settings=settings,
        place=everywhere,
    )
    assert isinstance(plan.error, BucketNotAllowedError)
    assert [r.key for r in plan.ignored] == ["gone"]


def test_a_test_event_is_acknowledged() -> None:
    plan = plan_message(
        body=json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}),
        settings=WorkerSettings(allowed_buckets=frozenset({"other"})),
        place=everywhere,
    )
    assert plan.error is None
    assert plan.test_event is not None
    assert plan.test_event.bucket == "b"
    assert plan.items == ()


def test_a_bad_body_is_a_permanent_error() -> None:
    for text in ("not json", "{}", json.dumps({"Records": "nope"})):
        plan = plan_message(body=text, settings=WorkerSettings(), place=everywhere)
        assert isinstance(plan.error, MessageFormatError), text
        assert plan.error.reason == "bad_message"
        assert plan.items == plan.ignored == plan.unrouted == ()


def test_the_plan_is_a_frozen_value() -> None:
    plan = plan_message(body=body(record("b", "a")), settings=WorkerSettings(), place=everywhere)
    assert plan == plan_message(
        body=body(record("b", "a")), settings=WorkerSettings(), place=everywhere
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.items = ()  # type: ignore[misc]
