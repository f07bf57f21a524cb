"""after_download: delete, without a network: which source a result deletes (``source_plan``),
which record is this event's own (``same_event``), what each answer of DeleteObject means,
and the If-Match header botocore sends with or without its own IfMatch parameter."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber

from s3sqsd import sources
from s3sqsd.config import parse_config
from s3sqsd.daemon import Daemon
from s3sqsd.errors import SourceDeleteError
from s3sqsd.events import ObjectCreated
from s3sqsd.outcomes import FetchOutcome, FetchResult
from s3sqsd.provenance import Provenance, same_event
from s3sqsd.routing import Placement, route
from s3sqsd.sources import Answer, Kept, Target, delete_source, source_plan

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/inbox"


def event(**changes: Any) -> ObjectCreated:
    values: dict[str, Any] = {
        "bucket": "inbox",
        "key": "a.csv",
        "event_name": "ObjectCreated:Put",
        "size": 3,
        "etag": "e1",
        "version_id": None,
        "sequencer": "0A",
        "event_time": "2026-01-01T00:00:00.000Z",
    }
    values.update(changes)
    return ObjectCreated(**values)


def result(outcome: FetchOutcome, **changes: Any) -> FetchResult:
    values: dict[str, Any] = {
        "outcome": outcome,
        "path": Path("/srv/in/a.csv"),
        "size": 3,
        "etag": "e1",
        "version_id": None,
        "duration_ms": 1,
    }
    values.update(changes)
    return FetchResult(**values)


# ---- source_plan ---------------------------------------------------------------------------


def test_a_download_of_the_announced_object_deletes_exactly_what_the_get_returned() -> None:
    got = result(FetchOutcome.DOWNLOADED, version_id="v1")
    assert source_plan(event(version_id="v1"), got) == Target("inbox", "a.csv", "v1", "e1")
    assert source_plan(event(etag='"e1"'), result(FetchOutcome.DOWNLOADED)) == Target(
        "inbox", "a.csv", None, "e1"
    )


def test_a_get_that_returned_a_newer_object_keeps_it_for_its_own_event() -> None:
    """Unversioned key overwritten between the event and the GET: the file holds the newer
    object; deleting it now would leave the newer object's event a 404."""
    got = result(FetchOutcome.DOWNLOADED, etag="e2")
    assert source_plan(event(), got) is Kept.NOT_ANNOUNCED


def test_an_event_without_an_etag_takes_the_downloaded_object_as_its_own() -> None:
    got = result(FetchOutcome.DOWNLOADED, etag="e2")
    assert source_plan(event(etag=None), got) == Target("inbox", "a.csv", None, "e2")


def test_stale_and_foreign_duplicates_keep_the_source() -> None:
    assert source_plan(event(), result(FetchOutcome.STALE, etag="e9")) is Kept.STALE
    assert source_plan(event(), result(FetchOutcome.DUPLICATE)) is Kept.DUPLICATE


def test_a_duplicate_that_is_this_events_own_download_deletes_the_recorded_version() -> None:
    own = result(FetchOutcome.DUPLICATE, version_id="v1", same_event=True)
    assert source_plan(event(version_id="v1"), own) == Target("inbox", "a.csv", "v1", "e1")


def test_folder_markers_and_conflicts_have_no_source_to_speak_of() -> None:
    marker = result(FetchOutcome.FOLDER_MARKER, path=None, size=0)
    assert source_plan(event(key="dir/"), marker) is None
    assert source_plan(event(), result(FetchOutcome.CONFLICT)) is None


def test_a_null_version_is_deleted_on_its_etag_like_no_version() -> None:
    assert Target("b", "k", "v1", "e").by_version
    assert not Target("b", "k", "null", "e").by_version
    assert not Target("b", "k", None, "e").by_version


# ---- same_event ----------------------------------------------------------------------------


def record(**changes: Any) -> Provenance:
    values: dict[str, Any] = {
        "bucket": "inbox",
        "key": "a.csv",
        "version_id": None,
        "etag": "e1",
        "sequencer": "0A",
        "size": 3,
        "event_time": "2026-01-01T00:00:00.000Z",
    }
    values.update(changes)
    return Provenance(**values)


