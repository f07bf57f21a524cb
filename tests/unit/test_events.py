"""Table tests for s3sqsd.events: fixtures shaped as AWS documents them, then every rejection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.errors import KeyDecodingError, MessageFormatError, PermanentError
from s3sqsd.events import (
    KeyDecoding,
    KeyDecodingPolicy,
    ObjectCreated,
    OtherRecord,
    ParsedMessage,
    Source,
    TestEvent,
    decode_key,
    event_time_earlier,
    object_url,
    parse_message,
    sequencer_newer,
)
from tests.support.events import notification

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "events"
URL = KeyDecodingPolicy()
RAW_EVENTBRIDGE = KeyDecodingPolicy(eventbridge=KeyDecoding.NONE)
RAW_ALL = KeyDecodingPolicy(notifications=KeyDecoding.NONE, eventbridge=KeyDecoding.NONE)

# The peers.md section 4 key, as sent in notifications and after decoding.
KEY_SENT = "reports/Q1+2024/na%C3%AFve+caf%C3%A9%2Br%C3%A9sum%C3%A9%3Dv2.pdf"
KEY = "reports/Q1 2024/naïve café+résumé=v2.pdf"

PUT_VERSIONED = ObjectCreated(
    bucket="acme-inbox",
    key=KEY,
    event_name="ObjectCreated:Put",
    size=1048576,
    etag="d41d8cd98f00b204e9800998ecf8427e",
    version_id="096fKKXTRTtl3on89fVO.nfljtsv6qko",
    sequencer="0055AED6DCD90281E5",
    event_time="2026-03-01T12:00:00.000Z",
)

# fixture file -> (decoding policy, expected ParsedMessage or (error class, text in message))
EXPECTED: dict[str, tuple[KeyDecodingPolicy, ParsedMessage | tuple[type[Exception], str]]] = {
    "s3_put_versioned.json": (URL, ParsedMessage(source=Source.S3, created=(PUT_VERSIONED,))),
    "s3_multi_record.json": (
        URL,
        ParsedMessage(
            source=Source.S3,
            created=(
                ObjectCreated(
                    bucket="acme-inbox",
                    key="inbox/2026/a b.csv",
                    event_name="ObjectCreated:Put",
                    size=12,
                    etag="0cc175b9c0f1b6a831c399e269772661",
                    sequencer="0055AED6DCD90281A0",
                    event_time="2026-03-01T12:00:00.000Z",
                ),
                ObjectCreated(
                    bucket="acme-inbox",
                    key="inbox/2026/dt=2024-01-01/part+1.csv",
                    event_name="ObjectCreated:Copy",
                    size=0,
                    etag="d41d8cd98f00b204e9800998ecf8427e",
                    sequencer="0055AED6DCD90281A2",
                    event_time="2026-03-01T12:00:00.000Z",
                ),
            ),
            other=(
                OtherRecord(
                    bucket="acme-inbox",
                    key="inbox/2026/old.csv",
                    event_name="ObjectRemoved:Delete",
                    sequencer="0055AED6DCD90281A1",
                ),
            ),
        ),
    ),
    "s3_multipart.json": (
        URL,
        ParsedMessage(
            source=Source.S3,
            created=(
                ObjectCreated(
                    bucket="acme-inbox",
                    key="backups/db.tar.gz",
                    event_name="ObjectCreated:CompleteMultipartUpload",
                    size=5368709120,
                    etag="5f363e0e58a95f06cbe9bbc662c5dfb6-640",
                    sequencer="0055AED6DCD902AB00",
                    event_time="2026-03-01T12:00:00.000Z",
                ),
            ),
        ),
    ),
    "sns_envelope.json": (URL, ParsedMessage(source=Source.SNS, created=(PUT_VERSIONED,))),
    "sns_test_event.json": (
        URL,
        ParsedMessage(source=Source.SNS, test_event=TestEvent(bucket="acme-inbox")),
    ),
    "s3_test_event.json": (
        URL,
        ParsedMessage(source=Source.S3, test_event=TestEvent(bucket="acme-inbox")),
    ),
    "eventbridge_object_created.json": (
        RAW_EVENTBRIDGE,
        ParsedMessage(
            source=Source.EVENTBRIDGE,
            created=(
                ObjectCreated(
                    bucket="acme-inbox",
                    key=KEY,
                    event_name="Object Created",
                    size=1048576,
                    etag="b1946ac92492d2347c6235b4d2611184",
                    version_id="IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                    sequencer="617f08299329d189",
                    event_time="2026-03-01T12:00:00Z",
                ),
            ),
        ),
    ),
    "eventbridge_object_deleted.json": (
        RAW_EVENTBRIDGE,
        ParsedMessage(
            source=Source.EVENTBRIDGE,
            other=(
                OtherRecord(
                    bucket="acme-inbox",
                    key="reports/old.pdf",
                    event_name="Object Deleted",
                    sequencer="617f0837b476e463",
                    version_id="1QW9g1Z99LUNbvaaYVpW9xDlOLU.qxgF",
                ),
            ),
        ),
    ),
    "s3_object_removed.json": (
        URL,
        ParsedMessage(
            source=Source.S3,
            other=(
                OtherRecord(
                    bucket="acme-inbox",
                    key=KEY,
                    event_name="ObjectRemoved:Delete",
                    sequencer="0055AED6DCD90281F0",
                ),
            ),
        ),
    ),
    "s3_object_tagging.json": (
        URL,
        ParsedMessage(
            source=Source.S3,
            other=(
                OtherRecord(
                    bucket="acme-inbox",
                    key="reports/summary.pdf",
                    event_name="ObjectTagging:Put",
                    version_id="3HL4kqtJvjVBH40Nrjfkd",
                ),
            ),
        ),
    ),
    "s3_lifecycle_expiration.json": (
        URL,
        ParsedMessage(
            source=Source.S3,
            other=(
                OtherRecord(
                    bucket="acme-inbox",
                    key="tmp/scratch.bin",
                    event_name="LifecycleExpiration:Delete",
                    sequencer="0055AED6DCD9029999",
                ),
            ),
        ),
    ),
    "s3_event_version_3_0.json": (
        URL,
        (MessageFormatError, "Records[0].eventVersion: unsupported version '3.0'"),
    ),
    "s3_event_version_2_3.json": (
        URL,
        ParsedMessage(source=Source.S3, created=(PUT_VERSIONED,)),
    ),
    # What the moto emulator sends: "/" encoded as %2F, no sequencer or versionId.
    "moto_s3_put.json": (
        URL,
        ParsedMessage(
            source=Source.S3,
            created=(
                ObjectCreated(
                    bucket="acme-inbox",
                    key="a b/c:d+e.txt",
                    event_name="ObjectCreated:Put",
                    size=5,
                    etag="5d41402abc4b2a76b9719d911017c592",
                    event_time="2026-03-01T12:00:00.000Z",
                ),
            ),
        ),
    ),
    # moto's EventBridge event: raw key, "eTag", "version-id": null, a numeric "time".
    "moto_eventbridge_object_created.json": (
        RAW_EVENTBRIDGE,
        ParsedMessage(
            source=Source.EVENTBRIDGE,
            created=(
                ObjectCreated(
                    bucket="acme-inbox",
                    key="a b/c:d+e.txt",
                    event_name="Object Created",
                    size=5,
                    etag="5d41402abc4b2a76b9719d911017c592",
                    sequencer="617f08299329d189",
                ),
            ),
        ),
    ),
    # MinIO style: "s3:" prefix on eventName, eventVersion 2.0, quoted ETag, extra top-level keys.
    "minio_put.json": (
        URL,
        ParsedMessage(
            source=Source.S3,
            created=(
                ObjectCreated(
                    bucket="acme-inbox",
                    key="photos/2026/beach day.jpg",
                    event_name="ObjectCreated:Put",
                    size=2048,
                    etag="e2fc714c4727ee9395f324cd2e7f331f",
                    sequencer="17F3A8C2D1B0E7A4",
                    event_time="2026-03-01T12:00:00.000Z",
                ),
            ),
        ),
    ),
}


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def test_every_fixture_file_has_an_expectation() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name: str) -> None:
    policy, expected = EXPECTED[name]
    body = _fixture(name)
    if isinstance(expected, ParsedMessage):
        assert parse_message(body, decoding=policy) == expected
    else:
        error, text = expected
        with pytest.raises(error) as caught:
            parse_message(body, decoding=policy)
        assert text in str(caught.value)


def test_sns_envelope_fixture_carries_the_full_record() -> None:
    envelope = json.loads(_fixture("sns_envelope.json"))
    assert json.loads(envelope["Message"]) == json.loads(_fixture("s3_put_versioned.json"))


def test_raw_sns_delivery_is_not_mistaken_for_an_envelope() -> None:
    # With raw delivery on, SNS hands over the S3 event as is: it must parse as Source.S3.
    assert parse_message(_fixture("s3_put_versioned.json"), decoding=URL).source is Source.S3
    assert parse_message(_fixture("s3_test_event.json"), decoding=URL).source is Source.S3


def test_eventbridge_key_decoding_follows_the_policy() -> None:
    body = _fixture("eventbridge_object_created.json")
    decoded = parse_message(body, decoding=URL).created[0].key
    assert decoded == "reports/Q1 2024/naïve café résumé=v2.pdf"  # '+' read as a space
    assert parse_message(body, decoding=RAW_EVENTBRIDGE).created[0].key == KEY


def test_notification_key_decoding_none_keeps_the_key_as_sent() -> None:
    parsed = parse_message(_fixture("s3_put_versioned.json"), decoding=RAW_ALL)
    assert parsed.created[0].key == KEY_SENT


# ---- hand-built variations ------------------------------------------------------------------


def _record(**changes: Any) -> dict[str, Any]:
    """A minimal valid ObjectCreated:Put record; ``changes`` set dotted paths (None deletes)."""
    record: dict[str, Any] = {
        "eventVersion": "2.1",
        "eventName": "ObjectCreated:Put",
        "eventTime": "2026-03-01T12:00:00.000Z",
        "s3": {"bucket": {"name": "bkt"}, "object": {"key": "k", "size": 3, "eTag": "abc"}},
    }
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = record
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return record


_DELETE = object()


_body = notification  # the shared builder (tests/support/events.py)


def _parse(body: str, policy: KeyDecodingPolicy = URL) -> ParsedMessage:
    return parse_message(body, decoding=policy)


def test_minimal_record() -> None:
    assert _parse(_body(_record())) == ParsedMessage(
        source=Source.S3,
        created=(
            ObjectCreated(
                bucket="bkt",
                key="k",
                event_name="ObjectCreated:Put",
                size=3,
                etag="abc",
                event_time="2026-03-01T12:00:00.000Z",
            ),
        ),
    )


def test_records_keep_their_order_and_all_are_read() -> None:
    records = [_record(s3__object__key=f"k{i}") for i in range(5)]
    records.insert(2, _record(eventName="ObjectAcl:Put", s3__object__key="acl"))
    parsed = _parse(_body(*records))
    assert [c.key for c in parsed.created] == ["k0", "k1", "k2", "k3", "k4"]
    assert [o.key for o in parsed.other] == ["acl"]


@pytest.mark.parametrize(
    ("event_name", "created"),
    [
        ("ObjectCreated:Put", True),
        ("ObjectCreated:Post", True),
        ("ObjectCreated:Copy", True),
        ("ObjectCreated:CompleteMultipartUpload", True),
        ("s3:ObjectCreated:Put", True),
        ("ObjectCreated:SomethingNew", True),
        ("ObjectRemoved:Delete", False),
        ("ObjectRemoved:DeleteMarkerCreated", False),
        ("LifecycleExpiration:Delete", False),
        ("LifecycleTransition", False),
        ("ObjectTagging:Put", False),
        ("ObjectTagging:Delete", False),
        ("ObjectAcl:Put", False),
        ("ObjectRestore:Post", False),
        ("ObjectRestore:Completed", False),
        ("Replication:OperationFailedReplication", False),
        ("IntelligentTiering", False),
        ("s3:ObjectRemoved:Delete", False),
        ("objectcreated:Put", False),
        ("ObjectCreated", False),
    ],
)
def test_event_name_routing(event_name: str, created: bool) -> None:
    parsed = _parse(_body(_record(eventName=event_name)))
    expected_name = event_name.removeprefix("s3:")
    if created:
        assert [c.event_name for c in parsed.created] == [expected_name]
        assert parsed.other == ()
    else:
        assert [o.event_name for o in parsed.other] == [expected_name]
        assert parsed.created == ()


@pytest.mark.parametrize("version", ["2.0", "2.1", "2.2", "2.3", "2.99", "2"])
def test_any_2x_event_version_is_accepted(version: str) -> None:
    assert len(_parse(_body(_record(eventVersion=version))).created) == 1


def test_unknown_fields_are_ignored() -> None:
    record = _record(futureField={"x": [1]}, s3__object__checksum="crc", s3__bucket__extra=True)
    assert len(_parse(_body(record)).created) == 1


@pytest.mark.parametrize(
    ("sent", "expected"),
    [('"abc"', "abc"), ("abc", "abc"), ('"abc-2"', "abc-2"), ('"', '"'), ('""', None), ("", None)],
)
def test_etag_quotes_are_stripped(sent: str, expected: str | None) -> None:
    assert _parse(_body(_record(s3__object__eTag=sent))).created[0].etag == expected


@pytest.mark.parametrize(("sent", "expected"), [("v1", "v1"), ("null", None), (None, None)])
def test_version_id_null_means_unversioned(sent: str | None, expected: str | None) -> None:
    parsed = _parse(_body(_record(s3__object__versionId=sent)))
    assert parsed.created[0].version_id == expected


def test_optional_fields_may_be_absent_or_null() -> None:
    record = _record(s3__object__size=_DELETE, s3__object__eTag=None, eventTime=_DELETE)
    created = _parse(_body(record)).created[0]
    assert (created.size, created.etag, created.event_time, created.sequencer) == (
        None,
        None,
        None,
        None,
    )


def test_size_zero_and_large_sizes() -> None:
    assert _parse(_body(_record(s3__object__size=0))).created[0].size == 0
    big = 5 * 1024**4
    assert _parse(_body(_record(s3__object__size=big))).created[0].size == big


def _eventbridge(detail_type: str = "Object Created", /, **object_fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": "k", "size": 1}
    obj.update(object_fields)
    return {
        "version": "0",
        "detail-type": detail_type,
        "source": "aws.s3",
        "time": "2026-03-01T12:00:00Z",
        "detail": {"version": "0", "bucket": {"name": "bkt"}, "object": obj},
    }


@pytest.mark.parametrize(
    "detail_type",
    [
        "Object Deleted",
        "Object Tags Added",
        "Object Tags Deleted",
        "Object Restore Initiated",
        "Object Restore Completed",
        "Object Restore Expired",
        "Object ACL Updated",
        "Object Storage Class Changed",
        "Object Access Tier Changed",
    ],
)
def test_eventbridge_other_detail_types(detail_type: str) -> None:
    doc = _eventbridge(detail_type, **{"version-id": "v9", "sequencer": "0A"})
    assert _parse(json.dumps(doc)) == ParsedMessage(
        source=Source.EVENTBRIDGE,
        other=(
            OtherRecord(
                bucket="bkt", key="k", event_name=detail_type, sequencer="0A", version_id="v9"
            ),
        ),
    )


@pytest.mark.parametrize(
    ("fields", "etag"),
    [
        ({"etag": "e1"}, "e1"),
        ({"eTag": "e2"}, "e2"),
        ({"etag": "e1", "eTag": "e2"}, "e1"),
        ({"etag": None, "eTag": '"e2"'}, "e2"),
        ({}, None),
    ],
)
def test_eventbridge_etag_spellings(fields: dict[str, Any], etag: str | None) -> None:
    assert _parse(json.dumps(_eventbridge(**fields))).created[0].etag == etag


@pytest.mark.parametrize(("sent", "expected"), [("v1", "v1"), ("null", None), (None, None)])
def test_eventbridge_version_id(sent: str | None, expected: str | None) -> None:
    doc = _eventbridge(**{"version-id": sent})
    assert _parse(json.dumps(doc)).created[0].version_id == expected


def test_eventbridge_non_string_time_is_ignored() -> None:
    doc = _eventbridge()
    doc["time"] = 1772366400.5
    assert _parse(json.dumps(doc)).created[0].event_time is None


def _sns(inner: object) -> str:
    message = inner if isinstance(inner, str) else json.dumps(inner)
    return json.dumps({"Type": "Notification", "MessageId": "m", "Message": message})


def test_sns_envelope_with_several_records() -> None:
    parsed = _parse(_sns({"Records": [_record(), _record(eventName="ObjectRemoved:Delete")]}))
    assert parsed.source is Source.SNS
    assert (len(parsed.created), len(parsed.other)) == (1, 1)


def test_sns_wrapped_keys_follow_the_notification_policy() -> None:
    body = _sns({"Records": [_record(s3__object__key="a+b%2B")]})
    assert _parse(body).created[0].key == "a b+"
    assert _parse(body, RAW_ALL).created[0].key == "a+b%2B"


# ---- rejections -----------------------------------------------------------------------------


def _eb_changed(path: str, value: Any) -> str:
    doc = _eventbridge()
    node = doc
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return json.dumps(doc)


REJECTED: list[Any] = [
    # body-level
    pytest.param("", MessageFormatError, "body: not valid JSON", id="empty-body"),
    pytest.param("not json", MessageFormatError, "body: not valid JSON", id="text"),
    pytest.param('{"Records": [', MessageFormatError, "body: not valid JSON", id="truncated"),
    pytest.param("[]", MessageFormatError, "body: expected an object, got array", id="array"),
    pytest.param("42", MessageFormatError, "got number", id="number"),
    pytest.param('"x"', MessageFormatError, "got string", id="string"),
    pytest.param("null", MessageFormatError, "body: missing", id="null"),
    pytest.param("true", MessageFormatError, "got boolean", id="bool"),
    pytest.param("[" * 100_000, MessageFormatError, "body: not", id="deep-nesting-unclosed"),
    pytest.param(
        "[" * 100_000 + "]" * 100_000, MessageFormatError, "nested too deeply", id="deep-nesting"
    ),
    pytest.param("1" * 5000, MessageFormatError, "number is too long", id="huge-int"),
    pytest.param("{}", MessageFormatError, "body: unknown message shape", id="empty-object"),
    pytest.param('{"foo": 1}', MessageFormatError, "unknown message shape", id="unknown-shape"),
    pytest.param(
        json.dumps({"Type": "SubscriptionConfirmation", "Message": "confirm"}),
        MessageFormatError,
        "SNS message of Type 'SubscriptionConfirmation'",
        id="sns-subscription-confirmation",
    ),
    pytest.param(
        json.dumps({"Event": "s3:Other", "Bucket": "b"}),
        MessageFormatError,
        "unknown message shape",
        id="not-a-test-event",
    ),
    # Records
    pytest.param('{"Records": []}', MessageFormatError, "Records: empty", id="records-empty"),
    pytest.param('{"Records": {}}', MessageFormatError, "Records: expected an array", id="rec-obj"),
    pytest.param('{"Records": null}', MessageFormatError, "Records: expected an array", id="null"),
    pytest.param(
        _body(_record(), "x"),  # type: ignore[arg-type]
        MessageFormatError,
        "Records[1]: expected an object, got string",
        id="record-not-object",
    ),
    pytest.param(
        _body(_record(eventVersion=_DELETE)),
        MessageFormatError,
        "Records[0].eventVersion: missing",
        id="version-missing",
    ),
    pytest.param(
        _body(_record(eventVersion=2.1)),
        MessageFormatError,
        "Records[0].eventVersion: expected a string, got number",
        id="version-number",
    ),
    pytest.param(
        _body(_record(eventVersion="1.0")),
        MessageFormatError,
        "unsupported version '1.0'",
        id="version-1",
    ),
    pytest.param(
        _body(_record(eventVersion="3.0")),
        MessageFormatError,
        "unsupported version '3.0'",
        id="version-3",
    ),
    pytest.param(
        _body(_record(eventVersion="20.1")),
        MessageFormatError,
        "unsupported version '20.1'",
        id="version-20",
    ),
    pytest.param(
        _body(_record(eventVersion="two")),
        MessageFormatError,
        "not a version number",
        id="version-text",
    ),
    pytest.param(
        _body(_record(eventVersion="")), MessageFormatError, "not a version", id="version-empty"
    ),
    pytest.param(
        _body(_record(eventVersion="２.1")),  # noqa: RUF001 - fullwidth digit on purpose
        MessageFormatError,
        "not a version number",
        id="version-fullwidth-digit",
    ),
    pytest.param(
        _body(_record(eventName=_DELETE)),
        MessageFormatError,
        "Records[0].eventName: missing",
        id="event-name-missing",
    ),
    pytest.param(
        _body(_record(eventName="")), MessageFormatError, "eventName: empty", id="name-empty"
    ),
    pytest.param(
        _body(_record(eventName=["ObjectCreated:Put"])),
        MessageFormatError,
        "eventName: expected a string, got array",
        id="event-name-array",
    ),
    pytest.param(
        _body(_record(s3=_DELETE)), MessageFormatError, "Records[0].s3: missing", id="no-s3"
    ),
    pytest.param(
        _body(_record(s3=[])), MessageFormatError, "Records[0].s3: expected an object", id="s3-arr"
    ),
    pytest.param(
        _body(_record(s3__bucket="bkt")),
        MessageFormatError,
        "Records[0].s3.bucket: expected an object, got string",
        id="bucket-string",
    ),
    pytest.param(
        _body(_record(s3__bucket__name="")),
        MessageFormatError,
        "Records[0].s3.bucket.name: empty",
        id="bucket-empty",
    ),
    pytest.param(
        _body(_record(s3__bucket__name=7)),
        MessageFormatError,
        "s3.bucket.name: expected a string, got number",
        id="bucket-number",
    ),
    pytest.param(
        _body(_record(s3__bucket__name="a\x00b")),
        MessageFormatError,
        "s3.bucket.name: contains a NUL",
        id="bucket-nul",
    ),
    pytest.param(
        _body(_record(s3__bucket__name="a\ud800b")),
        MessageFormatError,
        "lone surrogate",
        id="bucket-surrogate",
    ),
    pytest.param(
        _body(_record(s3__bucket__name="../etc")),
        MessageFormatError,
        "not a valid bucket name",
        id="bucket-slash",
    ),
    pytest.param(
        _body(_record(s3__bucket__name="..")),
        MessageFormatError,
        "not a valid bucket name",
        id="bucket-dotdot",
    ),
    pytest.param(
        _body(_record(s3__bucket__name="a\nb")),
        MessageFormatError,
        "not a valid bucket name",
        id="bucket-newline",
    ),
    pytest.param(
        _body(_record(s3__object=_DELETE)),
        MessageFormatError,
        "Records[0].s3.object: missing (s3://bkt/)",
        id="object-missing",
    ),
    pytest.param(
        _body(_record(s3__object__key=_DELETE)),
        MessageFormatError,
        "Records[0].s3.object.key: missing",
        id="key-missing",
    ),
    pytest.param(
        _body(_record(s3__object__key=12)),
        MessageFormatError,
        "Records[0].s3.object.key: expected a string, got number",
        id="key-number",
    ),
    pytest.param(
        _body(_record(s3__object__key="a%ZZ")),
        KeyDecodingError,
        "Records[0].s3.object.key: invalid %-escape at offset 1 (s3://bkt/a%ZZ)",
        id="key-bad-escape",
    ),
    pytest.param(
        _body(_record(s3__object__key="a%FF")),
        KeyDecodingError,
        "not UTF-8",
        id="key-bad-utf8",
    ),
    pytest.param(
        _body(_record(s3__object__key="a%00")),
        KeyDecodingError,
        "NUL",
        id="key-nul-escape",
    ),
    pytest.param(
        _body(_record(s3__object__key="a\x00")),
        KeyDecodingError,
        "NUL",
        id="key-nul-literal",
    ),
    pytest.param(
        _body(_record(s3__object__key="a\udc80")),
        KeyDecodingError,
        "lone surrogate",
        id="key-surrogate",
    ),
    pytest.param(
        _body(_record(s3__object__size=True)),
        MessageFormatError,
        "Records[0].s3.object.size: expected an integer, got boolean (s3://bkt/k)",
        id="size-bool",
    ),
    pytest.param(
        _body(_record(s3__object__size="3")),
        MessageFormatError,
        "size: expected an integer, got string",
        id="size-string",
    ),
    pytest.param(
        _body(_record(s3__object__size=3.0)),
        MessageFormatError,
        "size: expected an integer, got number",
        id="size-float",
    ),
    pytest.param(
        _body(_record(s3__object__size=-1)),
        MessageFormatError,
        "size: expected a non-negative integer",
        id="size-negative",
    ),
    pytest.param(
        _body(_record(s3__object__eTag=123)),
        MessageFormatError,
        "s3.object.eTag: expected a string, got number",
        id="etag-number",
    ),
    pytest.param(
        _body(_record(s3__object__versionId=1)),
        MessageFormatError,
        "s3.object.versionId: expected a string",
        id="version-id-number",
    ),
    pytest.param(
        _body(_record(s3__object__versionId="v\x00")),
        MessageFormatError,
        "s3.object.versionId: contains a NUL",
        id="version-id-nul",
    ),
    pytest.param(
        _body(_record(s3__object__sequencer=5)),
        MessageFormatError,
        "s3.object.sequencer: expected a string",
        id="sequencer-number",
    ),
    pytest.param(
        _body(_record(eventTime=0)),
        MessageFormatError,
        "Records[0].eventTime: expected a string",
        id="event-time-number",
    ),
    pytest.param(
        _body(_record(), _record(s3__object__size=False)),
        MessageFormatError,
        "Records[1].s3.object.size: expected an integer",
        id="second-record-bad",
    ),
    pytest.param(
        _body(_record(eventName="ObjectRemoved:Delete", s3__object__sequencer=[])),
        MessageFormatError,
        "Records[0].s3.object.sequencer: expected a string",
        id="other-record-bad-sequencer",
    ),
    # TestEvent
    pytest.param(
        json.dumps({"Event": "s3:TestEvent", "Service": "Amazon S3"}),
        MessageFormatError,
        "Bucket: missing",
        id="test-event-no-bucket",
    ),
    pytest.param(
        json.dumps({"Event": "s3:TestEvent", "Bucket": 1}),
        MessageFormatError,
        "Bucket: expected a string",
        id="test-event-bucket-number",
    ),
    # SNS
    pytest.param(
        json.dumps({"Type": "Notification"}),
        MessageFormatError,
        "Message: missing",
        id="sns-no-message",
    ),
    pytest.param(
        json.dumps({"Type": "Notification", "Message": {"Records": []}}),
        MessageFormatError,
        "Message: expected a string, got object",
        id="sns-message-object",
    ),
    pytest.param(_sns("{broken"), MessageFormatError, "Message: not valid JSON", id="sns-broken"),
    pytest.param(_sns("[1]"), MessageFormatError, "Message: expected an object", id="sns-array"),
    pytest.param(_sns({}), MessageFormatError, "Message: unknown message shape", id="sns-empty"),
    pytest.param(
        _sns({"Records": [_record(s3__object__size="1")]}),
        MessageFormatError,
        "Message.Records[0].s3.object.size: expected an integer",
        id="sns-inner-bad-size",
    ),
    pytest.param(
        _sns({"Records": [_record(eventVersion="3.0")]}),
        MessageFormatError,
        "Message.Records[0].eventVersion: unsupported version",
        id="sns-inner-version-3",
    ),
    pytest.param(
        _sns(_sns({"Records": [_record()]})),
        MessageFormatError,
        "SNS message of Type 'Notification' is not an S3 event",
        id="sns-inside-sns",
    ),
    pytest.param(
        _sns(json.dumps(_eventbridge())),
        MessageFormatError,
        "unknown message shape",
        id="eventbridge-inside-sns",
    ),
    # EventBridge
    pytest.param(
        _eb_changed("detail.version", "1"),
        MessageFormatError,
        "detail.version: unsupported version '1'",
        id="eb-version-1",
    ),
    pytest.param(
        _eb_changed("detail.version", 0),
        MessageFormatError,
        "detail.version: expected a string, got number",
        id="eb-version-number",
    ),
    pytest.param(
        _eb_changed("detail.version", _DELETE),
        MessageFormatError,
        "detail.version: missing",
        id="eb-version-missing",
    ),
    pytest.param(
        _eb_changed("detail", "x"),
        MessageFormatError,
        "detail: expected an object, got string",
        id="eb-detail-string",
    ),
    pytest.param(
        _eb_changed("detail", _DELETE), MessageFormatError, "detail: missing", id="eb-no-detail"
    ),
    pytest.param(
        _eb_changed("detail-type", 3),
        MessageFormatError,
        "detail-type: expected a string",
        id="eb-detail-type-number",
    ),
    pytest.param(
        _eb_changed("detail.bucket.name", None),
        MessageFormatError,
        "detail.bucket.name: missing",
        id="eb-bucket-null",
    ),
    pytest.param(
        _eb_changed("detail.object.key", ["k"]),
        MessageFormatError,
        "detail.object.key: expected a string, got array",
        id="eb-key-array",
    ),
    pytest.param(
        _eb_changed("detail.object.key", "%G1"),
        KeyDecodingError,
        "detail.object.key: invalid %-escape",
        id="eb-key-bad-escape",
    ),
    pytest.param(
        _eb_changed("detail.object.size", True),
        MessageFormatError,
        "detail.object.size: expected an integer, got boolean (s3://bkt/k)",
        id="eb-size-bool",
    ),
    pytest.param(
        _eb_changed("detail.object.etag", 5),
        MessageFormatError,
        "detail.object.etag: expected a string",
        id="eb-etag-number",
    ),
    pytest.param(
        _eb_changed("detail.object.version-id", False),
        MessageFormatError,
        "detail.object.version-id: expected a string",
        id="eb-version-id-bool",
    ),
    pytest.param(
        _eb_changed("detail.object.sequencer", {}),
        MessageFormatError,
        "detail.object.sequencer: expected a string",
        id="eb-sequencer-object",
    ),
    pytest.param(
        json.dumps(
            {"source": "aws.s3", "detail-type": "AWS API Call via CloudTrail", "detail": {}}
        ),
        MessageFormatError,
        "detail.version: missing",
        id="eb-cloudtrail",
    ),
]


@pytest.mark.parametrize(("body", "error", "text"), REJECTED)
def test_rejected(body: str, error: type[Exception], text: str) -> None:
    with pytest.raises(error) as caught:
        _parse(body)
    message = str(caught.value)
    assert text in message
    assert isinstance(caught.value, PermanentError)
    if error is MessageFormatError:
        assert not isinstance(caught.value, KeyDecodingError)
    assert len(message) < 400


def test_errors_do_not_echo_the_body() -> None:
    marker = "SECRET-MARKER-" * 50
    body = json.dumps({"Records": [_record(s3__object__size="x")], "junk": marker})
    with pytest.raises(MessageFormatError) as caught:
        _parse(body)
    assert "SECRET-MARKER" not in str(caught.value)
    with pytest.raises(MessageFormatError) as caught:
        _parse(marker + "{")
    assert "SECRET-MARKER" not in str(caught.value)


def test_long_keys_are_truncated_in_errors() -> None:
    key = "k" * 5000 + "%ZZ"
    with pytest.raises(KeyDecodingError) as caught:
        _parse(_body(_record(s3__object__key=key)))
    message = str(caught.value)
    assert "s3://bkt/" + "k" * 200 + "..." in message
    assert len(message) < 400


def test_unprintable_characters_in_errors_are_escaped() -> None:
    with pytest.raises(KeyDecodingError) as caught:
        _parse(_body(_record(s3__object__key="line\nbreak\x1b[31m%ZZ")))
    message = str(caught.value)
    assert "\n" not in message
    assert "\x1b" not in message
    assert "line\\x0abreak\\x1b[31m" in message


def test_object_url() -> None:
    assert object_url("b", "a/é.txt") == "s3://b/a/é.txt"
    assert object_url("b", "x" * 300) == "s3://b/" + "x" * 200 + "..."
    assert object_url("b", "x" * 30, limit=10) == "s3://b/" + "x" * 10 + "..."
    assert object_url("b", "\x00\x85\ud800") == "s3://b/\\x00\\x85\\xd800"


# ---- decode_key -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("a+b", "a b"),
        ("a%2Bb", "a+b"),
        ("a%2bb", "a+b"),
        ("%C3%A9", "é"),
        ("%c3%a9", "é"),
        ("dt%3D2024", "dt=2024"),
        ("a%2Fb", "a/b"),
        ("a/b", "a/b"),
        ("a%3Ab", "a:b"),
        ("100%25", "100%"),
        ("%2520", "%20"),
        ("++", "  "),
        ("", ""),
        ("plain.txt", "plain.txt"),
        ("é", "é"),  # a literal non-ASCII character is kept
        ("%F0%9F%93%81", "\N{FILE FOLDER}"),
        (KEY_SENT, KEY),
    ],
)
def test_decode_key_url(raw: str, decoded: str) -> None:
    assert decode_key(raw, KeyDecoding.URL) == decoded


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        ("%ZZ", "invalid %-escape at offset 0"),
        ("%4", "invalid %-escape at offset 0"),
        ("a%", "invalid %-escape at offset 1"),
        ("a%g0", "invalid %-escape"),
        ("%%41", "invalid %-escape at offset 0"),
        ("%C3", "not UTF-8"),  # truncated sequence
        ("%FF", "not UTF-8"),
        ("%C3%28", "not UTF-8"),
        ("%C0%AF", "not UTF-8"),  # overlong "/"
        ("%ED%A0%80", "not UTF-8"),  # an encoded surrogate
        ("%00", "NUL"),
        ("a\x00", "NUL"),
        ("\ud800", "lone surrogate"),
    ],
)
def test_decode_key_url_rejects(raw: str, text: str) -> None:
    with pytest.raises(KeyDecodingError) as caught:
        decode_key(raw, KeyDecoding.URL)
    assert text in str(caught.value)


@pytest.mark.parametrize("raw", ["a+b", "a%2Bb", "%ZZ", "%FF", "a b/c", "é"])
def test_decode_key_none_keeps_the_key(raw: str) -> None:
    assert decode_key(raw, KeyDecoding.NONE) == raw


@pytest.mark.parametrize("raw", ["a\x00b", "\udfff", "x\ud83d"])
def test_decode_key_none_rejects_nul_and_surrogates(raw: str) -> None:
    with pytest.raises(KeyDecodingError):
        decode_key(raw, KeyDecoding.NONE)


# ---- sequencer_newer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "newer"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E5", False),  # equal
        ("0055AED6DCD90281E6", "0055AED6DCD90281E5", True),
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6", False),
        ("0055AED6DCD90281E5", "0055AED6DCD90281", True),  # padded: ...81E5 > ...8100
        ("0055AED6DCD90281", "0055AED6DCD90281E5", False),
        ("0055AED6DCD902810", "0055AED6DCD90281", False),  # equal once padded
        ("0055AED6DCD90281", "0055AED6DCD902810", False),
        ("1", "0FFFFFFFFFFFFFFF", True),  # shorter but later
        ("0FFFFFFFFFFFFFFF", "1", False),
        ("0055aed6dcd90281e6", "0055AED6DCD90281E5", True),  # case-insensitive
        ("0055aed6dcd90281e5", "0055AED6DCD90281E5", False),
        ("0055AED6DCD90281E5", "0055aed6dcd90281e6", False),
        ("A", "9", True),  # hex digits order as strings
        ("", "", False),
        ("1", "", True),
        ("", "1", False),
    ],
)
def test_sequencer_newer(a: str, b: str, newer: bool) -> None:
    assert sequencer_newer(a, b) is newer


@pytest.mark.parametrize(
    ("a", "b", "earlier"),
    [
        ("2026-12-06T10:00:01Z", "2026-12-06T10:00:01.500Z", True),
        ("2026-12-06T10:00:01.500Z", "2026-12-06T10:00:01Z", False),
        ("2026-12-06T10:00:01.500Z", "2026-12-06T10:00:01.500Z", False),
        ("2026-12-06T11:00:00+01:00", "2026-12-06T10:00:01Z", True),
        (None, "2026-12-06T10:00:01Z", False),
        ("yesterday", "2026-12-06T10:00:01Z", False),
        ("2026-12-06T10:00:00", "2026-12-06T10:00:01Z", False),  # no time zone: unknown
    ],
)
def test_event_time_earlier(a: str | None, b: str | None, earlier: bool) -> None:
    assert event_time_earlier(a, b) is earlier
