"""S3's own facts about an object that s3sqsd keeps with the file: LastModified, content type,
user metadata (``x-amz-meta-*``). Pure values; read from the GET (or the HEAD of a ranged
download), recorded with the provenance (provenance.py), set as the file's mtime (staging.py)
and passed to ``on_download`` (hooks.py).

LastModified is kept as whole seconds since the epoch (UTC): it is what the HTTP
``Last-Modified`` header of a GET carries (second resolution), and so the finest that two
processes reading the same object can both know. It is also what orders two versions of one
key when no S3 sequencer can (provenance.py, ``newer_verdict``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectMeta:
    """What S3 said about the object besides its bytes; unknown values are None / empty.

    ``metadata`` is botocore's ``Metadata`` (the ``x-amz-meta-`` prefix removed, names
    lower-cased by S3) as sorted pairs, so the value stays hashable and compares equal
    however the response ordered its headers.
    """

    last_modified: int | None = None  # epoch seconds, UTC
    content_type: str | None = None
    metadata: Pairs = ()

    @classmethod
    def from_response(cls, response: Mapping[str, Any]) -> ObjectMeta:
        """The facts of a GetObject or HeadObject answer (botocore's parsed dict)."""
        raw_meta = response.get("Metadata") or {}
        pairs = tuple(
            sorted(
                (str(name), str(value))
                for name, value in raw_meta.items()
                if isinstance(name, str) and isinstance(value, str)
            )
        )
        content_type = response.get("ContentType")
        return cls(
            last_modified=epoch_seconds(response.get("LastModified")),
            content_type=content_type if isinstance(content_type, str) else None,
            metadata=pairs,
        )


NO_META = ObjectMeta()  # nothing known: the default of every result that carries meta


def epoch_seconds(value: object) -> int | None:
    """A botocore timestamp (an aware datetime; a naive one is taken as UTC) as whole epoch
    seconds; None for anything else."""
    if not isinstance(value, datetime.datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return int(value.timestamp())


def iso_utc(seconds: int) -> str:
    """``2024-05-01T10:00:00Z``: ISO 8601 in UTC, what ``S3SQSD_LAST_MODIFIED`` holds."""
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