def test_same_event_is_the_same_object_and_sequencer() -> None:
    assert same_event(event(), have=record())
    assert not same_event(event(sequencer="0B"), have=record())
    assert not same_event(event(), have=record(sequencer=None))  # a listing's file
    assert not same_event(event(), have=record(etag="e2"))
    assert not same_event(event(etag=None), have=record())
    assert not same_event(event(version_id="v2"), have=record(version_id="v1"))
    assert not same_event(event(key="b.csv"), have=record())
    assert not same_event(event(), have=None)


def test_without_sequencers_the_event_time_tells_the_same_event() -> None:
    assert same_event(event(sequencer=None), have=record(sequencer=None))
    later = event(sequencer=None, event_time="2026-01-01T00:00:09.000Z")
    assert not same_event(later, have=record(sequencer=None))
    assert not same_event(event(sequencer=None, event_time=None), have=record(sequencer=None))
    assert not same_event(event(sequencer=None), have=record())


# ---- delete_source: what each answer means -------------------------------------------------


@pytest.fixture
def s3() -> Any:
    return boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="eu-west-1"
    ).client("s3")


UNVERSIONED = Target("inbox", "a.csv", None, "e1")
VERSIONED = Target("inbox", "a.csv", "v1", "e1")


def test_a_version_is_deleted_by_its_id_and_anything_else_on_its_etag(s3: Any) -> None:
    with Stubber(s3) as stub:
        stub.add_response(
            "delete_object", {}, {"Bucket": "inbox", "Key": "a.csv", "VersionId": "v1"}
        )
        # Bookworm's botocore has no IfMatch: the header is added later (tested below).
        native = {"IfMatch": '"e1"'} if sources.has_if_match(s3) else {}
        stub.add_response("delete_object", {}, {"Bucket": "inbox", "Key": "a.csv", **native})
        assert delete_source(s3, VERSIONED) == Answer(None)
        assert delete_source(s3, UNVERSIONED) == Answer(None)
        stub.assert_no_pending_responses()


def test_without_an_etag_no_unconditional_delete_is_sent(s3: Any) -> None:
    with Stubber(s3) as stub:
        answer = delete_source(s3, Target("inbox", "a.csv", None, None))
        stub.assert_no_pending_responses()
    assert answer.kept is Kept.UNCONDITIONAL_ONLY


@pytest.mark.parametrize(
    ("target", "code", "status", "kept"),
    [
        (UNVERSIONED, "PreconditionFailed", 412, Kept.CHANGED),
        (UNVERSIONED, "NoSuchKey", 404, Kept.ABSENT),
        (VERSIONED, "NoSuchVersion", 404, Kept.ABSENT),
        (UNVERSIONED, "AccessDenied", 403, Kept.ACCESS_DENIED),
        (VERSIONED, "AccessDenied", 403, Kept.ACCESS_DENIED),
        (UNVERSIONED, "NotImplemented", 501, Kept.UNCONDITIONAL_ONLY),
        (VERSIONED, "NotImplemented", 501, Kept.REFUSED),
        (UNVERSIONED, "InvalidArgument", 400, Kept.REFUSED),
    ],
)
def test_refusals_a_retry_cannot_change_keep_the_source(
    s3: Any, target: Target, code: str, status: int, kept: Kept
) -> None:
    with Stubber(s3) as stub:
        stub.add_client_error(
            "delete_object", service_error_code=code, service_message="no", http_status_code=status
        )
        answer = delete_source(s3, target)
    assert answer.kept is kept
    assert answer.detail == f"{code} (HTTP {status}): no"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("InternalError", 500),
        ("ServiceUnavailable", 503),
        ("OperationAborted", 409),
        ("RequestTimeout", 400),
        ("ExpiredToken", 400),
    ],
)
def test_transient_failures_raise_for_a_retry(s3: Any, code: str, status: int) -> None:
    with Stubber(s3) as stub:
        stub.add_client_error("delete_object", service_error_code=code, http_status_code=status)
        with pytest.raises(SourceDeleteError, match=rf"DELETE s3://inbox/a.csv .*{code}"):
            delete_source(s3, UNVERSIONED)


