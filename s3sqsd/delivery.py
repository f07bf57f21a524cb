"""One object's delivery into its folder, as the daemon and ``s3sqsd sync`` both do it: fetch
(the folder's ``Fetcher``: checks, temp + fsync + rename), log the result, count it, then run
``on_download`` for a file in place.

One function for both callers, so a sync cannot drift from what an event does: the same log
lines (``object.downloaded``, ``object.duplicate``...), the same facts for the command, the same
error for a failed command. What differs is passed in: the logger (its name is in every JSON
line), the message id (None for a sync), whether a DUPLICATE runs the command again (an event's
retry must run it once more before its message may go; a sync has no retry to complete).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from s3sqsd.config import CommandConfig
from s3sqsd.events import ObjectCreated, object_url
from s3sqsd.hooks import object_facts, run_on_download
from s3sqsd.outcomes import FetchOutcome, FetchResult
from s3sqsd.provenance import Origin
from s3sqsd.verify import CheckKind


class Fetches(Protocol):
    def fetch(
        self,
        obj: ObjectCreated,
        *,
        cancel: threading.Event,
        key_path: str | None = None,
        origin: Origin | None = None,
    ) -> FetchResult: ...


def deliver(
    fetcher: Fetches,
    obj: ObjectCreated,
    *,
    key_path: str | None,
    on_download: CommandConfig | None,
    cancel: threading.Event,
    logger: logging.Logger,
    message_id: str | None = None,
    measure: Callable[[FetchResult], None] | None = None,
    command_on_duplicate: bool = True,
    origin: Origin | None = None,
) -> FetchResult:
    """Fetch ``obj``, log and ``measure`` the result, run ``on_download`` for a file in place.

    Raises the fetch's MessageError, or the command's (CommandError, DownloadCancelledError)
    once the file is in place and logged. ``origin``: an event's object or a listing's (the
    fetcher's default otherwise); a listing never replaces a file s3sqsd did not write.
    """
    result = fetcher.fetch(obj, cancel=cancel, key_path=key_path, origin=origin)
    log_result(obj, result, logger=logger, message_id=message_id)
    if measure is not None:
        measure(result)
    runs = (FetchOutcome.DOWNLOADED, FetchOutcome.DUPLICATE)
    if result.outcome in (runs if command_on_duplicate else runs[:1]):
        after_download(
            obj, result, on_download, cancel=cancel, logger=logger, message_id=message_id
        )
    return result


def after_download(
    obj: ObjectCreated,
    result: FetchResult,
    command: CommandConfig | None,
    *,
    cancel: threading.Event,
    logger: logging.Logger,
    message_id: str | None,
) -> None:
    """Run ``on_download`` for the file of ``result``; its failure is raised (CommandError)."""
    if command is None or result.path is None:
        return
    fields = {
        "bucket": obj.bucket,
        "key": obj.key,
        "path": str(result.path),
        "message_id": message_id,
    }
    hook = run_on_download(
        command,
        facts=object_facts(
            path=result.path,
            bucket=obj.bucket,
            key=obj.key,
            version_id=result.version_id,
            size=result.size,
            etag=result.etag,
            message_id=message_id or "",
            meta=result.meta,
        ),
        cancel=cancel,
    )
    for line in hook.output:
        logger.info("%s", line, extra={"event": "command.output", **fields})
    if hook.output_truncated:
        logger.info("(command output truncated)", extra={"event": "command.output", **fields})
    if not hook.ok:
        raise hook.as_error(object_url(obj.bucket, obj.key))
    logger.info(
        "on_download command for %s succeeded",
        object_url(obj.bucket, obj.key),
        extra={"event": "command.succeeded", "duration_ms": hook.duration_ms, **fields},
    )


def log_result(
    obj: ObjectCreated, result: FetchResult, *, logger: logging.Logger, message_id: str | None
) -> None:
    """The one log line of a fetch: downloaded (a warning when only its length was
    verified), stale, duplicate or folder marker."""
    fields = {
        "bucket": obj.bucket,
        "key": obj.key,
        "path": str(result.path) if result.path else None,
        "message_id": message_id,
    }
    if result.outcome is FetchOutcome.DOWNLOADED:
        # Never silently weaker: a download that only its length verified is a warning
        # naming what S3 had that this host could not check (integrity: best_effort).
        weak = result.verified_by == CheckKind.LENGTH.value
        logger.log(
            logging.WARNING if weak else logging.INFO,
            "downloaded %s to %s (%d bytes, verified by %s%s)",
            object_url(obj.bucket, obj.key),
            result.path,
            result.size,
            result.verified_by,
            f"; not verifiable here: {'; '.join(result.unverifiable)}"
            if result.unverifiable
            else "",
            extra={
                "event": "object.downloaded",
                "size": result.size,
                "duration_ms": result.duration_ms,
                "version_id": result.version_id,
                "etag": result.etag,
                "verified_by": result.verified_by,
                "unverifiable": list(result.unverifiable),
                **fields,
            },
        )
    elif result.outcome is FetchOutcome.STALE:
        logger.info(
            "%s: event older than the file on disk (sequencer %s); kept the newer file",
            object_url(obj.bucket, obj.key),
            obj.sequencer,
            extra={"event": "object.stale", "sequencer": obj.sequencer, **fields},
        )
    elif result.outcome is FetchOutcome.CONFLICT:
        logger.warning(
            "%s: %s is not a file s3sqsd wrote; left as it is (a listing never replaces one)",
            object_url(obj.bucket, obj.key),
            result.path,
            extra={"event": "object.conflict", **fields},
        )
    elif result.outcome is FetchOutcome.DUPLICATE:
        logger.info(
            "%s: already on disk (duplicate event)",
            object_url(obj.bucket, obj.key),
            extra={"event": "object.duplicate", **fields},
        )
    else:
        logger.info(
            "%s is a folder marker; nothing written",
            object_url(obj.bucket, obj.key),
            extra={"event": "object.folder_marker", **fields},
        )
