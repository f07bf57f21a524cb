"""One message's work on a download thread: fetch or remove each item, run ``on_download``,
delete the source (``after_download: delete``), log and count the result.

A download thread makes no SQS call and the job never sees a lease: a ``DownloadJob`` gets
the message, its items and what it may use (the metrics, the drain's cancel event) when it is
submitted, and reports an ``Outcome`` through its future, which the loop thread reads (the
future's done-callback, ``Worker._post_done``, is the worker's). Keeping it apart from the loop
makes that boundary a constructor instead of a section comment.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

from s3sqsd.delivery import deliver
from s3sqsd.errors import DownloadCancelledError, FetchError, MessageError
from s3sqsd.events import ObjectCreated, object_url
from s3sqsd.metrics import Metrics, wall_clock
from s3sqsd.outcomes import FetchOutcome, FetchResult, RemoveOutcome
from s3sqsd.sources import AFTER_DOWNLOAD_DELETE, Answer, Kept, log_kept, shown, source_plan
from s3sqsd.sqs import Message
from s3sqsd.verify import strip_etag
from s3sqsd.worker.lease import Outcome
from s3sqsd.worker.plan import FetcherLike, Item, RemoveItem
from s3sqsd.worker.slots import LANES, LARGE, SMALL, Slots

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadJob:
    """The items of one message, run in order on a download thread (``run``).

    ``cancel`` is the worker's: set when the drain deadline passes, it cuts fetches and
    ``on_download`` commands short. ``metrics`` is shared with every thread (it has its own lock).
    """

    message: Message
    items: tuple[Item, ...]
    metrics: Metrics
    cancel: threading.Event

    def run(self) -> Outcome:
        """Handle every item of the message, in order; stop at the first failure."""
        self.metrics.inc("downloads_in_flight")
        try:
            return self._work_on()
        finally:
            self.metrics.inc("downloads_in_flight", -1)

    def _work_on(self) -> Outcome:
        message = self.message
        downloaded = size = 0
        for item in self.items:
            if isinstance(item, RemoveItem):
                try:
                    self._remove(item)
                except MessageError as exc:
                    return Outcome(error=exc, downloaded=downloaded)
                continue
            obj, placement = item.obj, item.placement
            try:
                result = deliver(
                    placement.folder,
                    obj,
                    key_path=placement.key_path,
                    on_download=placement.on_download,
                    cancel=self.cancel,
                    logger=logger,
                    message_id=message.message_id,
                    measure=self._measure,
                )
                if result.outcome is FetchOutcome.DOWNLOADED:
                    downloaded += 1
                    size += result.size
                if placement.after_download == AFTER_DOWNLOAD_DELETE:
                    self._delete_source(placement.folder, obj, result)
            except MessageError as exc:
                return Outcome(error=exc, downloaded=downloaded)
            except Exception as exc:  # a bug must not kill the thread or lose the message
                logger.exception(
                    "unexpected error while fetching %s",
                    object_url(obj.bucket, obj.key),
                    extra={
                        "event": "object.unexpected_error",
                        "bucket": obj.bucket,
                        "key": obj.key,
                        "message_id": message.message_id,
                    },
                )
                return Outcome(
                    error=FetchError(
                        f"{object_url(obj.bucket, obj.key)}: unexpected error: {exc!r}"
                    ),
                    downloaded=downloaded,
                )
        return Outcome(downloaded=downloaded, size=size)

    def _remove(self, item: RemoveItem) -> None:
        message = self.message
        record = item.record
        outcome = item.placement.folder.remove(record, key_path=item.placement.key_path)
        fields = {"bucket": record.bucket, "key": record.key, "message_id": message.message_id}
        if outcome is RemoveOutcome.REMOVED:
            self.metrics.inc("objects_removed")
            logger.info(
                "%s removed: local file deleted (on_remove: delete)",
                object_url(record.bucket, record.key),
                extra={"event": "object.removed", **fields},
            )
            return
        self.metrics.inc("records_ignored")
        logger.info(
            "%s removed in S3; local file kept (%s)",
            object_url(record.bucket, record.key),
            outcome.name.lower(),
            extra={"event": "object.kept", "outcome": outcome.name.lower(), **fields},
        )

    def _delete_source(self, fetcher: FetcherLike, obj: ObjectCreated, result: FetchResult) -> None:
        """``after_download: delete``, once the file is in place and its command exited 0:
        the source goes if this event's own object is on disk (sources.py), else it stays
        and one ``source.kept`` line says why. Raises SourceDeleteError (transient) or
        DownloadCancelledError; a refusal a retry cannot change is a warning, not a failure."""
        plan = source_plan(obj, result)
        if plan is None:
            return
        fields: dict[str, str | None] = {
            "bucket": obj.bucket,
            "key": obj.key,
            "message_id": self.message.message_id,
        }
        if isinstance(plan, Kept):
            answer, target = Answer(plan), None
        else:
            if self.cancel.is_set():
                raise DownloadCancelledError(f"delete of {shown(plan)} cancelled")
            answer, target = fetcher.delete_source(plan), plan
        fields["version_id"] = target.version_id if target else obj.version_id
        fields["etag"] = target.etag if target else strip_etag(obj.etag)
        if answer.kept is None:
            assert target is not None
            self.metrics.inc("sources_deleted")
            logger.info(
                "source %s deleted (after_download: delete): its file is in place",
                shown(target),
                extra={"event": "source.deleted", **fields},
            )
            return
        self.metrics.inc("sources_kept", reason=answer.kept.value)
        source = shown(target) if target else object_url(obj.bucket, obj.key)
        log_kept(logger, source, answer.kept, detail=answer.detail, fields=fields)

    def _measure(self, result: FetchResult) -> None:
        message = self.message
        metrics = self.metrics
        if result.outcome is not FetchOutcome.DOWNLOADED:
            metrics.inc("objects_skipped", outcome=result.outcome.name.lower())
            return
        now = wall_clock()
        metrics.inc("objects_downloaded")
        metrics.inc("objects_verified", verified_by=result.verified_by or "unknown")
        metrics.inc("downloaded_bytes", result.size)
        metrics.set("last_download_timestamp_seconds", now)
        metrics.observe("download_duration_seconds", result.duration_ms / 1000)
        if message.sent_timestamp_ms:
            metrics.observe("lag_seconds", max(0.0, now - message.sent_timestamp_ms / 1000))


class Downloads:
    """The download threads (``slots.Slots``: a small lane and a large lane, their caps changed
    by the concurrency tuner), the drain's cancel event, and what finished in each lane.

    Owned by the worker, which submits each message's job here and reads the outcome from the
    future. (The part threads of ranged downloads are the daemon's: it creates them for the
    fetchers and shuts them down after the worker.)
    """

    def __init__(self, *, small: int, large: int, metrics: Metrics) -> None:
        self._metrics = metrics
        self._slots: Slots[Outcome] = Slots({SMALL: small, LARGE: large})
        self.cancel = threading.Event()
        # Every job not finished yet, whatever became of its lease: after the drain gives up,
        # the leases are gone but a download stuck in a socket read still holds its thread.
        self._unfinished: set[Future[Outcome]] = set()
        self._lock = threading.Lock()
        # Per lane: messages whose download succeeded, and their bytes (running totals).
        self._done = dict.fromkeys(LANES, 0)
        self._bytes = dict.fromkeys(LANES, 0)

    def submit(
        self,
        message: Message,
        items: tuple[Item, ...],
        *,
        lane: str = SMALL,
        when_done: Callable[[Future[Outcome]], None],
    ) -> Future[Outcome]:
        job = DownloadJob(message=message, items=items, metrics=self._metrics, cancel=self.cancel)
        future = self._slots.submit(lane, job.run)
        with self._lock:
            self._unfinished.add(future)
        future.add_done_callback(functools.partial(self._finished, lane))
        future.add_done_callback(when_done)
        return future

    def _finished(self, lane: str, future: Future[Outcome]) -> None:
        outcome = None
        if not future.cancelled() and future.exception() is None:
            outcome = future.result()
        with self._lock:
            self._unfinished.discard(future)
            if outcome is not None and outcome.error is None:
                self._done[lane] += 1
                self._bytes[lane] += outcome.size

    def completed(self, lane: str = SMALL) -> tuple[int, int]:
        """Messages of ``lane`` downloaded so far, and their bytes (running totals)."""
        with self._lock:
            return self._done[lane], self._bytes[lane]

    def running(self) -> int:
        """Jobs running now on a download thread (not queued, not finished)."""
        with self._lock:
            return sum(1 for future in self._unfinished if future.running())

    def active(self, lane: str) -> bool:
        """A download of ``lane`` is running."""
        return self._slots.running(lane) > 0

    def full(self, lane: str = SMALL) -> bool:
        """Every slot of ``lane`` is busy."""
        return self._slots.full(lane)

    def resize(self, lane: str, cap: int) -> None:
        """A new cap for ``lane``: running downloads go on; more or fewer start from now."""
        self._slots.resize(lane, cap)

    def cap(self, lane: str = SMALL) -> int:
        return self._slots.cap(lane)

    def shutdown(self) -> None:
        self._slots.shutdown()
