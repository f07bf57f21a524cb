"""SQS message body -> typed events. Pure: no I/O, no boto3, no logging side effects.

TYPES AND SIGNATURES ABOVE THE LINE BELOW ARE THE CONTRACT OTHER MODULES USE.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from s3sqsd.errors import KeyDecodingError, MessageFormatError  # noqa: F401


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
    raise NotImplementedError


def decode_key(raw: str, mode: KeyDecoding) -> str:
    """Decode an object key; raise KeyDecodingError on bad escapes, invalid UTF-8, NUL."""
    raise NotImplementedError


def sequencer_newer(a: str, b: str) -> bool:
    """True when sequencer ``a`` is later than ``b`` (right-pad the shorter with '0', compare)."""
    raise NotImplementedError


# ---- implementation below -------------------------------------------------------------------
