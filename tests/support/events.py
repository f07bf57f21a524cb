"""The one builder of hand-written event bodies for tests that need no emulator.

Tests that run the daemon against an emulator get their bodies from the emulator's own
notifications (tests/support/emulator.py); the unit and functional tests, which parse or plan
bodies directly, build them here, so a change of shape is made once. Records are minimal
(what s3sqsd reads); ``tests/support/daemon.s3_notification_body`` is the full AWS shape.
"""

from __future__ import annotations

import json
from typing import Any


def s3_record(
    bucket: str,
    key: str,
    *,
    event_name: str = "ObjectCreated:Put",
    size: int | None = 1,
    source: bool = True,
    **object_fields: Any,
) -> dict[str, Any]:
    """One S3 notification record; ``object_fields`` add to ``s3.object`` (sequencer, eTag,
    versionId); ``size=None`` leaves the size out (removals have none)."""
    obj: dict[str, Any] = {"key": key}
    if size is not None:
        obj["size"] = size
    obj.update(object_fields)
    record: dict[str, Any] = {"eventVersion": "2.1"}
    if source:
        record["eventSource"] = "aws:s3"
    record["eventName"] = event_name
    record["s3"] = {"bucket": {"name": bucket}, "object": obj}
    return record


def notification(*records: dict[str, Any]) -> str:
    """An S3 notification body holding ``records``."""
    return json.dumps({"Records": list(records)})


def s3_body(*keys: str, bucket: str = "inbox", size: int = 1) -> str:
    """A notification announcing ``keys`` created in ``bucket``."""
    return notification(*(s3_record(bucket, key, size=size) for key in keys))


def sns_envelope(body: str) -> str:
    """``body`` as SNS delivers it to SQS without raw message delivery."""
    return json.dumps({"Type": "Notification", "Message": body})


def eventbridge_body(bucket: str, key: str, *, size: int = 1) -> str:
    """An EventBridge "Object Created" event, as an SQS target receives it."""
    detail = {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, "size": size}}
    return json.dumps({"source": "aws.s3", "detail-type": "Object Created", "detail": detail})
