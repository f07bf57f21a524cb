"""Property tests: the parsing layer fails only with its own permanent errors, never escapes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from s3sqsd.errors import KeyDecodingError, MessageFormatError, UnsafeKeyError
from s3sqsd.events import (
    KeyDecoding,
    KeyDecodingPolicy,
    ObjectCreated,
    OtherRecord,
    ParsedMessage,
    decode_key,
    parse_message,
)
from s3sqsd.paths import TEMP_DIR_NAME, local_path

POLICIES = st.builds(
    KeyDecodingPolicy,
    notifications=st.sampled_from(KeyDecoding),
    eventbridge=st.sampled_from(KeyDecoding),
)
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def _anything_or(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid value, sometimes any JSON value: finds type slips field by field."""
    return st.one_of(valid, valid, valid, json_values)


keys = st.text(alphabet=st.sampled_from("ab/.%+2FC3é \x00\ud800"), max_size=12)
records = st.fixed_dictionaries(
    {
        "eventVersion": _anything_or(st.sampled_from(["2.1", "2.3", "2.0", "3.0", "2"])),
        "eventName": _anything_or(
            st.sampled_from(["ObjectCreated:Put", "ObjectRemoved:Delete", "s3:ObjectCreated:Post"])
        ),
        "eventTime": _anything_or(st.just("2026-03-01T12:00:00.000Z")),
        "s3": _anything_or(
            st.fixed_dictionaries(
                {
                    "bucket": _anything_or(
                        st.fixed_dictionaries({"name": _anything_or(st.just("bkt"))})
                    ),
                    "object": _anything_or(
                        st.fixed_dictionaries(
                            {
                                "key": _anything_or(keys),
                                "size": _anything_or(st.integers(min_value=0)),
                                "eTag": _anything_or(st.just('"abc"')),
                                "versionId": _anything_or(st.sampled_from(["v1", "null"])),
                                "sequencer": _anything_or(st.just("0055AED6DCD90281E5")),
                            }
                        )
                    ),
                }
            )
        ),
    }
)
notifications = st.fixed_dictionaries({"Records": st.lists(records, max_size=3)}) | st.just(
    {"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "bkt"}
)
eventbridge = st.fixed_dictionaries(
    {
        "source": st.just("aws.s3"),
        "detail-type": _anything_or(st.sampled_from(["Object Created", "Object Deleted"])),
        "time": json_values,
        "detail": _anything_or(
            st.fixed_dictionaries(
                {
                    "version": _anything_or(st.just("0")),
                    "bucket": _anything_or(st.fixed_dictionaries({"name": st.just("bkt")})),
                    "object": _anything_or(
                        st.fixed_dictionaries(
                            {
                                "key": _anything_or(keys),
                                "size": _anything_or(st.integers(min_value=0)),
                                "etag": _anything_or(st.just("abc")),
                                "eTag": _anything_or(st.just("abc")),
                                "version-id": _anything_or(st.sampled_from(["v1", "null"])),
                            }
                        )
                    ),
                }
            )
        ),
    }
)
sns = notifications.map(
    lambda inner: {"Type": "Notification", "Message": json.dumps(inner)}
) | st.fixed_dictionaries({"Type": st.just("Notification"), "Message": st.text(max_size=30)})
near_valid = notifications | eventbridge | sns


def _check(body: str, policy: KeyDecodingPolicy) -> ParsedMessage | None:
    """Parse, allowing only the two documented failures; check the result's invariants."""
    error: str | None = None
    try:
        parsed = parse_message(body, decoding=policy)
    except (MessageFormatError, KeyDecodingError) as exc:
        error = str(exc)
    if error is not None:
        assert len(error) < 600
        return None
    assert isinstance(parsed, ParsedMessage)
    for item in (*parsed.created, *parsed.other):
        assert isinstance(item, ObjectCreated | OtherRecord)
        assert isinstance(item.bucket, str)
        assert item.bucket
        assert isinstance(item.key, str)
        assert "\x00" not in item.key
    for created in parsed.created:
        assert created.size is None or (type(created.size) is int and created.size >= 0)
    if parsed.test_event is None:
        assert parsed.created or parsed.other
    return parsed


@SETTINGS
@given(body=st.text(), policy=POLICIES)
@example(body="[" * 50_000, policy=KeyDecodingPolicy())
@example(
    body='{"Type":"Notification","Message":"' + "[" * 50_000 + '"}', policy=KeyDecodingPolicy()
)
def test_arbitrary_text_only_fails_with_message_errors(
    body: str, policy: KeyDecodingPolicy
) -> None:
    _check(body, policy)


@SETTINGS
@given(value=json_values, policy=POLICIES)
def test_arbitrary_json_only_fails_with_message_errors(
    value: Any, policy: KeyDecodingPolicy
) -> None:
    _check(json.dumps(value), policy)


@SETTINGS
@given(doc=near_valid, policy=POLICIES)
def test_near_valid_messages_only_fail_with_message_errors(
    doc: dict[str, Any], policy: KeyDecodingPolicy
) -> None:
    _check(json.dumps(doc), policy)


@SETTINGS
@given(key=st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00")))
@example(key="reports/Q1 2024/naïve café+résumé=v2.pdf")
@example(key="a+b%2B c/%/+")
def test_url_decoding_round_trips(key: str) -> None:
    assert decode_key(quote_plus(key, safe="/"), KeyDecoding.URL) == key
    assert decode_key(quote_plus(key, safe=""), KeyDecoding.URL) == key  # moto's %2F style


ROOT = Path("/srv/s3sqsd/downloads")
hostile_keys = st.lists(
    st.sampled_from(
        ["..", ".", "", "a", "é", "\\", "..\\", TEMP_DIR_NAME, "\x00", "\n", "\x85", "~", " "]
    ),
    max_size=6,
).map("/".join)
long_keys = st.lists(st.text(alphabet="xé", min_size=1, max_size=300), max_size=20).map("/".join)


@SETTINGS
@given(key=st.text() | hostile_keys | long_keys, slash=st.booleans())
@example(key="../x", slash=False)
@example(key="a/../../x", slash=False)
def test_local_path_never_leaves_the_root(key: str, slash: bool) -> None:
    key = "/" + key if slash else key
    error: str | None = None
    try:
        path = local_path(ROOT, key, bucket="bkt")
    except UnsafeKeyError as exc:
        error = str(exc)
    if error is not None:
        assert "s3://bkt/" in error
        return
    if path is None:
        assert key.endswith("/")
        return
    assert path != ROOT
    assert path.is_relative_to(ROOT)
    assert path.relative_to(ROOT).parts == tuple(key.split("/"))
    assert os.path.commonpath([ROOT, os.path.normpath(path)]) == str(ROOT)
