"""GET one object's bytes into an open temp file and verify them against what S3 announced.

The file is checked against the event and the response (length, event size, and the strongest
checksum or MD5 ETag this host can verify: verify.py says which, and why the MD5 only when no
checksum is). Objects of ``ranged_threshold`` bytes or more are fetched as parallel ranged GETs
when a parts executor is given (ranged.py), with the same checks; every other object is one
GET, pinned to the event's version when it names one. Where the bytes go next (label, fsync,
rename) is staging.py's.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s3sqsd.checksums import HostChecksums
from s3sqsd.errors import (
    FetchError,
    LocalError,
    MessageError,
    PartsMismatchError,
    UnverifiableError,
)
from s3sqsd.events import ObjectCreated
from s3sqsd.limits import PartShare, Throttle
from s3sqsd.objectmeta import NO_META, ObjectMeta
from s3sqsd.parts import Layout, check_again, layout, pin
from s3sqsd.ranged import fetch_ranged
from s3sqsd.verify import (
    REMOTE_ERRORS,
    Check,
    CheckKind,
    Digests,
    Expected,
    Readable,
    remote_error,
    s3_url,
    stream_and_verify,
    strip_etag,
)

WRITEBACK_BYTES = 8 << 20  # start writeback of a large download every 8 MiB
# Reads of a ranged GET: with ten ranges in flight, 1 MiB reads cost 14 MiB more peak RSS on a
# 1 GiB object than 256 KiB ones (73.7 vs 59.3 MiB) for no speed (bench, workload c), and
# smaller reads halve the CPU at 20 ms RTT (fewer partial reads per call); s3transfer reads
# 256 KiB too.
RANGE_CHUNK_BYTES = 256 << 10


@dataclass(frozen=True, slots=True)
class Got:
    """What one download brought: its size, the object's ETag and version, and its check."""

    size: int
    etag: str | None
    version_id: str | None
    check: Check
    meta: ObjectMeta = NO_META  # LastModified, content type, user metadata


