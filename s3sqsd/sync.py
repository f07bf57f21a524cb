"""The sync engine: make the download folders converge on what the bucket holds, once.

``Sync.run`` lists every target (listing.py) on the calling thread, decides each listed object
against its local path (converge.py: download, skip, replace, conflict), and hands the
downloads to ``workers`` threads through a queue of bounded size, so that memory stays bounded
whatever the bucket's size: at most a listing page, the queue and the downloads in hand. Each
download is the daemon's own (delivery.py: the folder's ``Fetcher`` with its checks, temp +
fsync + rename, routes, ``file_mode``, then ``on_download`` and the daemon's log lines).

A failure (an unsafe key, a GET refused, an object deleted since it was listed, a failed
``on_download``, a listing that cannot be read) is one ``sync.failed`` log line naming
``s3://bucket/key`` and the reason; the rest goes on and nothing is dead-lettered or retried
(the next run is the retry). A second run downloads only what is still missing: resuming after
an interruption needs no state of its own, it falls out of SKIP.

``stop`` (from any thread) ends the run cleanly: no new listing page, no new download, and the
downloads in hand are cancelled (their temp files removed; nothing partial ever reaches a final
path). ``--delete`` then removes nothing: only a run whose listing of a target was read to its
end removes the provenance-proven orphans under it (converge.removable). ``--delete`` keeps
the (bucket, key) of every listed object in memory, about 100 bytes each, to know what S3 no
longer holds.

No terminal, signal or exit-status concern lives here: cli.py turns SIGINT into ``stop``,
progress.py shows ``progress()``, and the daemon's reconcile pass can run the same engine.
"""

from __future__ import annotations

import datetime
import logging
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from s3sqsd.checksums import HostChecksums
from s3sqsd.config import Config
from s3sqsd.converge import Action, Decision, LocalKind, LocalState, decide, removable
from s3sqsd.delivery import Fetches, deliver
from s3sqsd.dirsync import fsync_directory
from s3sqsd.errors import DownloadCancelledError, ListingError, MessageError
from s3sqsd.events import ObjectCreated, object_url
from s3sqsd.fetcher import Fetcher, FolderRole
from s3sqsd.fetchers import fetcher_for
from s3sqsd.limits import Limits
from s3sqsd.listing import PAGE_SIZE, Listed, Target, list_pages
from s3sqsd.outcomes import FetchOutcome
from s3sqsd.paths import TEMP_DIR_NAME
from s3sqsd.provenance import Origin, Provenance, read_provenance
from s3sqsd.routing import Placement, download_folders, route

logger = logging.getLogger(__name__)

