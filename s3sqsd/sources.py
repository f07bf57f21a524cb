"""``after_download: delete``: the source object is deleted in S3 once its file is in place.

The inbox ("move") pattern: a producer drops objects into a bucket, each host takes what its
events announce, and what was taken leaves the bucket. The rules, in the order they apply:

- Only an event's own work deletes (``source_plan``, pure). The download thread calls it after
  the file is durable (renamed, directory fsynced) and ``on_download``, if any, exited 0; a
  failed command raises before it, so nothing is deleted and the message is retried.
  ``s3sqsd sync`` and reconcile passes never delete: a listing is not the inbox being
  consumed, and nothing told this host the object was meant for it.
- Only the object that is on disk is deleted, never a newer one. In a versioned bucket that is
  the version the GET returned (``VersionId``, recorded in the file's provenance): other
  versions, older or newer, are untouched. Without versions (or a ``null`` version) the delete
  is conditional, ``If-Match`` on the ETag the GET returned: a key overwritten since the GET
  answers 412 and is kept. A store that refuses conditional deletes (LocalStack answers 501)
  keeps the source with a warning (``unconditional_only``): an unconditional delete is never
  sent in its place.
- A STALE event (the file holds a newer object) deletes nothing: its object never reached
  the folder. Nor does a DUPLICATE that is not this event's own download (a listing wrote the
  file, or another event announcing the same object): the event that did the work deletes.
  A DUPLICATE that *is* this event's (``FetchResult.same_event``: a retry of the message, or
  S3 delivering the notification twice) deletes the recorded version, so a retry completes
  what a failed command or delete left undone.
- A download whose GET returned another object than the event announced (an unversioned key
  overwritten between the event and the GET) keeps it: the newer object's own event deletes
  it, once its file is in place; deleting it here would leave that event a 404.

What a delete's answer means for the message (``delete_source``): deleted, a 412 (the key
holds another object: correct, kept) and a 404 (already gone) are successes; access denied,
and any other refusal that a retry cannot change, keep the source with a warning and a
metric, and the message is deleted all the same: the file is delivered, and a retry would
only run ``on_download`` again without gaining the permission. Network errors, throttling and
5xx (after botocore's own retries) raise ``SourceDeleteError``, a transient failure: the
message is retried, and its next delivery finds the file as this event's own and deletes.

Debian bookworm's botocore (1.29) has no ``IfMatch`` parameter on DeleteObject; there the
header is added the botocore way, by two handlers on the client's events for this operation
only (the value travels in the call's own context, so threads sharing the client do not see
each other's), registered when the fetchers are built (``prepare_if_match``).
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from s3sqsd.errors import SourceDeleteError
from s3sqsd.events import ObjectCreated, object_url
from s3sqsd.outcomes import FetchOutcome, FetchResult
from s3sqsd.redact import hide_url_queries
from s3sqsd.verify import REMOTE_ERRORS, strip_etag

AFTER_DOWNLOAD_DELETE = "delete"


class Kept(enum.Enum):
    """Why a source stays in S3 under ``after_download: delete``; the value is the log's
    ``reason`` and the metric's label."""

    STALE = "stale"  # the file holds a newer object: this event's object never arrived
    DUPLICATE = "duplicate"  # the file is another event's or a listing's download
    NOT_ANNOUNCED = "not_announced"  # the GET returned a newer object than the event's
    CHANGED = "changed"  # 412: the key holds another object now
    ABSENT = "absent"  # 404: already gone (an earlier delivery, or someone else)
    UNCONDITIONAL_ONLY = "unconditional_only"  # the store refuses If-Match, or no ETag known
    ACCESS_DENIED = "access_denied"  # no s3:DeleteObject / s3:DeleteObjectVersion
    REFUSED = "refused"  # any other refusal a retry cannot change (a 4xx)


# Worth a warning: the operator has something to fix (a permission, the bucket's versioning).
WARNINGS = frozenset({Kept.UNCONDITIONAL_ONLY, Kept.ACCESS_DENIED, Kept.REFUSED})


