"""Fetch one large object as ranged GETs in parallel into an open temp file, then verify it.

One GET stream runs at the speed of one core (read, write and checksum in one thread under the
GIL); boto3's ``download_file`` is twice as fast on a 1 GiB object because it reads ranges on
ten threads, but it keeps every range in memory and checks nothing. Here:

1. ``HeadObject`` (``ChecksumMode=ENABLED``) gives the length, the ETag and the full-object
   checksum to verify; the event's version, when it names one, is asked for by ``VersionId``.
2. Ranges of ``part_size`` bytes are fetched on the injected executor, each streamed in chunks
   straight to its offset with ``pwrite``: memory stays at a chunk per range in flight. Every
   ranged GET is pinned to the object the HEAD saw (``VersionId``, else ``IfMatch`` on the
   ETag), so an overwrite during the download fails it (412: retried) instead of mixing two
   objects; each answer's ``Content-Range`` must be the range asked for, of the same total.
3. This thread reads the file back in order, range by range as they complete, while the later
   ones are still arriving: the digests of ``verify.Digests`` see the bytes in order (what a
   whole-object checksum needs) at page-cache speed, and each verified range is handed to
   writeback (``POSIX_FADV_DONTNEED``) so the final fsync has little left. The hashing releases
   the GIL, so it runs beside the network threads.

At most ``window`` ranges of one download are submitted ahead of the ordered reader, so a
5 TiB object is never 655,360 futures, and the dirty pages waiting to be read back stay bounded.
Any failure (a range's GET, a write, a mismatch, ``cancel``) stops the other ranges at their
next chunk and waits for every submitted range to finish before returning, so nothing writes
to the file descriptor after its owner closes it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Executor, Future
from dataclasses import dataclass, field
from typing import Any

from s3sqsd.errors import FetchError, IntegrityError
from s3sqsd.events import ObjectCreated
from s3sqsd.verify import REMOTE_ERRORS, Digests, Expected, remote_error, s3_url, strip_etag

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


@dataclass(frozen=True, slots=True)
class RangedResult:
    size: int
    etag: str | None
    version_id: str | None


@dataclass(frozen=True, slots=True)
class _Range:
    start: int
    end: int  # inclusive, as HTTP writes it


def plan_ranges(size: int, part_size: int) -> Iterator[_Range]:
    """The byte ranges covering ``size`` bytes, each ``part_size`` long but the last (pure).

    A generator: a 5 TiB object in 1 MiB ranges is five million of them, made as they are
    submitted (at most ``window`` ahead), never held in a list."""
    for start in range(0, size, part_size):
        yield _Range(start, min(start + part_size, size) - 1)


def fetch_ranged(
    *,
    s3: Any,
    obj: ObjectCreated,
    fd: int,
    executor: Executor,
    part_size: int,
    chunk_size: int,
    window: int,
    cancel: threading.Event,
    write_error: Callable[[OSError], Exception],
) -> RangedResult:
    """Download ``obj`` into ``fd`` (an empty temp file) and verify it; see the module text.

    Remote failures raise FetchError/ObjectAccessError, mismatches IntegrityError, write
    failures ``write_error(exc)`` (the caller's classification, naming its paths).
    """
    head_params: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key, "ChecksumMode": "ENABLED"}
    if obj.version_id:
        head_params["VersionId"] = obj.version_id
    try:
        head = s3.head_object(**head_params)
    except REMOTE_ERRORS as exc:
        raise remote_error(exc, obj) from exc
    expected = Expected.from_response(head, obj)
    size = expected.content_length
    if size is None:
        raise FetchError(f"HEAD {s3_url(obj)} gave no Content-Length")
    etag = strip_etag(head.get("ETag"))
    version_id = head.get("VersionId") or obj.version_id
    get_params: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key}
    if obj.version_id:
        get_params["VersionId"] = obj.version_id
    elif etag is not None:
        get_params["IfMatch"] = f'"{etag}"'
    job = _Job(
        s3=s3,
        obj=obj,
        fd=fd,
        params=get_params,
        size=size,
        etag=etag,
        chunk_size=chunk_size,
        cancel=cancel,
        write_error=write_error,
    )
    digests = Digests(expected)
    pending: collections.deque[tuple[_Range, Future[None]]] = collections.deque()
    upcoming = plan_ranges(size, part_size)

    def submit(part: _Range) -> None:
        try:
            pending.append((part, executor.submit(job.fetch, part)))
        except RuntimeError as exc:  # the executor is shut down: the daemon is exiting
            raise FetchError(f"download of {s3_url(obj)} cancelled (shutting down)") from exc

    try:
        for part in upcoming:
            submit(part)
            if len(pending) >= window:
                break
        while pending:
            part, future = pending.popleft()
            try:
                future.result()  # the range's own error, if it failed
            except CancelledError as exc:  # shut down with cancel_futures (the daemon exits)
                raise FetchError(f"download of {s3_url(obj)} cancelled (shutting down)") from exc
            nxt = next(upcoming, None)
            if nxt is not None:
                submit(nxt)
            job.read_back(part, digests)
    finally:
        job.stop.set()
        for _, future in pending:
            future.cancel()
        for _, future in pending:
            with contextlib.suppress(BaseException):
                future.exception()  # waits: no range may write once we return
    digests.verify()
    return RangedResult(size=digests.length, etag=etag, version_id=version_id)


@dataclass(frozen=True, slots=True)
class _Job:
    """What every range of one download shares; ``fetch`` runs on the executor's threads."""

    s3: Any
    obj: ObjectCreated
    fd: int
    params: dict[str, Any]
    size: int
    etag: str | None
    chunk_size: int
    cancel: threading.Event
    write_error: Callable[[OSError], Exception]
    stop: threading.Event = field(default_factory=threading.Event)  # set when it is over

    def _check_going(self) -> None:
        if self.cancel.is_set() or self.stop.is_set():
            raise FetchError(f"download of {s3_url(self.obj)} cancelled")

    def fetch(self, part: _Range) -> None:
        self._check_going()
        url = s3_url(self.obj)
        try:
            response = self.s3.get_object(**self.params, Range=f"bytes={part.start}-{part.end}")
        except REMOTE_ERRORS as exc:
            raise remote_error(exc, self.obj) from exc
        body = response["Body"]
        try:
            got = _CONTENT_RANGE.fullmatch(str(response.get("ContentRange") or ""))
            if got is None or tuple(map(int, got.groups())) != (part.start, part.end, self.size):
                raise IntegrityError(
                    f"{url}: asked for bytes {part.start}-{part.end}/{self.size}, got "
                    f"Content-Range {response.get('ContentRange')!r}"
                )
            if self.etag is not None and strip_etag(response.get("ETag")) != self.etag:
                raise FetchError(f"{url} changed during the download (another ETag)")
            offset = part.start
            while offset <= part.end:
                self._check_going()
                try:
                    chunk = body.read(min(self.chunk_size, part.end + 1 - offset))
                except REMOTE_ERRORS as exc:
                    raise remote_error(exc, self.obj) from exc
                if not chunk:
                    raise FetchError(
                        f"GET {url} bytes {part.start}-{part.end}: the body ended at {offset}"
                    )
                self._write_at(chunk, offset)
                offset += len(chunk)
        finally:
            with contextlib.suppress(Exception):
                body.close()

    def _write_at(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.pwrite(self.fd, view, offset)
                view = view[written:]
                offset += written
        except OSError as exc:
            raise self.write_error(exc) from exc

    def read_back(self, part: _Range, digests: Digests) -> None:
        """Feed the range's bytes, in order, to ``digests``; then start its writeback."""
        offset = part.start
        try:
            while offset <= part.end:
                self._check_going()
                data = os.pread(self.fd, min(self.chunk_size, part.end + 1 - offset), offset)
                if not data:
                    raise IntegrityError(
                        f"{s3_url(self.obj)}: the temp file ends at {offset}, "
                        f"before the range {part.start}-{part.end} it received"
                    )
                digests.update(data)
                offset += len(data)
            with contextlib.suppress(OSError):
                os.posix_fadvise(
                    self.fd, part.start, part.end + 1 - part.start, os.POSIX_FADV_DONTNEED
                )
        except OSError as exc:
            raise self.write_error(exc) from exc
