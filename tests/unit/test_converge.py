"""converge.py: every branch of ``decide`` and ``removable``."""

from __future__ import annotations

import datetime
from pathlib import Path

from s3sqsd.converge import Action, LocalKind, LocalState, decide, removable
from s3sqsd.listing import Listed, Target
from s3sqsd.provenance import Provenance

LISTED = Listed(bucket="b", key="k", size=5, etag="e1", last_modified=None)


def record(**fields: object) -> Provenance:
    values: dict[str, object] = {
        "bucket": "b",
        "key": "k",
        "version_id": None,
        "etag": "e1",
        "sequencer": None,
        "size": 5,
        **fields,
    }
    return Provenance(**values)  # type: ignore[arg-type]


def ours(**fields: object) -> LocalState:
    return LocalState(kind=LocalKind.OURS, provenance=record(**fields))


def test_missing_downloads() -> None:
    assert decide(LISTED, LocalState(kind=LocalKind.MISSING)).action is Action.DOWNLOAD


def test_same_provenance_skips() -> None:
    assert decide(LISTED, ours()).action is Action.SKIP
    assert decide(LISTED, ours(version_id="v9")).action is Action.SKIP  # the listing has none


def test_other_etag_or_size_of_the_same_key_replaces() -> None:
    assert decide(LISTED, ours(etag="e0")).action is Action.REPLACE
    assert decide(LISTED, ours(size=4)).action is Action.REPLACE


def test_another_version_is_replaced_whatever_the_last_modified_order() -> None:
    """A multipart object's LastModified is when its upload began: the listed (current) object
    may look older than the file. The fetcher orders them, asking S3; decide never skips."""
    listed_at = datetime.datetime(2026, 12, 6, 12, 0, 0, tzinfo=datetime.UTC)
    listed = Listed(bucket="b", key="k", size=5, etag="e2", last_modified=listed_at)
    at = int(listed_at.timestamp())
    for recorded in (at + 1, at - 1, at, None):
        assert decide(listed, ours(last_modified=recorded)).action is Action.REPLACE


def test_listing_without_etag_replaces() -> None:
    listed = Listed(bucket="b", key="k", size=5, etag=None, last_modified=None)
    assert decide(listed, ours()).action is Action.REPLACE


def test_file_without_provenance_is_a_conflict() -> None:
    decision = decide(LISTED, LocalState(kind=LocalKind.FOREIGN))
    assert decision.action is Action.CONFLICT
    assert "did not write" in decision.reason
    assert decide(LISTED, LocalState(kind=LocalKind.OURS)).action is Action.CONFLICT


def test_not_a_regular_file_is_a_conflict() -> None:
    assert decide(LISTED, LocalState(kind=LocalKind.NOT_REGULAR)).action is Action.CONFLICT


def test_file_of_another_object_is_a_conflict() -> None:
    assert decide(LISTED, ours(key="other")).action is Action.CONFLICT
    assert decide(LISTED, ours(bucket="other")).action is Action.CONFLICT


PATH = Path("/d/k")
ALL = (Target(bucket="b", prefix=""),)


def test_orphan_of_a_complete_listing_is_removable() -> None:
    assert removable(record(), path=PATH, home=PATH, complete=ALL, listed=set())


def test_listed_object_is_not_removable() -> None:
    assert not removable(record(), path=PATH, home=PATH, complete=ALL, listed={("b", "k")})


def test_file_away_from_its_objects_home_is_not_removable() -> None:
    assert not removable(record(), path=Path("/d/copy"), home=PATH, complete=ALL, listed=set())
    assert not removable(record(), path=PATH, home=None, complete=ALL, listed=set())


def test_object_outside_every_complete_listing_is_not_removable() -> None:
    other_prefix = (Target(bucket="b", prefix="sub/"),)
    other_bucket = (Target(bucket="c", prefix=""),)
    for complete in (other_prefix, other_bucket, ()):
        assert not removable(record(), path=PATH, home=PATH, complete=complete, listed=set())
