"""SQS message body -> typed events. Pure: no I/O, no boto3, no logging side effects.

TYPES AND SIGNATURES ABOVE THE LINE BELOW ARE THE CONTRACT OTHER MODULES USE.
"""

from __future__ import annotations

import datetime
import enum
import json
import re
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from s3sqsd.errors import KeyDecodingError, MessageFormatError


class KeyDecoding(enum.Enum):
    """How object keys in one message source are encoded."""

    URL = "url"  # form decoding: '+' is a space, %XX is a UTF-8 byte (urllib.parse.unquote_plus)
    NONE = "none"  # the key is used as sent


class Source(enum.Enum):
    """Which producer shape a message had (after peeling any SNS envelope)."""

    S3 = "s3"  # S3 event notification (direct, or SNS with raw delivery)
    SNS = "sns"  # S3 event notification inside an SNS envelope
    EVENTBRIDGE = "eventbridge"


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    """One object announced as created; ``key`` is already decoded."""

    bucket: str
    key: str
    event_name: str  # e.g. "ObjectCreated:Put" or EventBridge "Object Created"
    size: int | None = None
    etag: str | None = None  # without surrounding quotes
    version_id: str | None = None
    sequencer: str | None = None
    event_time: str | None = None


@dataclass(frozen=True, slots=True)
class OtherRecord:
    """A record that is not an object creation (removal, tagging, ACL, restore...).

    Acknowledged and counted; nothing is downloaded and local files are kept.
    """

    bucket: str
    key: str
    event_name: str
    sequencer: str | None = None
    version_id: str | None = None