def test_a_network_failure_raises_for_a_retry(s3: Any) -> None:
    def unreachable(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://s3.example/?X-Amz-Signature=abc")

    client = SimpleNamespace(meta=s3.meta, delete_object=unreachable)
    with pytest.raises(SourceDeleteError, match="version v1") as raised:
        delete_source(client, VERSIONED)
    assert "abc" not in str(raised.value)
    assert raised.value.reason == "source_delete_failed"


# ---- If-Match without botocore's IfMatch parameter (Debian bookworm's botocore) ------------


def test_the_handlers_send_if_match_on_that_call_only(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The path bookworm's botocore (no IfMatch in its model) takes, run on this one too: the
    value travels in the call's context and becomes the header of that DeleteObject only."""
    monkeypatch.setattr(sources, "has_if_match", lambda _s3: False)
    sent: list[tuple[str, object]] = []

    class Empty:
        def stream(self, **_: Any) -> Any:
            return iter(())

    def capture(request: Any, **_: Any) -> AWSResponse:
        value = request.headers.get("If-Match")
        sent.append((request.method, value.decode() if isinstance(value, bytes) else value))
        return AWSResponse(request.url, 204, {}, Empty())

    s3.meta.events.register("before-send.s3", capture)
    assert delete_source(s3, UNVERSIONED) == Answer(None)
    assert delete_source(s3, VERSIONED) == Answer(None)
    sources.register_if_match(s3)  # again: still one pair of handlers
    assert delete_source(s3, UNVERSIONED) == Answer(None)
    assert sent == [("DELETE", '"e1"'), ("DELETE", None), ("DELETE", '"e1"')]


# ---- configuration and placement -----------------------------------------------------------


def test_after_download_is_read_at_the_top_and_per_route() -> None:
    config = parse_config(
        {
            "sqs_queue_url": QUEUE,
            "after_download": "DELETE",
            "routes": [
                {"prefix": "keep/", "download_folder": "/srv/keep", "after_download": "keep"},
                {"download_folder": "/srv/rest"},
            ],
        }
    )
    assert config.after_download == "delete"
    assert [r.after_download for r in config.routes] == ["keep", None]
    kept, rest = route("inbox", "keep/a", config=config), route("inbox", "b", config=config)
    assert kept is not None
    assert rest is not None
    assert (kept.after_download, rest.after_download) == ("keep", "delete")
    assert parse_config({"sqs_queue_url": QUEUE}).after_download == "keep"
    plain = route("inbox", "a", config=parse_config({"sqs_queue_url": QUEUE}))
    assert plain is not None
    assert plain.after_download == "keep"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"after_download": "move"},
            "after_download: must be one of keep, delete, got 'move'",
        ),
        (
            {"after_download": "delet"},
            "after_download: must be one of keep, delete, got 'delet' (did you mean 'delete'?)",
        ),
        (
            {"after_download": True},
            "after_download: must be one of keep, delete, got true",
        ),
        (
            {"routes": [{"download_folder": "/srv/a", "after_download": "remove"}]},
            "routes[0].after_download: must be one of keep, delete, got 'remove'",
        ),
        (
            {"routes": [{"download_folder": "/srv/a", "after_downlaod": "delete"}]},
            "routes[0].after_downlaod: unknown key (did you mean 'after_download'?)",
        ),
    ],
)
def test_a_bad_after_download_is_one_line_naming_the_key(
    data: dict[str, Any], problem: str
) -> None:
    from s3sqsd.errors import ConfigError

    with pytest.raises(ConfigError) as raised:
        parse_config({"sqs_queue_url": QUEUE, **data})
    assert raised.value.problems == (problem,)


def test_the_daemon_keeps_every_field_of_a_placement_but_the_folder() -> None:
    """The worker's placement is routing's with the folder's Fetcher in its place: a per-route
    setting (after_download, on_download...) cannot be dropped on the way."""
    config = parse_config(
        {
            "sqs_queue_url": QUEUE,
            "on_download": {"command": ["/bin/true"]},
            "routes": [
                {
                    "prefix": "in/",
                    "strip_prefix": True,
                    "download_folder": "/srv/in",
                    "after_download": "delete",
                }
            ],
        }
    )
    daemon = SimpleNamespace(_routing_config=config, _fetchers={Path("/srv/in"): "fetcher"})
    placed = Daemon._place(daemon, "inbox", "in/a")  # type: ignore[arg-type]
    routed = route("inbox", "in/a", config=config)
    assert placed is not None
    assert routed is not None
    assert placed.folder == "fetcher"
    for field in fields(Placement):
        if field.name != "folder":
            assert getattr(placed, field.name) == getattr(routed, field.name), field.name
    assert placed.after_download == "delete"