# The event name of the ObjectCreated a listed object becomes; only logs and hooks see it.
LISTED_EVENT_NAME = "ObjectCreated:Listed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Tally:
    """A run's counts, as ``progress()`` reads them during the run and ``run`` returns them.

    ``listed``: objects the listings gave that a route takes (``unrouted``: those none takes);
    ``done``: of those, the ones decided and, for a download, finished (with their bytes in
    ``done_bytes``). ``listing_finished``: every target listed, so ``listed`` is the total.
    In a dry run the counts say what would have happened.
    """

    listed: int = 0
    listed_bytes: int = 0
    unrouted: int = 0
    done: int = 0
    done_bytes: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    skipped: int = 0
    replaced: int = 0
    conflicts: int = 0
    failed: int = 0
    deleted: int = 0
    listing_finished: bool = False
    interrupted: bool = False
    dry_run: bool = False

    def fields(self) -> dict[str, object]:
        """The counts as log fields."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """One action of a dry run (or of a run, for a caller that wants to see them)."""

    action: str  # "download", "replace", "conflict", "delete"
    url: str  # s3://bucket/key, display-safe
    path: Path
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Task:
    listed: Listed
    placement: Placement[Path]
    action: Action


class _Counts:
    """The mutable side of ``Tally``, locked: the lister and every download thread add."""

    def __init__(self, *, dry_run: bool) -> None:
        self._lock = threading.Lock()
        self._tally = Tally(dry_run=dry_run)
        self._values: dict[str, int] = {}

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, amount in amounts.items():
                self._values[name] = self._values.get(name, 0) + amount

    def mark(self, **flags: bool) -> None:
        with self._lock:
            for name, value in flags.items():
                self._values[name] = int(value)

    def snapshot(self) -> Tally:
        with self._lock:
            values = dict(self._values)
        base = self._tally
        flags = {"listing_finished", "interrupted"}
        kwargs: dict[str, Any] = {
            name: (bool(value) if name in flags else value) for name, value in values.items()
        }
        return Tally(**{**base.fields(), **kwargs})


def sync_fetchers(
    config: Config,
    *,
    s3: Any,
    parts: Executor,
    checksums: HostChecksums | None = None,
    prepare: bool = True,
    limits: Limits | None = None,
) -> dict[Path, Fetcher]:
    """The fetchers of a sync, one per download folder (routing.download_folders), built as
    the daemon builds its own (fetchers.py) in the sync role, and prepared unless ``prepare``
    is False (a dry run creates nothing). The sync role works beside a running daemon: its temp
    files live in a sub-folder of its own, and the per-path locks and compare-before-rename
    (fetcher.py) order its renames against the daemon's. Raises LocalError when a folder cannot
    be used. ``close`` each fetcher when the sync is over. ``limits`` (default: the config's)
    is shared by them all: one bandwidth limit for the whole sync.
    """
    host = checksums if checksums is not None else HostChecksums.detect()
    shared = limits if limits is not None else Limits.from_config(config)
    made: dict[Path, Fetcher] = {}
    for folder in download_folders(config):
        fetcher = fetcher_for(
            config,
            folder,
            s3=s3,
            parts=parts,
            checksums=host,
            limits=shared,
            role=FolderRole.SYNC,
        )
        if prepare:
            fetcher.prepare()
        made[folder] = fetcher
    return made


class Sync:
    """One sync of ``config``'s folders with ``targets``; ``run`` once, ``stop`` from any thread."""

    def __init__(
        self,
        *,
        config: Config,
        s3: Any,
        fetchers: Mapping[Path, Fetches],
        targets: tuple[Target, ...],
        workers: int,
        dry_run: bool = False,
        delete: bool = False,
        on_plan: Callable[[Planned], None] | None = None,
        page_size: int = PAGE_SIZE,
        leave_modified_since: datetime.datetime | None = None,
    ) -> None:
        """``fetchers``: one per download folder (``sync_fetchers``); ``on_plan`` sees every
        download, replace, conflict and delete as it is decided (the dry run prints them).
        ``leave_modified_since``: objects modified at or after it are left alone (the daemon's
        reconcile pass leaves the newest objects to their events, still on their way)."""
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self._config = config
        self._s3 = s3
        self._fetchers = fetchers
        self._targets = targets
        self._workers = workers
        self._dry_run = dry_run
        self._delete = delete
        self._on_plan = on_plan
        self._page_size = page_size
        self._leave_since = leave_modified_since
        self._stop = threading.Event()
        self._cancel = threading.Event()  # handed to every fetch: set, it cuts them short
        self._counts = _Counts(dry_run=dry_run)
        self._started = False

    def stop(self) -> None:
        """End the run soon: no new page or download; downloads in hand are cancelled."""
        self._stop.set()
        self._cancel.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def progress(self) -> Tally:
        """The counts so far (any thread, any time)."""
        return self._counts.snapshot()

    def run(self) -> Tally:
        """List, decide, download; then, with ``delete``, remove the proven orphans."""
        if self._started:
            raise RuntimeError("a Sync runs once")
        self._started = True
        logger.info(
            "sync starting: %s%s",
            ", ".join(target.url for target in self._targets),
            " (dry run: nothing is changed)" if self._dry_run else "",
            extra={
                "event": "sync.starting",
                "targets": [target.url for target in self._targets],
                "dry_run": self._dry_run,
                "delete": self._delete,
            },
        )
        work: queue.Queue[_Task | None] = queue.Queue(maxsize=2 * self._workers)
        threads = [
            threading.Thread(target=self._download_loop, args=(work,), name=f"s3sqsd-sync-{n}")
            for n in range(0 if self._dry_run else self._workers)
        ]
        for thread in threads:
            thread.start()
        listed: set[tuple[str, str]] | None = set() if self._delete else None
        complete: list[Target] = []
        try:
            for target in self._targets:
                if self._stop.is_set():
                    break
                if self._list(target, work, listed):
                    complete.append(target)
        finally:
            for _ in threads:
                work.put(None)
            for thread in threads:
                thread.join()
        stopped = self._stop.is_set()
        self._counts.mark(
            listing_finished=len(complete) == len(self._targets) and not stopped,
            interrupted=stopped,
        )
        if listed is not None and not stopped:
            self._delete_orphans(tuple(complete), listed)
        tally = self.progress()
        logger.info(
            "sync %s: %d listed, %d downloaded, %d skipped, %d replaced, %d conflicts, "
            "%d failed, %d deleted%s",
            "interrupted" if tally.interrupted else "finished",
            tally.listed,
            tally.downloaded,
            tally.skipped,
            tally.replaced,
            tally.conflicts,
            tally.failed,
            tally.deleted,
            " (dry run: nothing was changed)" if self._dry_run else "",
            extra={"event": "sync.summary", **tally.fields()},
        )
        return tally

    # ---- listing and deciding (the calling thread) ---------------------------------------

    def _list(
        self, target: Target, work: queue.Queue[_Task | None], listed: set[tuple[str, str]] | None
    ) -> bool:
        """Queue the work of every object of ``target``; True when its listing was read to its
        end (not cut short by a failure or by ``stop``)."""
        try:
            for page in list_pages(self._s3, target, page_size=self._page_size):
                for obj in page:
                    if listed is not None:
                        listed.add((obj.bucket, obj.key))
                    self._consider(obj, work)
                if self._stop.is_set():
                    return False
        except ListingError as exc:
            self._counts.add(failed=1)
            logger.error(
                "%s",
                exc,
                extra={
                    "event": "sync.failed",
                    "bucket": target.bucket,
                    "prefix": target.prefix,
                    "error": str(exc),
                },
            )
            return False
        return True

    def _consider(self, obj: Listed, work: queue.Queue[_Task | None]) -> None:
        placement = route(obj.bucket, obj.key, config=self._config)
        if placement is None:
            self._counts.add(unrouted=1)
            logger.debug(
                "%s: no route takes it",
                object_url(obj.bucket, obj.key),
                extra={"event": "sync.unrouted", "bucket": obj.bucket, "key": obj.key},
            )
            return
        self._counts.add(listed=1, listed_bytes=obj.size)
        if (
            self._leave_since is not None
            and obj.last_modified is not None
            and obj.last_modified >= self._leave_since
        ):
            self._counts.add(done=1, skipped=1)
            return
        try:
            path = placement.local_path(bucket=obj.bucket, key=obj.key)
        except MessageError as exc:  # an unsafe key: refused, as the daemon refuses it
            self._failed(obj, exc)
            return
        if path is None:  # a folder marker: nothing to store
            self._counts.add(done=1, skipped=1)
            return
        decision = decide(obj, local_state(path))
        if decision.action is Action.SKIP:
            self._counts.add(done=1, done_bytes=obj.size, skipped=1)
            return
        self._plan(decision, obj, path)
        if decision.action is Action.CONFLICT:
            self._counts.add(done=1, done_bytes=obj.size, conflicts=1)
            logger.warning(
                "%s: %s is left as it is: %s",
                object_url(obj.bucket, obj.key),
                path,
                decision.reason,
                extra={
                    "event": "sync.conflict",
                    "bucket": obj.bucket,
                    "key": obj.key,
                    "path": str(path),
                    "reason": decision.reason,
                },
            )
            return
        if self._dry_run:
            replaced = int(decision.action is Action.REPLACE)
            self._counts.add(
                done=1,
                done_bytes=obj.size,
                downloaded=1 - replaced,
                replaced=replaced,
                downloaded_bytes=obj.size,
            )
            return
        self._put(work, _Task(listed=obj, placement=placement, action=decision.action))

    def _put(self, work: queue.Queue[_Task | None], task: _Task) -> None:
        """Block while the queue is full (the downloads set the pace), unless stopping."""
        while not self._stop.is_set():
            try:
                work.put(task, timeout=0.2)
            except queue.Full:
                continue
            return

    def _plan(self, decision: Decision, obj: Listed, path: Path) -> None:
        if self._on_plan is not None:
            self._on_plan(
                Planned(
                    action=decision.action.value,
                    url=object_url(obj.bucket, obj.key),
                    path=path,
                    reason=decision.reason,
                )
            )

    # ---- downloading (the download threads) ----------------------------------------------

    def _download_loop(self, work: queue.Queue[_Task | None]) -> None:
        while (task := work.get()) is not None:
            if self._stop.is_set():
                continue  # drain: the sentinels come after the queued tasks
            self._download(task)

    def _download(self, task: _Task) -> None:
        obj = task.listed
        placement = task.placement
        try:
            result = deliver(
                self._fetchers[placement.folder],
                created_from(obj),
                key_path=placement.key_path,
                on_download=placement.on_download,
                cancel=self._cancel,
                logger=logger,
                command_on_duplicate=False,
                origin=Origin.LISTING,
            )
        except DownloadCancelledError as exc:
            if not self._stop.is_set():
                self._failed(obj, exc)
            return
        except MessageError as exc:
            self._failed(obj, exc)
            return
        except Exception as exc:  # a bug must not end the thread, nor hide the object
            logger.exception(
                "unexpected error while syncing %s",
                object_url(obj.bucket, obj.key),
                extra={"event": "sync.unexpected_error", "bucket": obj.bucket, "key": obj.key},
            )
            self._failed(obj, exc)
            return
        if result.outcome is FetchOutcome.DOWNLOADED:
            replaced = int(task.action is Action.REPLACE)
            self._counts.add(
                done=1,
                done_bytes=obj.size,
                downloaded=1 - replaced,
                replaced=replaced,
                downloaded_bytes=result.size,
            )
        elif result.outcome is FetchOutcome.CONFLICT:  # a file not ours appeared meanwhile
            self._counts.add(done=1, done_bytes=obj.size, conflicts=1)
        else:  # in place already (it changed since it was looked at), or a folder marker
            self._counts.add(done=1, done_bytes=obj.size, skipped=1)

    def _failed(self, obj: Listed, exc: BaseException) -> None:
        self._counts.add(done=1, done_bytes=obj.size, failed=1)
        log_failure(obj, exc)

    # ---- --delete (the calling thread, after the downloads) ------------------------------

    def _delete_orphans(self, complete: tuple[Target, ...], listed: set[tuple[str, str]]) -> None:
        for path, have in orphans(self._config, complete=complete, listed=listed):
            if self._on_plan is not None:
                url = object_url(have.bucket, have.key)
                reason = "its object is no longer in S3"
                self._on_plan(Planned(action="delete", url=url, path=path, reason=reason))
            removed = True if self._dry_run else remove_orphan(path, have)
            if removed:
                self._counts.add(deleted=1)
            elif removed is None:
                self._counts.add(failed=1)


def log_failure(obj: Listed, exc: BaseException) -> None:
    """The one ``sync.failed`` line of an object: its URL and the reason; the rest goes on."""
    logger.error(
        "sync of %s failed: %s",
        object_url(obj.bucket, obj.key),
        exc,
        extra={
            "event": "sync.failed",
            "bucket": obj.bucket,
            "key": obj.key,
            "reason": getattr(exc, "reason", type(exc).__name__),
            "error": str(exc),
        },
    )


def orphans(
    config: Config, *, complete: tuple[Target, ...], listed: set[tuple[str, str]]
) -> Iterator[tuple[Path, Provenance]]:
    """The files ``--delete`` may remove (converge.removable), with their provenance."""
    if not complete:
        return
    for folder in download_folders(config):
        for path, have in _files_with_provenance(folder):
            home = _home(config, have)
            if removable(have, path=path, home=home, complete=complete, listed=listed):
                yield path, have


def remove_orphan(path: Path, have: Provenance) -> bool | None:
    """Unlink ``path`` if it still holds ``have`` (looked at again right before), and make
    the removal durable: True when removed, False when it changed meanwhile, None when it
    cannot be removed (logged)."""
    if read_provenance(path) != have:
        return False
    try:
        os.unlink(path)
        fsync_directory(str(path.parent))
    except OSError as exc:
        logger.error(
            "cannot delete %s (its object s3://%s/%s is no longer in S3): %s",
            path,
            have.bucket,
            have.key,
            exc.strerror or exc,
            extra={"event": "sync.failed", "bucket": have.bucket, "key": have.key},
        )
        return None
    logger.info(
        "deleted %s: its object %s is no longer in S3",
        path,
        object_url(have.bucket, have.key),
        extra={
            "event": "sync.deleted",
            "bucket": have.bucket,
            "key": have.key,
            "path": str(path),
        },
    )
    return True


def created_from(obj: Listed) -> ObjectCreated:
    """The ObjectCreated the fetcher takes for a listed object: no sequencer (a listing has
    none) and no version (the GET fetches the current one and the provenance records what it
    returned: listing.py); the listed ETag and size, which the fetcher checks the bytes
    against when the GET returns that same object; LastModified as the event time."""
    return ObjectCreated(
        bucket=obj.bucket,
        key=obj.key,
        event_name=LISTED_EVENT_NAME,
        size=obj.size,
        etag=obj.etag,
        event_time=_iso(obj.last_modified),
    )


def _iso(when: datetime.datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local_state(path: Path) -> LocalState:
    """What ``path`` holds, for converge.decide: nothing, our file (with its provenance), a
    file we did not write, or something that is not a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return LocalState(kind=LocalKind.MISSING)
    except NotADirectoryError:  # a file where a parent directory should be
        return LocalState(kind=LocalKind.NOT_REGULAR)
    except OSError:  # cannot look (a directory the user cannot search, a symlink loop)
        return LocalState(kind=LocalKind.NOT_REGULAR)
    if not stat.S_ISREG(st.st_mode):
        return LocalState(kind=LocalKind.NOT_REGULAR)
    have = read_provenance(path)
    if have is None:
        return LocalState(kind=LocalKind.FOREIGN)
    return LocalState(kind=LocalKind.OURS, provenance=have)


def _home(config: Config, have: Provenance) -> Path | None:
    """Where the daemon stores ``have``'s object now; None: nowhere (unrouted, unsafe)."""
    placement = route(have.bucket, have.key, config=config)
    if placement is None:
        return None
    try:
        return placement.local_path(bucket=have.bucket, key=have.key)
    except MessageError:
        return None


def _files_with_provenance(folder: Path) -> Iterator[tuple[Path, Provenance]]:
    """Every regular file under ``folder`` with a provenance record, skipping the temp folder
    and never following a symlink."""
    for directory, subdirs, files in os.walk(folder):
        if Path(directory) == folder:
            subdirs[:] = [name for name in subdirs if name != TEMP_DIR_NAME]
        for name in files:
            path = Path(directory, name)
            have = read_provenance(path)
            if have is not None:
                yield path, have