@dataclass(frozen=True, slots=True)
class TestEvent:
    """``s3:TestEvent`` sent when a bucket notification is configured: acknowledged."""

    __test__ = False  # not a pytest test class

    bucket: str


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    """Everything a message announces, in record order."""

    source: Source
    test_event: TestEvent | None = None
    created: tuple[ObjectCreated, ...] = ()
    other: tuple[OtherRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyDecodingPolicy:
    """Key decoding per message source (EventBridge encoding is not documented by AWS)."""

    notifications: KeyDecoding = KeyDecoding.URL  # S3 notifications, direct or through SNS
    eventbridge: KeyDecoding = KeyDecoding.URL


def parse_message(body: str, *, decoding: KeyDecodingPolicy) -> ParsedMessage:
    """Parse one SQS body; raise MessageFormatError / KeyDecodingError for anything unusable."""
    return _parse_message(body, decoding)


def decode_key(raw: str, mode: KeyDecoding) -> str:
    """Decode an object key; raise KeyDecodingError on bad escapes, invalid UTF-8, NUL."""
    return _decode_key(raw, mode)


def sequencer_newer(a: str, b: str) -> bool:
    """True when sequencer ``a`` is later than ``b`` (right-pad the shorter with '0', compare)."""
    return _sequencer_newer(a, b)


def event_time_earlier(a: str | None, b: str | None) -> bool:
    """True when event time ``a`` is strictly earlier than ``b`` (ISO 8601, as S3 and
    EventBridge write it); False when either is missing or unreadable. Only a tie-breaker for
    stores that repeat sequencers: S3's own order is the sequencer."""
    if a is None or b is None:
        return False
    try:
        return _parse_time(a) < _parse_time(b)
    except (ValueError, TypeError):  # unreadable, or one naive and one aware
        return False


def is_removal(event_name: str) -> bool:
    """S3 notifications name removals ObjectRemoved:Delete / :DeleteMarkerCreated; EventBridge
    names them "Object Deleted". Lifecycle expirations (LifecycleExpiration:*) are not."""
    return event_name.startswith("ObjectRemoved:") or event_name == "Object Deleted"


def _parse_time(value: str) -> datetime.datetime:
    parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed


# ---- implementation below -------------------------------------------------------------------

# Every string this module hands on is checked for these: a NUL cannot be sent to S3 or written
# to a filesystem, and a lone surrogate (legal in JSON "\ud800" escapes) cannot be encoded as
# UTF-8, so either would crash a later stage instead of failing this message cleanly.
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")
# Characters escaped when a key or value is quoted in an error text: control characters would
# break log lines, surrogates would break the UTF-8 writer of the log handler.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_VERSION = re.compile(r"([0-9]+)(?:\.[0-9]+)?")
_SUPPORTED_MAJOR = 2  # S3 notification eventVersion "2.x"
_KEY_DISPLAY_LIMIT = 200
_VALUE_DISPLAY_LIMIT = 40
_EB_OBJECT_CREATED = "Object Created"


def object_url(bucket: str, key: str, *, limit: int = _KEY_DISPLAY_LIMIT) -> str:
    """``s3://bucket/key`` for error texts and logs: key cut to ``limit`` characters, control
    characters and surrogates escaped, so a hostile key cannot flood or break a log line."""
    return f"s3://{_display(bucket, _KEY_DISPLAY_LIMIT)}/{_display(key, limit)}"


def _display(text: str, limit: int) -> str:
    """Cut ``text`` to ``limit`` characters (marking the cut) and escape unprintables."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}", cut)


def _json_type(value: object) -> str:
    """The JSON name of a decoded value's type: error texts name it instead of echoing it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _fail(path: str, problem: str, where: str | None = None) -> MessageFormatError:
    suffix = f" ({where})" if where else ""
    return MessageFormatError(f"{path}: {problem}{suffix}")


def _load_json(text: str, path: str) -> object:
    """``json.loads`` with every failure it can raise turned into MessageFormatError."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"not valid JSON ({exc.msg} at offset {exc.pos})") from None
    except RecursionError:
        raise _fail(path, "not usable JSON (nested too deeply)") from None
    except ValueError:
        # e.g. an integer literal longer than sys.get_int_max_str_digits()
        raise _fail(path, "not usable JSON (a number is too long)") from None


def _object(value: object, path: str, where: str | None = None) -> dict[str, object]:
    if value is None:
        raise _fail(path, "missing", where)
    if not isinstance(value, dict):
        raise _fail(path, f"expected an object, got {_json_type(value)}", where)
    return value


def _str(value: object, path: str, where: str | None = None) -> str:
    """A required string without NUL or lone surrogates."""
    if value is None:
        raise _fail(path, "missing", where)
    if not isinstance(value, str):
        raise _fail(path, f"expected a string, got {_json_type(value)}", where)
    if _BAD_CHAR.search(value):
        raise _fail(path, "contains a NUL or a lone surrogate", where)
    return value


def _opt_str(value: object, path: str, where: str | None = None) -> str | None:
    """An optional string; JSON null counts as absent (the emulator sends null for some)."""
    return None if value is None else _str(value, path, where)


def _nonempty(value: object, path: str, where: str | None = None) -> str:
    text = _str(value, path, where)
    if not text:
        raise _fail(path, "empty", where)
    return text


def _opt_size(value: object, path: str, where: str | None) -> int | None:
    if value is None:
        return None
    # bool is a subclass of int in Python; JSON true is not a size.
    if type(value) is not int:
        raise _fail(path, f"expected an integer, got {_json_type(value)}", where)
    if value < 0:
        raise _fail(path, "expected a non-negative integer", where)
    return value


def _opt_etag(value: object, path: str, where: str | None) -> str | None:
    """ETags are quoted in HTTP headers and sometimes in events; compare them unquoted."""
    etag = _opt_str(value, path, where)
    if etag is not None and len(etag) >= 2 and etag[0] == etag[-1] == '"':
        etag = etag[1:-1]
    return etag or None


def _opt_version_id(value: object, path: str, where: str | None) -> str | None:
    """``"null"`` is S3's id of the unversioned object; a GET without VersionId returns it,
    so it is reported as no version id at all (not every S3 emulator accepts ``null``)."""
    version_id = _opt_str(value, path, where)
    return None if version_id in (None, "", "null") else version_id


def _bucket(value: object, path: str) -> str:
    """A bucket name safe to show and to use as a directory name: no ``/``, no control
    characters, not ``.`` or ``..``. Real S3 names (even legacy ones) never break this."""
    name = _nonempty(value, path)
    if "/" in name or name in (".", "..") or _UNPRINTABLE.search(name):
        raise _fail(path, f"not a valid bucket name: {_display(name, _VALUE_DISPLAY_LIMIT)!r}")
    return name


def _key(raw: object, path: str, *, bucket: str, mode: KeyDecoding) -> str:
    if raw is None:
        raise _fail(path, "missing", object_url(bucket, ""))
    if not isinstance(raw, str):
        raise _fail(path, f"expected a string, got {_json_type(raw)}", object_url(bucket, ""))
    try:
        return decode_key(raw, mode)
    except KeyDecodingError as exc:
        raise KeyDecodingError(f"{path}: {exc} ({object_url(bucket, raw)})") from None


def _check_event_version(rec: dict[str, object], path: str) -> None:
    """Accept 2.x only: AWS says to compare the major version and take any minor, because a
    new major may change field meanings that no unknown-field tolerance can paper over."""
    version = _str(rec.get("eventVersion"), f"{path}.eventVersion")
    match = _VERSION.fullmatch(version)
    if match is None:
        raise _fail(
            f"{path}.eventVersion",
            f"not a version number: {_display(version, _VALUE_DISPLAY_LIMIT)!r}",
        )
    if int(match.group(1)) != _SUPPORTED_MAJOR:
        raise _fail(
            f"{path}.eventVersion",
            f"unsupported version {_display(version, _VALUE_DISPLAY_LIMIT)!r} (only 2.x)",
        )


def _parse_record(value: object, path: str, *, mode: KeyDecoding) -> ObjectCreated | OtherRecord:
    rec = _object(value, path)
    _check_event_version(rec, path)
    event_name = _nonempty(rec.get("eventName"), f"{path}.eventName")
    # MinIO sends the configuration-style name ("s3:ObjectCreated:Put"); AWS does not.
    event_name = event_name.removeprefix("s3:")
    s3 = _object(rec.get("s3"), f"{path}.s3")
    bucket = _bucket(
        _object(s3.get("bucket"), f"{path}.s3.bucket").get("name"), f"{path}.s3.bucket.name"
    )
    obj = _object(s3.get("object"), f"{path}.s3.object", object_url(bucket, ""))
    key = _key(obj.get("key"), f"{path}.s3.object.key", bucket=bucket, mode=mode)
    where = object_url(bucket, key)
    version_id = _opt_version_id(obj.get("versionId"), f"{path}.s3.object.versionId", where)
    sequencer = _opt_str(obj.get("sequencer"), f"{path}.s3.object.sequencer", where)
    if not event_name.startswith("ObjectCreated:"):
        return OtherRecord(
            bucket=bucket,
            key=key,
            event_name=event_name,
            sequencer=sequencer,
            version_id=version_id,
        )
    return ObjectCreated(
        bucket=bucket,
        key=key,
        event_name=event_name,
        size=_opt_size(obj.get("size"), f"{path}.s3.object.size", where),
        etag=_opt_etag(obj.get("eTag"), f"{path}.s3.object.eTag", where),
        version_id=version_id,
        sequencer=sequencer,
        event_time=_opt_str(rec.get("eventTime"), f"{path}.eventTime", where),
    )


def _parse_notification(
    doc: dict[str, object], *, source: Source, prefix: str, mode: KeyDecoding
) -> ParsedMessage:
    """An S3 event notification (``Records``) or ``s3:TestEvent``, direct or from SNS."""
    if "Records" in doc:
        records = doc["Records"]
        if not isinstance(records, list):
            raise _fail(f"{prefix}Records", f"expected an array, got {_json_type(records)}")
        if not records:
            raise _fail(f"{prefix}Records", "empty")
        created: list[ObjectCreated] = []
        other: list[OtherRecord] = []
        for index, value in enumerate(records):
            record = _parse_record(value, f"{prefix}Records[{index}]", mode=mode)
            if isinstance(record, ObjectCreated):
                created.append(record)
            else:
                other.append(record)
        return ParsedMessage(source=source, created=tuple(created), other=tuple(other))
    if doc.get("Event") == "s3:TestEvent":
        return ParsedMessage(
            source=source,
            test_event=TestEvent(bucket=_bucket(doc.get("Bucket"), f"{prefix}Bucket")),
        )
    raise _unknown_shape(doc, prefix.rstrip(".") or "body")


def _unknown_shape(doc: dict[str, object], path: str) -> MessageFormatError:
    kind = doc.get("Type")
    if isinstance(kind, str):
        # e.g. an SNS SubscriptionConfirmation for a cross-account subscription
        return _fail(
            path, f"SNS message of Type {_display(kind, _VALUE_DISPLAY_LIMIT)!r} is not an S3 event"
        )
    return _fail(path, "unknown message shape (not an S3, SNS or EventBridge S3 event)")


def _parse_eventbridge(doc: dict[str, object], *, mode: KeyDecoding) -> ParsedMessage:
    """An EventBridge S3 event delivered by a rule without an input transformer."""
    detail_type = _nonempty(doc.get("detail-type"), "detail-type")
    detail = _object(doc.get("detail"), "detail")
    version = _str(detail.get("version"), "detail.version")
    if version != "0":
        raise _fail(
            "detail.version",
            f'unsupported version {_display(version, _VALUE_DISPLAY_LIMIT)!r} (only "0")',
        )
    bucket = _bucket(
        _object(detail.get("bucket"), "detail.bucket").get("name"), "detail.bucket.name"
    )
    obj = _object(detail.get("object"), "detail.object", object_url(bucket, ""))
    key = _key(obj.get("key"), "detail.object.key", bucket=bucket, mode=mode)
    where = object_url(bucket, key)
    version_id = _opt_version_id(obj.get("version-id"), "detail.object.version-id", where)
    sequencer = _opt_str(obj.get("sequencer"), "detail.object.sequencer", where)
    if detail_type != _EB_OBJECT_CREATED:
        other = OtherRecord(
            bucket=bucket,
            key=key,
            event_name=detail_type,
            sequencer=sequencer,
            version_id=version_id,
        )
        return ParsedMessage(source=Source.EVENTBRIDGE, other=(other,))
    etag_field = "etag" if obj.get("etag") is not None else "eTag"  # moto sends "eTag"
    # ``time`` is informational only; moto sends a number there, so a non-string is ignored.
    event_time = doc.get("time")
    created = ObjectCreated(
        bucket=bucket,
        key=key,
        event_name=detail_type,
        size=_opt_size(obj.get("size"), "detail.object.size", where),
        etag=_opt_etag(obj.get(etag_field), f"detail.object.{etag_field}", where),
        version_id=version_id,
        sequencer=sequencer,
        event_time=event_time
        if isinstance(event_time, str) and event_time and not _BAD_CHAR.search(event_time)
        else None,
    )
    return ParsedMessage(source=Source.EVENTBRIDGE, created=(created,))


def _parse_message(body: str, decoding: KeyDecodingPolicy) -> ParsedMessage:
    doc = _object(_load_json(body, "body"), "body")
    if doc.get("Type") == "Notification":
        # SNS with raw delivery off: the S3 event is a JSON string in ``Message``. A raw-delivery
        # body is the bare S3 event, which never has a top-level ``Type``.
        inner_text = _str(doc.get("Message"), "Message")
        inner = _object(_load_json(inner_text, "Message"), "Message")
        return _parse_notification(
            inner, source=Source.SNS, prefix="Message.", mode=decoding.notifications
        )
    if doc.get("source") == "aws.s3" and "detail-type" in doc:
        return _parse_eventbridge(doc, mode=decoding.eventbridge)
    return _parse_notification(doc, source=Source.S3, prefix="", mode=decoding.notifications)


def _decode_key(raw: str, mode: KeyDecoding) -> str:
    if _BAD_CHAR.search(raw):
        raise KeyDecodingError("key contains a NUL or a lone surrogate")
    if mode is KeyDecoding.NONE:
        return raw
    # unquote_plus would keep a bad escape and replace invalid UTF-8 with U+FFFD, silently
    # turning two different keys into one name: validate, then decode strictly.
    bad = _BAD_ESCAPE.search(raw)
    if bad is not None:
        raise KeyDecodingError(f"invalid %-escape at offset {bad.start()}")
    try:
        key = unquote_to_bytes(raw.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise KeyDecodingError(f"%-decoded bytes are not UTF-8 (byte {exc.start})") from None
    if "\x00" in key:
        raise KeyDecodingError("decoded key contains a NUL (%00)")
    return key


def _sequencer_newer(a: str, b: str) -> bool:
    width = max(len(a), len(b))
    return a.upper().ljust(width, "0") > b.upper().ljust(width, "0")