# ---- s3sqsd check --------------------------------------------------------------------------


def test_check_lines_name_each_place_that_deletes_and_never_test_it(s3: Any) -> None:
    from s3sqsd.preflight_sources import deleting, source_delete_lines

    assert list(deleting(parse_config({"sqs_queue_url": QUEUE}))) == []
    anywhere = parse_config({"sqs_queue_url": QUEUE, "after_download": "delete"})
    assert list(deleting(anywhere)) == [(None, None)]
    (line,) = source_delete_lines(s3, anywhere)
    assert line.startswith("any bucket: events may name any bucket")

    allowed = parse_config(
        {"sqs_queue_url": QUEUE, "after_download": "delete", "s3_bucket_name": ["a", "b"]}
    )
    with Stubber(s3) as stub:
        stub.add_client_error("get_bucket_versioning", "AccessDenied", http_status_code=403)
        stub.add_response("get_bucket_versioning", {"Status": "Suspended"}, {"Bucket": "b"})
        denied, suspended = source_delete_lines(s3, allowed)
    assert denied.startswith("s3://a/: versioning unknown (GetBucketVersioning: Access")
    assert "s3:DeleteObjectVersion if the bucket is versioned" in denied
    assert suspended.startswith("s3://b/: versioning suspended: ")
    one = parse_config({"sqs_queue_url": QUEUE, "after_download": "delete", "s3_bucket_name": "a"})
    (skipped,) = source_delete_lines(
        s3, one, skip_reason="not checked: the endpoint is unreachable"
    )
    assert skipped.startswith("s3://a/: not checked: the endpoint is unreachable")


def test_a_router_of_per_bucket_clients_is_asked_for_the_buckets_client(s3: Any) -> None:
    """An S3 object that sends each bucket's calls to a client of its own (``for_bucket``):
    the delete, its If-Match and the check's GetBucketVersioning use that client."""
    from s3sqsd.preflight_sources import source_delete_lines

    asked: list[str] = []

    class Router:
        def for_bucket(self, bucket: str) -> Any:
            asked.append(bucket)
            return s3

    with Stubber(s3) as stub:
        native = {"IfMatch": '"e1"'} if sources.has_if_match(s3) else {}
        stub.add_response("delete_object", {}, {"Bucket": "inbox", "Key": "a.csv", **native})
        stub.add_response("get_bucket_versioning", {"Status": "Enabled"}, {"Bucket": "inbox"})
        assert delete_source(Router(), UNVERSIONED) == Answer(None)
        config = parse_config(
            {"sqs_queue_url": QUEUE, "after_download": "delete", "s3_bucket_name": "inbox"}
        )
        (line,) = source_delete_lines(Router(), config)
    assert "versioned: " in line
    assert asked == ["inbox", "inbox"]


def test_the_handlers_are_registered_on_every_client_before_any_thread_uses_it(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fetcher_for registers them (botocore's emitter is not made to change while other
    threads emit), on each client a router lists."""
    from s3sqsd.fetchers import fetcher_for
    from s3sqsd.limits import Limits

    other = boto3.session.Session(
        aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret", region_name="eu-west-1"
    ).client("s3")
    registered: list[Any] = []
    monkeypatch.setattr(sources, "has_if_match", lambda _s3: False)
    monkeypatch.setattr(sources, "register_if_match", registered.append)

    class Router:
        def clients(self) -> tuple[Any, ...]:
            return (s3, other)

    config = parse_config({"sqs_queue_url": QUEUE})
    fetcher_for(
        config,
        Path("/srv/in"),
        s3=Router(),
        parts=None,  # type: ignore[arg-type]
        checksums=None,  # type: ignore[arg-type]
        limits=Limits.none(),
    )
    assert registered == [s3, other]
