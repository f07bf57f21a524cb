"""Download one announced object into ``download_folder``: atomically, verified, durably.

``Fetcher`` is the front door the worker calls (``fetch``, ``remove``); the rooms behind it:

- folder.py: the folder's start-up (temp folder, lock, sweep) and the checks of the
  directories on the way to a final path (symlinks, conflicts);
- download.py: the GET (or ranged GETs, ranged.py) into a temp file, verified (verify.py);
- staging.py: the temp file itself, its removal on every failure, its label, fsync and rename;
- provenance.py: the record each file carries and the pure rules that read it (stale,
  duplicate, removable);
- pathlocks.py: one lock per final path; removal.py: ``on_remove: delete``;
- outcomes.py: what a fetch or a removal reports.

The order of one fetch: the bytes go to a temp file in ``root/.s3sqsd-tmp`` whose removal is
registered before the first byte is written; the file is checked against what S3 announced,
labelled with its provenance (xattr ``user.s3sqsd``), fsynced, renamed over the final path,
and the parent directory is fsynced (one fsync may cover several renames into the same
directory: dirsync.py). Only then does ``fetch`` report ``DOWNLOADED`` and may the caller delete
the message.

Provenance orders overwrites (``provenance.skip_verdict``): an old event is ``STALE``, the same
event or object again is ``DUPLICATE``; neither replaces the file. The check runs before the
GET (no GET for an old event) and again under the per-path lock right before the rename (two
workers racing on one key) when something may have changed since: a file was there at the
first look, or another thread renamed into or removed the path meanwhile. On a filesystem
without user xattrs there is no provenance and every event downloads and replaces
(``Fetcher.xattrs_supported`` is False).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from s3sqsd.checksums import HostChecksums
from s3sqsd.dirsync import DirectorySync
from s3sqsd.download import Downloader
from s3sqsd.errors import DownloadCancelledError
from s3sqsd.events import ObjectCreated, OtherRecord, is_removal
from s3sqsd.folder import DownloadFolder, local_error
from s3sqsd.outcomes import FetchOutcome, FetchResult, RemoveOutcome
from s3sqsd.pathlocks import PathEntry, PathLocks
from s3sqsd.paths import local_path
from s3sqsd.provenance import (
    XATTR_NAME,
    Provenance,
    ProvenanceLabels,
    read_provenance,
    removal_verdict,
    skip_verdict,
)
from s3sqsd.removal import Remover
from s3sqsd.staging import Staging
from s3sqsd.verify import s3_url

# The names other modules, the tests and the bench import from here since the fetcher was one
# module; each now lives in the module named above.
__all__ = [
    "XATTR_NAME",
    "FetchOutcome",
    "FetchResult",
    "Fetcher",
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
    ) -> None:
        """``parts``: the executor ranged GETs run on (its owner shuts it down); without one
        every object is one GET. Objects whose event size is ``ranged_threshold`` or more
        are fetched as ranges of ``part_size``, at most ``parts_window`` of one object ahead of
        the in-order verification. ``directory_sync`` makes each rename durable (dirsync.py:
        one directory fsync covers the renames that completed before it began).
        ``checksums``: the algorithms this host verifies (default: what is installed);
        ``integrity_strict``: an object that only its length can verify is refused
        (UnverifiableError) instead of accepted with a warning (config ``integrity``)."""
        self._root = Path(root)
        self._folder = DownloadFolder(root=self._root, directory_mode=directory_mode)
        self._download = Downloader(
            s3=s3,
            temp_dir=self._folder.temp_dir,
            chunk_size=chunk_size,
            parts=parts,
            ranged_threshold=ranged_threshold,
            part_size=part_size,
            parts_window=parts_window,
            checksums=checksums if checksums is not None else HostChecksums.detect(),
            integrity_strict=integrity_strict,
        )
        self._labels = ProvenanceLabels()
        self._staging = Staging(
            root=self._root,
            temp_dir=self._folder.temp_dir,
            file_mode=file_mode,
            labels=self._labels,
        )
        self._directory_sync = directory_sync or DirectorySync()
        self._paths = PathLocks()
        self._remover = Remover(root=self._root, paths=self._paths)

    @property
    def root(self) -> Path:
        return self._root

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
        (folder.py), and probe how a temp file comes out (mode, xattrs: staging.py).

        Returns the number of leftovers removed; raises LocalError with one sentence when the
        folder cannot be used.
        """
        swept = self._folder.prepare()
        self._staging.probe()
        return swept

    def fetch(
        self, obj: ObjectCreated, *, cancel: threading.Event, key_path: str | None = None
    ) -> FetchResult:
        """Download ``obj`` to its local path; see the module docstring for the guarantees.

        The path is ``root/<key_path>``; ``key_path`` defaults to the key (a route with
        ``strip_prefix`` passes the stripped key; "" is the route folder's own marker).
        """
        started = time.monotonic()
        path = local_path(self._root, obj.key, bucket=obj.bucket, key_path=key_path)
        if path is None:
            return FetchResult(
                FetchOutcome.FOLDER_MARKER, None, 0, obj.etag, obj.version_id, _ms(started)
            )
        with self._paths.claim(path) as entry:
            seen = entry.changes
            self._folder.check_parents(path, obj, create=False)
            exists = self._folder.check_not_directory(path, obj)
            skip = self._skip(path, obj) if exists else None
            if skip is not None:
                return self._skipped(skip, path, obj, started)
            if cancel.is_set():
                raise DownloadCancelledError(f"download of {s3_url(obj)} cancelled")
            with self._staging.open(obj) as temp:
                got = self._download.download(obj, fd=temp.fd, path=path, cancel=cancel)
                temp.seal(obj, etag=got.etag, version_id=got.version_id, size=got.size)
                self._folder.check_parents(path, obj, create=True)
                with entry.lock:
                    # Look again only when something can have changed: a file was there at the
                    # first look, or another thread changed the path since. Files with
                    # provenance come only from this process (the folder is locked to it), so a
                    # path found empty and untouched since holds nothing to judge.
                    if exists or entry.changes != seen:
                        skip = self._skip(path, obj)
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
        )

    def remove(self, record: OtherRecord, *, key_path: str | None = None) -> RemoveOutcome:
        """Remove the local file of a removal event, only when it is provably that object's
        (``on_remove: delete``; the rules: removal.py)."""
        return self._remover.remove(record, key_path=key_path)

    def _skip(self, path: Path, obj: ObjectCreated) -> tuple[FetchOutcome, Provenance] | None:
        """STALE/DUPLICATE when the file on disk is as new as ``obj``; None to download."""
        have = self._labels.read(path)
        if have is None:
            return None
        verdict = skip_verdict(obj, have=have)
        return None if verdict is None else (verdict, have)

    def _skipped(
        self, skip: tuple[FetchOutcome, Provenance], path: Path, obj: ObjectCreated, started: float
    ) -> FetchResult:
        """The result for a file already in place, once its directory entry is durable too:
        the earlier attempt may have renamed it and then failed to sync the directory, and
        this answer lets the message be deleted."""
        self._sync_directory(path, obj)
        outcome, have = skip
        return FetchResult(outcome, path, have.size, have.etag, have.version_id, _ms(started))

    def _sync_directory(self, path: Path, obj: ObjectCreated) -> None:
        try:
            self._directory_sync.renamed(str(path.parent))
        except OSError as exc:
            raise local_error(exc, path.parent, obj, "cannot sync directory") from exc


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