@dataclass(frozen=True, slots=True)
class Target:
    """The one object to delete: exactly the one on disk."""

    bucket: str
    key: str
    version_id: str | None  # the version the GET returned (the record's, for a DUPLICATE)
    etag: str | None  # without quotes

    @property
    def by_version(self) -> bool:
        """A real version id: the delete names it. ``null`` (an object written while
        versioning was off or suspended) is replaced by the next upload of the key, so,
        like no version, it is deleted conditionally on its ETag."""
        return self.version_id is not None and self.version_id != "null"

    @property
    def url(self) -> str:
        return object_url(self.bucket, self.key)


def source_plan(obj: ObjectCreated, result: FetchResult) -> Target | Kept | None:
    """What ``after_download: delete`` does with the source of ``obj`` once ``result`` is in
    place and its command succeeded (pure): the ``Target`` to delete, why it is kept, or None
    when there is no source to speak of (a folder marker)."""
    target = Target(obj.bucket, obj.key, result.version_id, result.etag)
    if result.outcome is FetchOutcome.DOWNLOADED:
        event_etag = strip_etag(obj.etag)
        if event_etag is not None and event_etag != result.etag:
            return Kept.NOT_ANNOUNCED
        if obj.version_id is not None and obj.version_id != result.version_id:
            return Kept.NOT_ANNOUNCED  # never: a GET by version returns that version
        return target
    if result.outcome is FetchOutcome.DUPLICATE:
        return target if result.same_event else Kept.DUPLICATE
    if result.outcome is FetchOutcome.STALE:
        return Kept.STALE
    return None  # a folder marker (nothing downloaded), or a listing's conflict


@dataclass(frozen=True, slots=True)
class Answer:
    """What a delete did: ``kept`` None when the source was deleted; ``detail`` for the log."""

    kept: Kept | None
    detail: str = ""


def delete_source(s3: Any, target: Target) -> Answer:
    """Delete ``target`` (a version by its id, else conditionally on its ETag).

    Raises SourceDeleteError for a failure a retry may cure; every other answer is an
    ``Answer``. The texts never carry credentials (a presigned-URL query is hidden).
    """
    client = client_for(s3, target.bucket)
    params: dict[str, Any] = {"Bucket": target.bucket, "Key": target.key}
    if target.by_version:
        params["VersionId"] = target.version_id
    elif target.etag is None:
        return Answer(Kept.UNCONDITIONAL_ONLY, "no ETag known to make the delete conditional")
    else:
        params.update(if_match(client, target.etag))
    try:
        client.delete_object(**params)
    except ClientError as exc:
        return _refused(exc, target)
    except REMOTE_ERRORS as exc:
        raise SourceDeleteError(
            f"DELETE {shown(target)} failed: {type(exc).__name__}: "
            f"{hide_url_queries(str(exc))}; the file is in place, the delete is retried"
        ) from exc
    return Answer(None)


def client_for(s3: Any, bucket: str) -> Any:
    """The boto3 client that calls on ``bucket`` go to: ``s3`` itself, or, for an object
    that routes each bucket to a client of its own (``for_bucket``), that client; the
    If-Match handlers and the IfMatch model check need the client, not the router."""
    for_bucket = getattr(s3, "for_bucket", None)
    return s3 if for_bucket is None else for_bucket(bucket)


_TRANSIENT_WORDS = ("Throttl", "SlowDown", "Internal", "Timeout", "Unavailable", "Expired")


def _refused(exc: ClientError, target: Target) -> Answer:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", "Unknown"))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    message = hide_url_queries(str(error.get("Message", "")))
    detail = f"{code} (HTTP {status})" if status else code
    detail += f": {message}" if message else ""
    if status == 412 or code == "PreconditionFailed":
        return Answer(Kept.CHANGED, detail)
    if status == 404 or code in ("NoSuchKey", "NoSuchVersion", "NotFound"):
        return Answer(Kept.ABSENT, detail)
    if status == 501 or code == "NotImplemented":
        if not target.by_version:
            return Answer(Kept.UNCONDITIONAL_ONLY, detail)
        return Answer(Kept.REFUSED, detail)
    if status == 403 or code in ("AccessDenied", "Forbidden", "AllAccessDisabled"):
        return Answer(Kept.ACCESS_DENIED, detail)
    transient = status is None or status >= 500 or status in (409, 429)
    if transient or any(word in code for word in _TRANSIENT_WORDS):
        raise SourceDeleteError(
            f"DELETE {shown(target)} failed: {detail}; the file is in place, the delete is retried"
        ) from exc
    return Answer(Kept.REFUSED, detail)