class Downloader:
    """Fetches objects into temp files; ``download`` is safe to call from many threads."""

    def __init__(
        self,
        *,
        s3: Any,
        temp_dir: Path,
        chunk_size: int,
        parts: Executor | None,
        ranged_threshold: int,
        part_size: int,
        parts_window: int,
        checksums: HostChecksums,
        integrity_strict: bool,
        throttle: Throttle | None = None,
        share: PartShare | None = None,
    ) -> None:
        """See ``Fetcher``; ``temp_dir`` is named in the text of a failed write; every body
        is read through ``throttle`` when there is one, and the ranges of a large object
        take their turn in ``share`` (limits.py)."""
        if chunk_size <= 0 or part_size <= 0 or parts_window <= 0:
            raise ValueError("chunk_size, part_size and parts_window must be positive")
        self._s3 = s3
        self._temp_dir = temp_dir
        self._chunk_size = chunk_size
        self._parts = parts
        self._ranged_threshold = ranged_threshold
        self._part_size = part_size
        self._parts_window = parts_window
        self._checksums = checksums
        self._strict = integrity_strict
        self._throttle = throttle
        self._share = share

    @property
    def checksums(self) -> HostChecksums:
        return self._checksums

    def download(self, obj: ObjectCreated, *, fd: int, path: Path, cancel: threading.Event) -> Got:
        """Write ``obj`` into the empty temp file ``fd`` and verify it; ``path`` (its final
        path) is named in the text of a failed write."""
        parts = self._parts
        if parts is not None and (obj.size or 0) >= self._ranged_threshold:
            return self._fetch_ranged(obj, fd, path, cancel, parts)
        return self._fetch_whole(obj, fd, path, cancel)

    def _fetch_whole(self, obj: ObjectCreated, fd: int, path: Path, cancel: threading.Event) -> Got:
        """One GET streamed into ``fd``, pinned to the event's version when it names one."""
        params: dict[str, Any] = {"Bucket": obj.bucket, "Key": obj.key, "ChecksumMode": "ENABLED"}
        if obj.version_id:
            params["VersionId"] = obj.version_id
        try:
            response = self._s3.get_object(**params)
        except REMOTE_ERRORS as exc:
            raise remote_error(exc, obj) from exc
        body = response["Body"]
        etag = strip_etag(response.get("ETag"))
        version_id = response.get("VersionId") or obj.version_id
        try:
            expected = self.expect(response, obj)
            pinned = pin(version_id=version_id, etag=etag)
            sizes = self._layout(obj, expected, pinned)
            digests = Digests(
                expected, host=self._checksums, layout=None if sizes is None else sizes.sizes
            )
            source = body
            if self._throttle is not None:
                source = self._throttle.wrap(
                    body, length=expected.content_length, interrupt=(cancel,)
                )
            try:
                size = self._receive(source, fd, path, digests, obj, cancel)
            except PartsMismatchError as exc:
                assert sizes is not None  # only per-part checks raise it
                check_again(
                    exc,
                    s3=self._s3,
                    obj=obj,
                    fd=fd,
                    expected=expected,
                    host=self._checksums,
                    assumed=sizes,
                    pinned=pinned,
                    chunk_size=self._chunk_size,
                    cancel=cancel,
                )
                size = digests.length
        finally:
            _close_quietly(body)
        return Got(
            size=size,
            etag=etag,
            version_id=version_id,
            check=expected.check,
            meta=ObjectMeta.from_response(response),
        )

    def expect(self, response: Mapping[str, Any], obj: ObjectCreated) -> Expected:
        """What the bytes must match, refused here under ``integrity: strict`` when that is
        only their length (before a byte is read: nothing is downloaded for nothing)."""
        expected = Expected.from_response(response, obj, host=self._checksums)
        check = expected.check
        if self._strict and check.kind is CheckKind.LENGTH:
            why = "; ".join(check.unverifiable) or "S3 has no checksum and no MD5 ETag for it"
            raise UnverifiableError(
                f"{s3_url(obj)}: only the length could be verified on this host ({why}); "
                "integrity: strict refuses it (install awscrt, or set integrity: best_effort)"
            )
        return expected

    def _layout(
        self, obj: ObjectCreated, expected: Expected, pinned: dict[str, Any]
    ) -> Layout | None:
        """The part sizes a per-part check needs (parts.py); None for the other checks."""
        check = expected.check
        if not check.needs_layout or check.parts is None:
            return None
        if expected.content_length is None:
            raise FetchError(f"GET {s3_url(obj)} gave no Content-Length")
        return layout(
            s3=self._s3,
            obj=obj,
            total=expected.content_length,
            parts=check.parts,
            pinned=pinned,
        )

    def _fetch_ranged(
        self,
        obj: ObjectCreated,
        fd: int,
        path: Path,
        cancel: threading.Event,
        parts: Executor,
    ) -> Got:
        """Ranged GETs on the parts executor (ranged.py), with the same checks."""
        result = fetch_ranged(
            s3=self._s3,
            obj=obj,
            fd=fd,
            executor=parts,
            part_size=self._part_size,
            chunk_size=min(self._chunk_size, RANGE_CHUNK_BYTES),
            window=self._parts_window,
            cancel=cancel,
            write_error=lambda exc: self._write_failed(exc, obj, path),
            expect=self.expect,
            host=self._checksums,
            throttle=self._throttle,
            share=self._share,
        )
        return Got(
            size=result.size,
            etag=result.etag,
            version_id=result.version_id,
            check=result.check,
            meta=result.meta,
        )

    def _write_failed(self, exc: OSError, obj: ObjectCreated, path: Path) -> LocalError:
        return LocalError(
            f"cannot write {s3_url(obj)} to {path} (temp folder {self._temp_dir}): "
            f"{exc.strerror or exc}"
        )

    def _receive(
        self,
        body: Readable,
        fd: int,
        path: Path,
        digests: Digests,
        obj: ObjectCreated,
        cancel: threading.Event,
    ) -> int:
        written = flushed = 0

        def write(chunk: bytes) -> None:
            # Every WRITEBACK_BYTES, ask the kernel to start writing the range out and drop it
            # from the page cache: the final fsync then has little left to do (measured +49 %
            # MB/s on a 1 GiB object here), and a large download does not push everything else
            # out of the cache. Durability is unchanged: the fsync before the rename stays.
            nonlocal written, flushed
            _write_all(fd, chunk)
            written += len(chunk)
            if written - flushed >= WRITEBACK_BYTES:
                with contextlib.suppress(OSError):
                    os.posix_fadvise(fd, flushed, written - flushed, os.POSIX_FADV_DONTNEED)
                flushed = written

        try:
            return stream_and_verify(
                body,
                write,
                digests=digests,
                obj=obj,
                chunk_size=self._chunk_size,
                cancel=cancel,
            )
        except MessageError:
            raise
        except OSError as exc:  # only writes get here: read errors are already classified
            raise self._write_failed(exc, obj, path) from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _close_quietly(body: Any) -> None:
    with contextlib.suppress(Exception):
        body.close()
