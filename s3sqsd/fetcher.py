"""Download one announced object into ``download_folder``: atomically, verified, durably.

``Fetcher`` is the front door the worker calls (``fetch``, ``remove``); the rooms behind it:

- folder.py: the folder's start-up (temp folder, lock, sweep) and the checks of the
  directories on the way to a final path (symlinks, conflicts);
- download.py: the GET (or ranged GETs, ranged.py) into a temp file, verified (verify.py);
- staging.py: the temp file itself, its removal on every failure, its label, fsync and rename;
- provenance.py: the record each file carries and the pure rules that read it (stale,
  duplicate, removable);
- pathlocks.py: one lock per final path; removal.py: ``on_remove: delete``;
- sources.py: ``after_download: delete``, the source's DeleteObject (``delete_source``);
- outcomes.py: what a fetch or a removal reports.

The order of one fetch: the bytes go to a temp file in ``root/.s3sqsd-tmp`` whose removal is
registered before the first byte is written; the file is checked against what S3 announced,
labelled with its provenance (xattr ``user.s3sqsd``), fsynced, renamed over the final path,
and the parent directory is fsynced (one fsync may cover several renames into the same
directory: dirsync.py). Only then does ``fetch`` report ``DOWNLOADED`` and may the caller delete
the message.

Provenance orders overwrites (``provenance.skip_verdict``): an old event is ``STALE``, the same
event or object again is ``DUPLICATE``; neither replaces the file. The check runs before the
GET (no GET for an old event) and again under the per-path locks right before the rename,
whenever a file is there then: another thread, or another process (``s3sqsd sync``: the locks
are across processes too, pathlocks.py), may have changed the path meanwhile. That second look
judges the downloaded object itself (``provenance.newer_verdict``: the sequencer, else
LastModified, else a HEAD asking S3 which is current). On a filesystem
without user xattrs there is no provenance and every event downloads and replaces
(``Fetcher.xattrs_supported`` is False).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from s3sqsd.checksums import HostChecksums
from s3sqsd.config import FILE_MTIME_CHOICES, FILE_MTIME_LAST_MODIFIED
from s3sqsd.dirsync import DirectorySync
from s3sqsd.download import Downloader
from s3sqsd.errors import DownloadCancelledError
from s3sqsd.events import ObjectCreated, OtherRecord, is_removal
from s3sqsd.folder import DownloadFolder, FolderRole, local_error, unwritable
from s3sqsd.limits import Limits
from s3sqsd.outcomes import FetchOutcome, FetchResult, RemoveOutcome
from s3sqsd.pathlocks import PathEntry, PathLocks
from s3sqsd.paths import local_path
from s3sqsd.provenance import (
    XATTR_NAME,
    Origin,
    Provenance,
    ProvenanceLabels,
    Verdict,
    current_verdict,
    newer_verdict,
    read_provenance,
    removal_verdict,
    same_event,
    skip_verdict,
)
from s3sqsd.removal import Remover
from s3sqsd.sources import Answer, Target, delete_source
from s3sqsd.staging import Staging
from s3sqsd.verify import REMOTE_ERRORS, remote_error, s3_url

logger = logging.getLogger(__name__)


# The names other modules, the tests and the bench import from here since the fetcher was one
# module; each now lives in the module named above.
__all__ = [
    "XATTR_NAME",
    "FetchOutcome",
    "FetchResult",
    "Fetcher",
    "FolderRole",
    "Origin",
    "Provenance",
    "RemoveOutcome",
    "is_removal",
    "local_error",
    "read_provenance",
    "removal_verdict",
]


class Fetcher:
    """Downloads objects into ``root``; ``fetch`` is safe to call from many threads at once."""

    def __init__(
        self,
        *,
        s3: Any,
        root: Path,
        file_mode: int = 0o640,
        directory_mode: int = 0o750,
        chunk_size: int = 1 << 20,
        parts: Executor | None = None,
        ranged_threshold: int = 64 << 20,
        part_size: int = 8 << 20,
        parts_window: int = 16,
        directory_sync: DirectorySync | None = None,
        checksums: HostChecksums | None = None,
        integrity_strict: bool = False,
        file_mtime: str = FILE_MTIME_LAST_MODIFIED,
        role: FolderRole = FolderRole.DAEMON,
        limits: Limits | None = None,
    ) -> None:
        """``parts``: the executor ranged GETs run on (its owner shuts it down); without one
        every object is one GET. Objects whose event size is ``ranged_threshold`` or more
        are fetched as ranges of ``part_size``, at most ``parts_window`` of one object ahead of
        the in-order verification. ``directory_sync`` makes each rename durable (dirsync.py:
        one directory fsync covers the renames that completed before it began).
        ``checksums``: the algorithms this host verifies (default: what is installed);
        ``integrity_strict``: an object that only its length can verify is refused
        (UnverifiableError) instead of accepted with a warning (config ``integrity``).
        ``file_mtime``: ``last_modified`` (each file's mtime is its object's LastModified)
        or ``download_time`` (config ``file_mtime``).

        ``role``: ``FolderRole.DAEMON`` (the default) takes the folder for this process and
        sweeps every leftover at ``prepare``; ``FolderRole.SYNC`` is for ``s3sqsd sync``,
        which runs beside a daemon on the same folder: temp files in a sub-folder of its own,
        no folder lock, and its fetches are listing candidates (``Origin.LISTING``) unless a
        call says otherwise. Both take the per-path locks across processes (folder.py,
        pathlocks.py). A sync calls ``close`` at its end.

        ``limits``: the process's bandwidth limit and free-space floor (limits.py), shared
        by every fetcher; none by default."""
        if file_mtime not in FILE_MTIME_CHOICES:
            raise ValueError(f"file_mtime must be one of {', '.join(FILE_MTIME_CHOICES)}")
        self._s3 = s3
        self._root = Path(root)
        self._folder = DownloadFolder(root=self._root, directory_mode=directory_mode, role=role)
        self._origin = Origin.LISTING if role is FolderRole.SYNC else Origin.EVENT
        limits = limits or Limits.none()
        self._floor = limits.floor
        self._download = Downloader(
            s3=s3,
            temp_dir=self._folder.work_dir,
            chunk_size=chunk_size,
            parts=parts,
            ranged_threshold=ranged_threshold,
            part_size=part_size,
            parts_window=parts_window,
            checksums=checksums if checksums is not None else HostChecksums.detect(),
            integrity_strict=integrity_strict,
            throttle=limits.throttle,
            share=limits.parts,
        )
        self._labels = ProvenanceLabels()
        self._staging = Staging(
            root=self._root,
            temp_dir=self._folder.work_dir,
            file_mode=file_mode,
            labels=self._labels,
            mtime_from_s3=file_mtime == FILE_MTIME_LAST_MODIFIED,
        )
        self._directory_sync = directory_sync or DirectorySync()
        self._paths = PathLocks()
        self._remover = Remover(root=self._root, paths=self._paths)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def role(self) -> FolderRole:
        return self._folder.role

    @property
    def checksums(self) -> HostChecksums:
        return self._download.checksums

    @property
    def xattrs_supported(self) -> bool | None:
        """Whether files get provenance xattrs; None until ``prepare`` or a download tells."""
        return self._labels.supported

    @property
    def _locks(self) -> dict[Path, PathEntry]:
        """The paths claimed right now (a copy): none once every fetch and removal is over."""
        return self._paths.claimed()

    def prepare(self) -> int:
        """Create root and temp folder, sweep leftover temp files, check the folder is usable
        (folder.py: what each role takes and sweeps), open the per-path locks shared with
        other processes (pathlocks.py), and probe how a temp file comes out (mode, xattrs:
        staging.py).

        Returns the number of leftovers removed; raises LocalError with one sentence when the
        folder cannot be used.
        """
        swept = self._folder.prepare()
        self._staging.probe()
        try:
            self._paths.share(root=self._root, lock_file=self._folder.lock_file)
        except OSError as exc:
            raise unwritable(self._root, exc) from exc
        return swept

    def close(self) -> None:
        """The end of a sync (``FolderRole.SYNC``): its temp sub-folder is removed. Call it
        once every fetch is over; nothing for the daemon's role."""
        self._folder.close()

    def fetch(
        self,
        obj: ObjectCreated,
        *,
        cancel: threading.Event,
        key_path: str | None = None,
        origin: Origin | None = None,
    ) -> FetchResult:
        """Download ``obj`` to its local path; see the module docstring for the guarantees.

        The path is ``root/<key_path>``; ``key_path`` defaults to the key (a route with
        ``strip_prefix`` passes the stripped key; "" is the route folder's own marker).
        ``origin``: an event's object or a listing's (``Origin``; default: the role's); a
        listing's never replaces a file s3sqsd did not write (CONFLICT).
        """
        origin = self._origin if origin is None else origin
        started = time.monotonic()
        path = local_path(self._root, obj.key, bucket=obj.bucket, key_path=key_path)
        if path is None:
            return FetchResult(
                FetchOutcome.FOLDER_MARKER, None, 0, obj.etag, obj.version_id, _ms(started)
            )
        with self._paths.claim(path) as entry:
            self._folder.check_parents(path, obj, create=False)
            exists = self._folder.check_not_directory(path, obj)
            skip = self._skip(path, obj, origin) if exists else None
            if skip is not None:
                return self._skipped(skip, path, obj, started)
            if cancel.is_set():
                raise DownloadCancelledError(f"download of {s3_url(obj)} cancelled")
            self._floor.check(self._root, obj)  # min_free_bytes: LowSpaceError
            with self._staging.open(obj) as temp:
                got = self._download.download(obj, fd=temp.fd, path=path, cancel=cancel)
                candidate = temp.seal(
                    obj, etag=got.etag, version_id=got.version_id, size=got.size, meta=got.meta
                )
                self._folder.check_parents(path, obj, create=True)
                with self._paths.hold(path, entry):
                    # Look again whenever a file is there: another thread, or another
                    # process (``s3sqsd sync``, under the lock across processes), may have
                    # renamed into the path since the first look. A path still empty holds
                    # nothing to judge.
                    if self._folder.check_not_directory(path, obj):
                        skip = self._judge(path, obj, candidate, origin)
                        if skip is not None:
                            return self._skipped(skip, path, obj, started)
                    temp.move_to(path, obj)
                    entry.changes += 1
                    self._sync_directory(path, obj)  # the rename is durable only with it
        return FetchResult(
            FetchOutcome.DOWNLOADED,
            path,
            got.size,
            got.etag,
            got.version_id,
            _ms(started),
            verified_by=got.check.verified_by,
            unverifiable=got.check.unverifiable,
            meta=got.meta,
        )

    def remove(self, record: OtherRecord, *, key_path: str | None = None) -> RemoveOutcome:
        """Remove the local file of a removal event, only when it is provably that object's
        (``on_remove: delete``; the rules: removal.py)."""
        return self._remover.remove(record, key_path=key_path)

    def delete_source(self, target: Target) -> Answer:
        """``after_download: delete``: delete ``target`` in S3 with the client the GET used
        (sources.py: exactly that version, or conditionally on its ETag)."""
        return delete_source(self._s3, target)

    def _skip(
        self, path: Path, obj: ObjectCreated, origin: Origin
    ) -> tuple[FetchOutcome, Provenance | None] | None:
        """The first look, before the GET: STALE/DUPLICATE when the file on disk is as new
        as ``obj`` by the event's own facts; CONFLICT for a listing's object at a file
        s3sqsd did not write (or another object's); None to download."""
        have = self._labels.read(path)
        if origin is Origin.LISTING and (
            have is None or (have.bucket, have.key) != (obj.bucket, obj.key)
        ):
            return FetchOutcome.CONFLICT, have
        if have is None:
            return None
        verdict = skip_verdict(obj, have=have)
        return None if verdict is None else (verdict, have)

    def _judge(
        self, path: Path, obj: ObjectCreated, candidate: Provenance, origin: Origin
    ) -> tuple[FetchOutcome, Provenance | None] | None:
        """The look under the per-path locks, right before the rename: may the downloaded
        ``candidate`` replace the file at ``path`` (``newer_verdict``)? None to rename."""
        have = self._labels.read(path)
        verdict = newer_verdict(obj, candidate, have=have, origin=origin)
        if verdict is Verdict.ASK_S3:
            verdict = self._ask_s3(obj, candidate)
        if verdict is Verdict.REPLACE:
            return None
        return _OUTCOMES[verdict], have

    def _ask_s3(self, obj: ObjectCreated, candidate: Provenance) -> Verdict:
        """Which of two objects the records cannot order is current: a HEAD of the key (no
        version), only in that rare case (an equal LastModified second, or a record written
        before s3sqsd kept LastModified), under the path's locks so nothing changes the file
        meanwhile. A key that is gone (404) has no current object: the file is kept."""
        try:
            head = self._s3.head_object(Bucket=obj.bucket, Key=obj.key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 404:
                raise remote_error(exc, obj) from exc
            head = {}
        except REMOTE_ERRORS as exc:
            raise remote_error(exc, obj) from exc
        verdict = current_verdict(
            candidate,
            current_etag=head.get("ETag"),
            current_version_id=head.get("VersionId"),
        )
        logger.info(
            "%s: the file and the download cannot be ordered by their records; S3 says the "
            "download is %s",
            s3_url(obj),
            "current" if verdict is Verdict.REPLACE else "not current",
            extra={
                "event": "object.order_asked",
                "bucket": obj.bucket,
                "key": obj.key,
                "etag": candidate.etag,
                "version_id": candidate.version_id,
                "current": verdict is Verdict.REPLACE,
            },
        )
        return verdict

    def _skipped(
        self,
        skip: tuple[FetchOutcome, Provenance | None],
        path: Path,
        obj: ObjectCreated,
        started: float,
    ) -> FetchResult:
        """The result for a file already in place, once its directory entry is durable too:
        the earlier attempt may have renamed it and then failed to sync the directory, and
        this answer lets the message be deleted."""
        self._sync_directory(path, obj)
        outcome, have = skip
        if have is None:  # CONFLICT with a file that has no record
            return FetchResult(outcome, path, 0, None, None, _ms(started))
        return FetchResult(
            outcome,
            path,
            have.size,
            have.etag,
            have.version_id,
            _ms(started),
            meta=have.meta,
            same_event=outcome is FetchOutcome.DUPLICATE and same_event(obj, have=have),
        )

    def _sync_directory(self, path: Path, obj: ObjectCreated) -> None:
        try:
            self._directory_sync.renamed(str(path.parent))
        except OSError as exc:
            raise local_error(exc, path.parent, obj, "cannot sync directory") from exc


_OUTCOMES = {
    Verdict.STALE: FetchOutcome.STALE,
    Verdict.DUPLICATE: FetchOutcome.DUPLICATE,
    Verdict.CONFLICT: FetchOutcome.CONFLICT,
}


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