def shown(target: Target) -> str:
    """``s3://bucket/key (version V)`` for logs and errors."""
    version = f" (version {target.version_id})" if target.version_id else ""
    return f"{target.url}{version}"


# ---- If-Match on DeleteObject, with or without botocore's IfMatch parameter ---------------

_PARAM = "S3sqsdIfMatch"  # our own call parameter: taken out before botocore validates
_CONTEXT_KEY = "s3sqsd_if_match"


def if_match(s3: Any, etag: str) -> dict[str, str]:
    """The DeleteObject arguments that make it conditional on ``etag``: botocore's own
    ``IfMatch`` where the client's model has it, else our parameter, which the handlers
    registered here (once per client) turn into the ``If-Match`` header of that call only."""
    value = f'"{etag}"'
    if has_if_match(s3):
        return {"IfMatch": value}
    register_if_match(s3)
    return {_PARAM: value}


def has_if_match(s3: Any) -> bool:
    """Whether this client's botocore knows DeleteObject's ``IfMatch`` (1.35.x and later)."""
    members = s3.meta.service_model.operation_model("DeleteObject").input_shape.members
    return "IfMatch" in members


def prepare_if_match(s3: Any) -> None:
    """Register ``if_match``'s handlers on each client of ``s3`` (a client, or an object that
    routes buckets to clients and lists them: ``clients``) whose botocore lacks ``IfMatch``.
    Called where the fetchers are built, before any thread uses the clients: botocore's event
    emitter is not made to change while other threads emit on it. ``if_match`` registers
    again as a fallback, which is then a no-op."""
    clients = s3.clients() if hasattr(s3, "clients") else (s3,)
    for client in clients:
        if not has_if_match(client):
            register_if_match(client)


def register_if_match(s3: Any) -> None:
    """The two handlers of ``if_match`` on ``s3``; registering again is a no-op (unique ids)."""
    events = s3.meta.events
    events.register(
        "provide-client-params.s3.DeleteObject", _stash_if_match, unique_id=_CONTEXT_KEY
    )
    events.register(
        "before-call.s3.DeleteObject", _send_if_match, unique_id=f"{_CONTEXT_KEY}-header"
    )


def _stash_if_match(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    value = params.pop(_PARAM, None)
    if value is not None:
        context[_CONTEXT_KEY] = value


def _send_if_match(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    value = context.get(_CONTEXT_KEY)
    if value is not None:
        params["headers"]["If-Match"] = value


# ---- the log line ------------------------------------------------------------------------------


def log_kept(
    logger: logging.Logger, source: str, kept: Kept, *, detail: str, fields: dict[str, Any]
) -> None:
    """The ``source.kept`` line of ``source`` (``shown``); a warning when the operator has
    something to fix (``WARNINGS``)."""
    logger.log(
        logging.WARNING if kept in WARNINGS else logging.INFO,
        "source %s kept (after_download: delete): %s%s",
        source,
        _WHY[kept],
        f" [{detail}]" if detail else "",
        extra={"event": "source.kept", "reason": kept.value, "error": detail or None, **fields},
    )


_WHY = {
    Kept.STALE: "the file on disk holds a newer object; this event's object never arrived",
    Kept.DUPLICATE: "the file on disk was downloaded by another event or a listing",
    Kept.NOT_ANNOUNCED: "the GET returned a newer object than the event's; its own event "
    "deletes it",
    Kept.CHANGED: "the key holds another object now (412), which stays",
    Kept.ABSENT: "it is already gone",
    Kept.UNCONDITIONAL_ONLY: "only an unconditional delete was possible, which could delete a "
    "newer upload; enable versioning on the bucket, or use a store with conditional deletes "
    "(If-Match)",
    Kept.ACCESS_DENIED: "delete denied: grant s3:DeleteObject (and s3:DeleteObjectVersion on a "
    "versioned bucket)",
    Kept.REFUSED: "the delete was refused",
}
