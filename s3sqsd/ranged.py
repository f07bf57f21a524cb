"""Fetch one large object as ranged GETs in parallel into an open temp file, then verify it.

One GET stream runs at the speed of one core (read, write and checksum in one thread under the
GIL); boto3's ``download_file`` is twice as fast on a 1 GiB object because it reads ranges on
ten threads, but it keeps every range in memory and checks nothing. Here:

1. ``HeadObject`` (``ChecksumMode=ENABLED``) gives the length, the ETag and the checksum to
   verify (verify.py chooses the check; a per-part one also needs the part sizes, parts.py);
   the event's version, when it names one, is asked for by ``VersionId``.
2. Ranges of ``part_size`` bytes are fetched on the injected executor, each streamed in chunks
   straight to its offset with ``pwrite``: memory stays at a chunk per range in flight. Every
   ranged GET is pinned to the object the HEAD saw (``VersionId``, else ``IfMatch`` on the
   ETag), so an overwrite during the download fails it (412: retried) instead of mixing two
   objects; each answer's ``Content-Range`` must be the range asked for, of the same total.
3. When a per-part check is made and the parts are of a range's size (``aligned``), each range
   is one part, and the thread that fetches it digests its bytes as they arrive: the parts are
   hashed in parallel (the MD5 of a multipart ETag costs 1.5 s of CPU per GiB, more than one
   core can spare beside the network), and this thread only combines the digests in order.
   Otherwise this thread reads the file back in order, range by range as they complete, while
   the later ones are still arriving: the digests of ``verify.Digests`` see the bytes in order
   (what a whole-object checksum needs, and what lets a per-part one cut at the parts'
   boundaries whatever the ranges are) at page-cache speed, and each verified range is handed to
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from s3sqsd.checksums import Hasher, HostChecksums
from s3sqsd.errors import DownloadCancelledError, FetchError, IntegrityError, PartsMismatchError
from s3sqsd.events import ObjectCreated
from s3sqsd.limits import PartShare, Throttle
from s3sqsd.objectmeta import NO_META, ObjectMeta
from s3sqsd.parts import check_again, layout, pin
from s3sqsd.verify import (
    REMOTE_ERRORS,
    Check,
    Digests,
    Expected,
    remote_error,
    s3_url,
    strip_etag,
)

_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
# Parts up to this many ranges long are fetched whole, one per thread (see ``aligned``): with
# the default 8 MiB ranges, parts of up to 64 MiB, which covers what the AWS CLI, the SDKs'
# transfer managers and rclone cut below 78 GiB objects.
ALIGN_MAX_PARTS = 8


def parts_executor(concurrency: int) -> ThreadPoolExecutor:
    """The pool ranged GETs of large objects run on (handed to every Fetcher).

    Shared by the fetchers of every folder, so that ``large_objects.concurrency`` bounds the
    part threads of the whole daemon. The daemon owns it: it creates it before the fetchers and
    shuts it down once the worker has stopped.
    """
    return ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="s3sqsd-part")


@dataclass(frozen=True, slots=True)
class RangedResult:
    size: int
    etag: str | None
    version_id: str | None
    check: Check
    meta: ObjectMeta = NO_META  # the HEAD's: every ranged GET is pinned to its object


@dataclass(frozen=True, slots=True)
class _Range:
    start: int
    end: int  # inclusive, as HTTP writes it


def part_ranges(sizes: Sequence[int]) -> Iterator[_Range]:
    """One range per part of the layout ``sizes`` (pure): a range that is exactly one part can
    be digested by the thread that downloads it, in parallel with the others."""
    start = 0
    for size in sizes:
        yield _Range(start, start + size - 1)
        start += size


def aligned(sizes: Sequence[int] | None, part_size: int) -> bool:
    """Whether to fetch one range per part (pure): when a per-part check needs the parts'
    digests and no part is so large (over ``ALIGN_MAX_PARTS`` ranges) that fetching it on one
    thread would cost the parallelism ranges are for; else ranges of ``part_size`` and the
    ordered reader cuts the parts."""
    if not sizes:
        return False
    return min(sizes) > 0 and max(sizes) <= ALIGN_MAX_PARTS * part_size


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
    expect: Callable[[Any, ObjectCreated], Expected],
    host: HostChecksums,
    throttle: Throttle | None = None,
    share: PartShare | None = None,
) -> RangedResult:
    """Download ``obj`` into ``fd`` (an empty temp file) and verify it; see the module text.

    Remote failures raise FetchError/ObjectAccessError, mismatches IntegrityError, write
    failures ``write_error(exc)`` (the caller's classification, naming its paths).
    ``expect`` turns the HEAD into what the bytes must match (and may refuse the object:
    ``integrity: strict``); ``host`` computes the digests; every range is read through
    ``throttle`` when there is one (limits.py; a stop ends its waits).
    """
    head_params: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key, "ChecksumMode": "ENABLED"}
    if obj.version_id:
        head_params["VersionId"] = obj.version_id
    try:
        head = s3.head_object(**head_params)
    except REMOTE_ERRORS as exc:
        raise remote_error(exc, obj) from exc
    expected = expect(head, obj)
    size = expected.content_length
    if size is None:
        raise FetchError(f"HEAD {s3_url(obj)} gave no Content-Length")
    etag = strip_etag(head.get("ETag"))
    version_id = head.get("VersionId") or obj.version_id
    pinned = pin(version_id=obj.version_id, etag=etag)
    get_params: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key, **pinned}
    check = expected.check
    sizes = None
    if check.needs_layout and check.parts is not None:
        sizes = layout(s3=s3, obj=obj, total=size, parts=check.parts, pinned=pinned)
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
        throttle=throttle,
        share=share,
    )
    digests = Digests(expected, host=host, layout=None if sizes is None else sizes.sizes)
    by_part = aligned(None if sizes is None else sizes.sizes, part_size)
    pending: collections.deque[tuple[_Range, Future[bytes | None]]] = collections.deque()
    upcoming = part_ranges(sizes.sizes) if by_part and sizes else plan_ranges(size, part_size)

    def submit(part: _Range) -> None:
        hasher = digests.new_part_hasher() if by_part else None
        try:
            pending.append((part, executor.submit(job.fetch, part, hasher)))
        except RuntimeError as exc:  # the executor is shut down: the daemon is exiting
            raise DownloadCancelledError(
                f"download of {s3_url(obj)} cancelled (shutting down)"
            ) from exc

    try:
        for part in upcoming:
            submit(part)
            if len(pending) >= window:
                break
        while pending:
            part, future = pending.popleft()
            try:
                digest = future.result()  # the range's own error, if it failed
            except CancelledError as exc:  # shut down with cancel_futures (the daemon exits)
                raise DownloadCancelledError(
                    f"download of {s3_url(obj)} cancelled (shutting down)"
                ) from exc
            nxt = next(upcoming, None)
            if nxt is not None:
                submit(nxt)
            if digest is not None:  # one whole part, digested by its own thread
                digests.add_part(digest, part.end + 1 - part.start)
                job.release(part)
            else:
                job.read_back(part, digests)
    finally:
        job.stop.set()
        for _, future in pending:
            future.cancel()
        for _, future in pending:
            with contextlib.suppress(BaseException):
                future.exception()  # waits: no range may write once we return
    try:
        digests.verify()
    except PartsMismatchError as exc:
        assert sizes is not None  # only per-part checks raise it
        check_again(
            exc,
            s3=s3,
            obj=obj,
            fd=fd,
            expected=expected,
            host=host,
            assumed=sizes,
            pinned=pinned,
            chunk_size=chunk_size,
            cancel=cancel,
        )
    return RangedResult(
        size=digests.length,
        etag=etag,
        version_id=version_id,
        check=check,
        meta=ObjectMeta.from_response(head),
    )


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
    throttle: Throttle | None = None  # max_bandwidth_bytes_per_second (limits.py)
    share: PartShare | None = None  # fewer ranges at once while small files wait (limits.py)
    stop: threading.Event = field(default_factory=threading.Event)  # set when it is over

    def _check_going(self) -> None:
        if self.cancel.is_set():
            raise DownloadCancelledError(f"download of {s3_url(self.obj)} cancelled")
        if self.stop.is_set():  # another range failed: its error is the one reported
            raise FetchError(f"download of {s3_url(self.obj)} stopped")

    def fetch(self, part: _Range, hasher: Hasher | None = None) -> bytes | None:
        """GET one range into its place in the file; with ``hasher`` (the range is one whole
        part), digest its bytes on the way and return the digest. Waits for a place first
        while small files wait (``share``)."""
        if self.share is None:
            return self._fetch(part, hasher)
        with self.share.place((self.cancel, self.stop)):
            return self._fetch(part, hasher)

    def _fetch(self, part: _Range, hasher: Hasher | None) -> bytes | None:
        self._check_going()
        url = s3_url(self.obj)
        try:
            response = self.s3.get_object(**self.params, Range=f"bytes={part.start}-{part.end}")
        except REMOTE_ERRORS as exc:
            raise remote_error(exc, self.obj) from exc
        body = response["Body"]
        source = body
        if self.throttle is not None:
            length = part.end + 1 - part.start
            source = self.throttle.wrap(body, length=length, interrupt=(self.cancel, self.stop))
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
                    chunk = source.read(min(self.chunk_size, part.end + 1 - offset))
                except REMOTE_ERRORS as exc:
                    raise remote_error(exc, self.obj) from exc
                if not chunk:
                    raise FetchError(
                        f"GET {url} bytes {part.start}-{part.end}: the body ended at {offset}"
                    )
                self._write_at(chunk, offset)
                if hasher is not None:
                    hasher.update(chunk)
                offset += len(chunk)
        finally:
            with contextlib.suppress(Exception):
                body.close()
        return None if hasher is None else hasher.digest()

    def release(self, part: _Range) -> None:
        """Start the writeback of a range no one reads back, and drop it from the cache."""
        with contextlib.suppress(OSError):
            os.posix_fadvise(self.fd, part.start, part.end + 1 - part.start, os.POSIX_FADV_DONTNEED)

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
