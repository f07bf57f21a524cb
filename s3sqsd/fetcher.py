"""Download one announced object into ``download_folder``: atomically, verified, durably.

The bytes go to a file with a random name in the hidden temp folder ``root/.s3sqsd-tmp`` (same
filesystem as every final path, checked by ``prepare``). Its removal is registered before the
first byte is written, so every failure path, cancellation included, leaves no temp file. The
file is checked against what S3 announced (length, event size, and the strongest checksum or
MD5 ETag this host can verify: verify.py), fsynced, labelled with its provenance (xattr
``user.s3sqsd``), renamed over the final path and the parent directory is fsynced (one fsync
may cover several renames into the same directory: dirsync.py). Only then does ``fetch``
report ``DOWNLOADED`` and may the caller delete the message.

Provenance orders overwrites: an event older than the file on disk (S3 ``sequencer``) is
``STALE``, the same event again (same sequencer, and the same ETag and version: a store may
repeat sequencers, and then the event time orders them) is ``DUPLICATE``, and so is, without
sequencers to compare, an event naming the object on disk (same ETag, and version when it names
one); neither replaces the file. The check runs
before the GET (no GET for an old event) and again under a per-path lock right before the
rename (two workers racing on one key) when something may have changed since: a file was
there at the first look, or another thread renamed into or removed the path meanwhile. On a
filesystem without user xattrs there is no provenance and every event downloads and replaces
(``Fetcher.xattrs_supported`` is False).
A file whose size no longer matches its provenance (edited by hand) is not trusted. The
recorded sequencer is the event's even when an unversioned GET returned a newer object: a later
event then downloads once more, which is harmless, while the reverse could skip new bytes.

``remove`` (``on_remove: delete``) unlinks a file only when its provenance names the removed
object and the removal's sequencer is newer than the file's, under the same per-path lock;
every other case keeps the file and returns the reason (``RemoveOutcome``).

Symlinks: every existing directory on the way must resolve inside ``root``; this is checked
before the GET and again when the directories are made, not atomically with the rename, which
is enough against keys but not against a local user racing symlinks into the folder. A missing
temp folder is never re-created here (the folder may be an unmounted mount point): that is a
LocalError until ``prepare`` runs again.

What is verified, and why the MD5 only when no checksum is: verify.py. Objects of
``ranged_threshold`` bytes or more are fetched as parallel ranged GETs when an executor is given
(ranged.py), with the same checks.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import itertools
import json
import os
import secrets
import shutil
import stat
import threading
import time
import weakref
from collections.abc import Iterator, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from s3sqsd.checksums import HostChecksums
from s3sqsd.dirsync import DirectorySync, fsync_directory
from s3sqsd.errors import (
    DownloadCancelledError,
    FetchError,
    LocalError,
    MessageError,
    PartsMismatchError,
    PathConflictError,
    UnsafeKeyError,
    UnverifiableError,
)
from s3sqsd.events import (
    ObjectCreated,
    OtherRecord,
    event_time_earlier,
    object_url,
    sequencer_newer,
)
from s3sqsd.parts import Layout, check_again, layout, pin
from s3sqsd.paths import TEMP_DIR_NAME, local_path
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

XATTR_NAME = "user.s3sqsd"
WRITEBACK_BYTES = 8 << 20  # start writeback of a large download every 8 MiB
TEMP_SUFFIX = ".part"
TEMP_NAME_ATTEMPTS = 16  # names in a row found taken before a temp file counts as a failure
# Reads of a ranged GET: with ten ranges in flight, 1 MiB reads cost 14 MiB more peak RSS on a
# 1 GiB object than 256 KiB ones (73.7 vs 59.3 MiB) for no speed (bench, workload c), and
# smaller reads halve the CPU at 20 ms RTT (fewer partial reads per call); s3transfer reads
# 256 KiB too.
RANGE_CHUNK_BYTES = 256 << 10

_NO_XATTR_ERRNOS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})
_UNWRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_CONFLICT_ERRNOS = frozenset({errno.ENOTDIR, errno.EEXIST, errno.EISDIR})


class FetchOutcome(enum.Enum):
    DOWNLOADED = "downloaded"  # the file at ``path`` now holds the object
    STALE = "stale"  # the file on disk comes from a later event: kept as it is
    DUPLICATE = "duplicate"  # the file on disk comes from this very event (or version)
    FOLDER_MARKER = "folder_marker"  # a key ending in "/": nothing to download


class RemoveOutcome(enum.Enum):
    """What ``Fetcher.remove`` did with the local file of a removal event; only REMOVED acts."""

    REMOVED = "removed"  # the file was ours and older than the event: unlinked, dir synced
    ABSENT = "absent"  # nothing at the path (never downloaded, or already removed)
    FOLDER_MARKER = "folder_marker"  # a key ending in "/": no file stands for it
    UNSAFE_KEY = "unsafe_key"  # the key maps to no safe path, so no file of ours is there
    NOT_REMOVAL = "not_removal"  # not an ObjectRemoved / "Object Deleted" record
    KEPT_NOT_REGULAR = "kept_not_regular"  # a symlink, directory, fifo... or a parent outside
    KEPT_NO_PROVENANCE = "kept_no_provenance"  # no readable provenance, or edited since
    KEPT_NOT_OURS = "kept_not_ours"  # provenance names another bucket or key
    KEPT_OTHER_VERSION = "kept_other_version"  # an older version was deleted, not the file's
    KEPT_NO_SEQUENCER = "kept_no_sequencer"  # the event or the file has no sequencer
    KEPT_NEWER = "kept_newer"  # the file comes from an event as new as the removal or newer


@dataclass(frozen=True, slots=True)
class FetchResult:
    outcome: FetchOutcome
    path: Path | None
    size: int
    etag: str | None
    version_id: str | None
    duration_ms: int
    verified_by: str | None = None  # verify.Check.verified_by, for DOWNLOADED
    unverifiable: tuple[str, ...] = ()  # stronger checks S3 had that this host could not do


@dataclass(frozen=True, slots=True)
class Got:
    """What one download brought: its size, the object's ETag and version, and its check."""

    size: int
    etag: str | None
    version_id: str | None
    check: Check


@dataclass(frozen=True, slots=True)
class Provenance:
    """What a downloaded file was made from; stored as compact JSON in xattr ``user.s3sqsd``."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    sequencer: str | None
    size: int
    event_time: str | None = None  # the event's; orders events only where sequencers repeat

    def encode(self) -> bytes:
        fields: dict[str, object] = {
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "etag": self.etag,
            "sequencer": self.sequencer,
            "size": self.size,
        }
        if self.event_time is not None:
            fields["event_time"] = self.event_time
        return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("ascii")

    @classmethod
    def decode(cls, raw: bytes) -> Provenance | None:
        """Parse an xattr value; None for anything that is not ours or not well formed."""
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        strings = ("bucket", "key")
        optional = ("version_id", "etag", "sequencer", "event_time")
        if not all(isinstance(data.get(name), str) for name in strings):
            return None
        if not all(data.get(name) is None or isinstance(data[name], str) for name in optional):
            return None
        size = data.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            return None
        return cls(
            bucket=data["bucket"],
            key=data["key"],
            version_id=data.get("version_id"),
            etag=data.get("etag"),
            sequencer=data.get("sequencer"),
            size=size,
            event_time=data.get("event_time"),
        )


def read_provenance(path: Path) -> Provenance | None:
    """The provenance of the file at ``path`` if it is a regular file whose size still matches."""
    try:
        raw = os.getxattr(path, XATTR_NAME, follow_symlinks=False)
        st = os.lstat(path)
    except OSError:
        return None  # no file, no xattr, no xattr support, a symlink: nothing to trust
    provenance = Provenance.decode(raw)
    if provenance is None or not stat.S_ISREG(st.st_mode) or st.st_size != provenance.size:
        return None  # edited or truncated since it was written: not what it claims to be
    return provenance


# ---- local file system ---------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _inside(path: str, root_real: str) -> bool:
    return path == root_real or path.startswith(root_real.rstrip(os.sep) + os.sep)


def local_error(exc: OSError, path: Path | str, obj: ObjectCreated, doing: str) -> MessageError:
    """Classify a local OSError while storing ``obj``; the text names the path and the URL."""
    reason = exc.strerror or str(exc)
    where = f"{doing} {path} for {s3_url(obj)}"
    if exc.errno == errno.ENAMETOOLONG:
        return UnsafeKeyError(f"cannot store {s3_url(obj)}: path too long ({path})")
    if exc.errno in _CONFLICT_ERRNOS:
        return PathConflictError(f"{where}: {reason} (a file and a directory share this name)")
    return LocalError(f"{where}: {reason}")


def _unwritable(root: Path, exc: OSError) -> LocalError:
    reason = exc.strerror or str(exc)
    if exc.errno in _UNWRITABLE_ERRNOS:
        return LocalError(
            f"download_folder {root} is not writable ({reason}); under systemd add it with "
            "ReadWritePaths= in a drop-in (systemctl edit s3sqsd)"
        )
    return LocalError(f"download_folder {root} cannot be prepared ({reason})")


@dataclass(slots=True, eq=False)
class _PathEntry:
    """``Fetcher._claim``: one final path's lock, its claimants, and its changes so far."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    changes: int = 0  # renames into the path and removals of it, by this Fetcher


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
        """``parts``: the executor ranged GETs run on (the worker package owns its threads); without
        one every object is one GET. Objects whose event size is ``ranged_threshold`` or more
        are fetched as ranges of ``part_size``, at most ``parts_window`` of one object ahead of
        the in-order verification. ``directory_sync`` makes each rename durable (dirsync.py:
        one directory fsync covers the renames that completed before it began).
        ``checksums``: the algorithms this host verifies (default: what is installed);
        ``integrity_strict``: an object that only its length can verify is refused
        (UnverifiableError) instead of accepted with a warning (config ``integrity``)."""
        if chunk_size <= 0 or part_size <= 0 or parts_window <= 0:
            raise ValueError("chunk_size, part_size and parts_window must be positive")
        self._s3 = s3
        self._root = Path(root)
        self._temp_dir = self._root / TEMP_DIR_NAME
        self._file_mode = file_mode
        self._directory_mode = directory_mode
        self._chunk_size = chunk_size
        self._parts = parts
        self._ranged_threshold = ranged_threshold
        self._part_size = part_size
        self._parts_window = parts_window
        self._directory_sync = directory_sync or DirectorySync()
        self._checksums = checksums if checksums is not None else HostChecksums.detect()
        self._strict = integrity_strict
        self._xattrs: bool | None = None
        self._lock_fd: int | None = None  # the folder lock (``_lock_folder``), kept open
        self._locks_guard = threading.Lock()
        self._locks: dict[Path, _PathEntry] = {}
        # Temp names: a random prefix per Fetcher and a counter, not a random name per file
        # (a getrandom call each). They only need to be unique among this process's files:
        # the folder is locked to one process and swept of leftovers at start, and O_EXCL
        # refuses a name that exists anyway.
        self._temp_prefix = f"{secrets.token_hex(6)}-"
        self._temp_numbers = itertools.count()
        # Whether a file created with file_mode gets exactly file_mode (the umask, or a default
        # ACL of the temp folder, strips none of its bits): probed by ``prepare``; until then,
        # and when it does not, each temp file gets an fchmod.
        self._mode_exact = False

    @property
    def root(self) -> Path:
        return self._root

    @property
    def checksums(self) -> HostChecksums:
        return self._checksums

    @property
    def xattrs_supported(self) -> bool | None:
        """Whether files get provenance xattrs; None until ``prepare`` or a download tells."""
        return self._xattrs

    # -- start-up ---------------------------------------------------------------------------

    def prepare(self) -> int:
        """Create root and temp folder, sweep leftover temp files, check the folder is usable.

        Returns the number of leftovers removed; raises LocalError with one sentence when the
        folder cannot be used.
        """
        try:
            self._make_dirs(self._root)
            self._make_dirs(self._temp_dir)
        except OSError as exc:
            raise _unwritable(self._root, exc) from exc
        self._lock_folder()
        try:
            swept = self._sweep()
            root_dev = os.stat(self._root).st_dev
            temp_dev = os.stat(self._temp_dir).st_dev
        except OSError as exc:
            raise _unwritable(self._root, exc) from exc
        if root_dev != temp_dev:
            raise LocalError(
                f"download_folder {self._root} and its temp folder {self._temp_dir} are on "
                "different filesystems; renames would not be atomic"
            )
        self._probe()
        return swept

    def _make_dirs(self, path: Path) -> None:
        """``mkdir -p`` giving each directory it creates exactly ``directory_mode``."""
        missing: list[Path] = []
        current = path
        while not current.exists():
            missing.append(current)
            if current.parent == current:
                break
            current = current.parent
        for directory in reversed(missing):
            try:
                os.mkdir(directory, self._directory_mode)
            except FileExistsError:
                if not directory.is_dir():
                    raise
                continue
            os.chmod(directory, self._directory_mode)
            fsync_directory(str(directory.parent))

    def _lock_folder(self) -> None:
        """Take the folder for this process: ``flock`` on the temp folder ``root/.s3sqsd-tmp``
        itself (no lock file to sweep or leave behind), held until the process exits; the
        kernel drops it however the process ends, so it never goes stale. Two daemons on one
        folder would sweep each other's temp files at start and race on every path; the second
        is refused instead, with one sentence."""
        if self._lock_fd is not None:
            return  # prepare() again: the lock is still ours
        path = self._temp_dir
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError as exc:
            raise _unwritable(self._root, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LocalError(
                    f"download_folder {self._root} is in use by another s3sqsd process (it "
                    f"holds a lock on {path}); each daemon needs a folder of its own"
                ) from exc
            raise _unwritable(self._root, exc) from exc
        self._lock_fd = fd
        weakref.finalize(self, os.close, fd)  # a Fetcher dropped (tests, tools) lets go of it

    def _sweep(self) -> int:
        count = 0
        with os.scandir(self._temp_dir) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)  # never follows symlinks
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                count += 1
        return count

    def _probe(self) -> None:
        """Create a file the way a download does: can it carry an xattr, does it get exactly
        ``file_mode``? The umask is the process's, set before start (systemd's ``UMask=``)
        and never changed by s3sqsd, so the answer holds until the next ``prepare``."""
        probe = self._temp_dir / f"probe-{secrets.token_hex(8)}{TEMP_SUFFIX}"
        try:
            fd = os.open(
                probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self._file_mode
            )
        except OSError as exc:
            raise _unwritable(self._root, exc) from exc
        try:
            try:
                self._mode_exact = stat.S_IMODE(os.fstat(fd).st_mode) == self._file_mode
                os.fchmod(fd, 0o600)  # the xattr probe needs the owner's write bit
            except OSError as exc:
                raise _unwritable(self._root, exc) from exc
            try:
                os.setxattr(fd, XATTR_NAME, b"{}")
                self._xattrs = True
            except OSError as exc:
                if exc.errno not in _NO_XATTR_ERRNOS:
                    raise _unwritable(self._root, exc) from exc
                self._xattrs = False
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)

    # -- one object --------------------------------------------------------------------------

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
        with contextlib.ExitStack() as cleanup:
            entry = cleanup.enter_context(self._claim(path))
            seen = entry.changes
            self._check_parents(path, obj, create=False)
            exists = self._check_not_directory(path, obj)
            skip = self._skip(path, obj) if exists else None
            if skip is not None:
                return self._skipped(skip, path, obj, started)
            if cancel.is_set():
                raise DownloadCancelledError(f"download of {s3_url(obj)} cancelled")
            temp, fd = self._open_temp(obj)
            # Registered before the first write: every exit below removes the temp file, except
            # the rename, after which the name no longer exists (and is not unlinked again).
            renamed = False

            def discard_temp() -> None:
                if not renamed:
                    _unlink_quietly(temp)

            cleanup.callback(discard_temp)
            cleanup.callback(os.close, fd)
            parts = self._parts
            if parts is not None and (obj.size or 0) >= self._ranged_threshold:
                got = self._fetch_ranged(obj, fd, path, cancel, parts)
            else:
                got = self._fetch_whole(obj, fd, path, cancel)
            self._label(fd, temp, obj, etag=got.etag, version_id=got.version_id, size=got.size)
            try:
                os.fsync(fd)
            except OSError as exc:
                raise local_error(exc, temp, obj, "cannot sync") from exc
            self._check_parents(path, obj, create=True)
            with entry.lock:
                # Look again only when something can have changed: a file was there at the
                # first look, or another thread changed the path since. Files with provenance
                # come only from this process (the folder is locked to it), so a path found
                # empty and untouched since holds nothing to judge.
                if exists or entry.changes != seen:
                    skip = self._skip(path, obj)
                    if skip is not None:
                        return self._skipped(skip, path, obj, started)
                try:
                    os.replace(temp, path)
                except OSError as exc:
                    raise local_error(exc, path, obj, "cannot move into place") from exc
                renamed = True
                entry.changes += 1
                try:  # the rename is durable only with its directory
                    self._directory_sync.renamed(str(path.parent))
                except OSError as exc:
                    raise local_error(exc, path.parent, obj, "cannot sync directory") from exc
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
            try:
                size = self._receive(body, fd, path, digests, obj, cancel)
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
        return Got(size=size, etag=etag, version_id=version_id, check=expected.check)

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
        )
        return Got(
            size=result.size, etag=result.etag, version_id=result.version_id, check=result.check
        )

    def _write_failed(self, exc: OSError, obj: ObjectCreated, path: Path) -> LocalError:
        return LocalError(
            f"cannot write {s3_url(obj)} to {path} (temp folder {self._temp_dir}): "
            f"{exc.strerror or exc}"
        )

    def _open_temp(self, obj: ObjectCreated) -> tuple[Path, int]:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        for attempt in range(TEMP_NAME_ATTEMPTS):
            temp = self._temp_dir / f"{self._temp_prefix}{next(self._temp_numbers)}{TEMP_SUFFIX}"
            try:
                fd = os.open(temp, flags, self._file_mode)
                break
            except FileExistsError:
                if attempt + 1 < TEMP_NAME_ATTEMPTS:
                    continue  # not ours (the folder was swept at start): take the next number
                raise LocalError(
                    f"cannot create temp file {temp} for {s3_url(obj)}: "
                    f"{TEMP_NAME_ATTEMPTS} names in a row exist"
                ) from None
            except OSError as exc:
                raise LocalError(
                    f"cannot create temp file {temp} for {s3_url(obj)}: {exc.strerror or exc}"
                ) from exc
        if self._mode_exact:
            return temp, fd
        try:
            os.fchmod(fd, self._file_mode)  # the umask may have removed bits
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(temp)
            raise LocalError(
                f"cannot set mode on {temp} for {s3_url(obj)}: {exc.strerror or exc}"
            ) from exc
        return temp, fd

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

    def _label(
        self,
        fd: int,
        temp: Path,
        obj: ObjectCreated,
        *,
        etag: str | None,
        version_id: str | None,
        size: int,
    ) -> None:
        """Set the provenance xattr on the temp file, so the rename carries it atomically."""
        if self._xattrs is False:
            return
        value = Provenance(
            bucket=obj.bucket,
            key=obj.key,
            version_id=version_id,
            etag=etag,
            sequencer=obj.sequencer,
            size=size,
            event_time=obj.event_time,
        ).encode()
        try:
            os.setxattr(fd, XATTR_NAME, value)
        except OSError as exc:
            if exc.errno in _NO_XATTR_ERRNOS:
                self._xattrs = False
                return
            if exc.errno in (errno.E2BIG, errno.ERANGE):
                return  # too big for this filesystem: this file goes without provenance
            raise local_error(exc, temp, obj, "cannot label") from exc
        self._xattrs = True

    def _check_parents(self, path: Path, obj: ObjectCreated, *, create: bool) -> None:
        """Walk root -> parent: every existing step must resolve inside root and be a directory.

        With ``create``, make the missing ones with ``directory_mode`` and fsync the directory
        that received each new entry at once, so every directory found existing was already
        made durable by whoever created it. Without it, stop at the first missing step.
        """
        try:
            relative = path.parent.relative_to(self._root)
        except ValueError as exc:  # paths.local_path never does this; refuse rather than guess
            raise UnsafeKeyError(f"{s3_url(obj)} maps outside download_folder") from exc
        if not relative.parts:
            return  # a file at the top of the folder: no directory to check or make
        root_real = os.path.realpath(self._root)
        current = self._root
        for part in relative.parts:
            current = current / part
            try:
                try:
                    st = os.stat(current)
                except FileNotFoundError:
                    if not create:
                        return
                    with contextlib.suppress(FileExistsError):  # another worker was quicker
                        os.mkdir(current, self._directory_mode)
                        os.chmod(current, self._directory_mode)  # the umask may remove bits
                    fsync_directory(str(current.parent))
                    st = os.stat(current)
            except OSError as exc:
                raise local_error(exc, current, obj, "cannot create directory") from exc
            if not _inside(os.path.realpath(current), root_real):
                raise UnsafeKeyError(
                    f"{s3_url(obj)}: {current} resolves outside download_folder (symlink)"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise PathConflictError(
                    f"{s3_url(obj)}: {current} is a file where a directory is needed"
                )

    def _check_not_directory(self, path: Path, obj: ObjectCreated) -> bool:
        """Refuse a directory at the final path; True if something else is there."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise local_error(exc, path, obj, "cannot inspect") from exc
        if stat.S_ISDIR(st.st_mode):
            raise PathConflictError(f"{s3_url(obj)}: {path} is a directory")
        return True

    def _skip(self, path: Path, obj: ObjectCreated) -> tuple[FetchOutcome, Provenance] | None:
        """STALE/DUPLICATE when the file on disk is as new as ``obj``; None to download."""
        if self._xattrs is False:
            return None
        have = read_provenance(path)
        if have is None or (have.bucket, have.key) != (obj.bucket, obj.key):
            return None
        event_etag = strip_etag(obj.etag)
        same_object = (
            event_etag is not None
            and have.etag == event_etag
            and (obj.version_id is None or have.version_id == obj.version_id)
        )
        if obj.sequencer is not None and have.sequencer is not None:
            if sequencer_newer(obj.sequencer, have.sequencer):
                return None
            if sequencer_newer(have.sequencer, obj.sequencer):
                return FetchOutcome.STALE, have
            # An equal sequencer is the same event only if it names the same object: LocalStack
            # gives every event one sequencer, and S3-compatible stores may repeat them. For
            # those, the event time is the order left: an earlier event does not replace.
            if same_object:
                return FetchOutcome.DUPLICATE, have
            if event_time_earlier(obj.event_time, have.event_time):
                return FetchOutcome.STALE, have
            return None
        # Without two sequencers to compare, the same object (bucket, key, ETag, and version
        # when the event names one) is already on disk: a redelivery, or a store that
        # announces one upload twice (moto: Put and CompleteMultipartUpload).
        if same_object:
            return FetchOutcome.DUPLICATE, have
        return None

    # -- removal (on_remove: delete) ----------------------------------------------------------

    def remove(self, record: OtherRecord, *, key_path: str | None = None) -> RemoveOutcome:
        """Remove the local file of a removal event, only when it is provably that object's.

        Removed only when all hold: ``record`` is a removal (``ObjectRemoved:*`` or EventBridge
        "Object Deleted"); the path ``root/<key_path>`` (``key_path`` defaults to the key; a
        route with ``strip_prefix`` passes the stripped one) holds a regular file, reached
        without leaving ``root``; its provenance names ``record``'s bucket and key and its size
        still matches; both sequencers are known and the event's is newer; and a versioned
        ``ObjectRemoved:Delete`` names the file's version (deleting an older version leaves the
        current object, and so the file, in place). The checks and the unlink run under the
        per-path lock that orders renames, on a file opened without following symlinks, and
        the directory is fsynced before REMOVED is returned. Every other case keeps the file
        and says why. Raises LocalError only when the folder cannot be read or synced.
        """
        if not is_removal(record.event_name):
            return RemoveOutcome.NOT_REMOVAL
        try:
            path = local_path(self._root, record.key, bucket=record.bucket, key_path=key_path)
        except UnsafeKeyError:
            return RemoveOutcome.UNSAFE_KEY
        if path is None:
            return RemoveOutcome.FOLDER_MARKER
        root_real = os.path.realpath(self._root)
        if not _inside(os.path.realpath(path.parent), root_real):
            return RemoveOutcome.KEPT_NOT_REGULAR  # a symlinked directory leading outside
        with self._path_lock(path) as entry:
            try:
                dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                return RemoveOutcome.ABSENT
            except OSError as exc:
                raise self._remove_error(exc, path.parent, record, "cannot open") from exc
            try:
                outcome = self._remove_in(dir_fd, path, record)
                if outcome is RemoveOutcome.REMOVED:
                    entry.changes += 1
                    try:
                        os.fsync(dir_fd)  # the unlink is durable only with its directory
                    except OSError as exc:
                        raise self._remove_error(exc, path.parent, record, "cannot sync") from exc
                return outcome
            finally:
                os.close(dir_fd)

    def _remove_in(self, dir_fd: int, path: Path, record: OtherRecord) -> RemoveOutcome:
        name = path.name
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except FileNotFoundError:
            return RemoveOutcome.ABSENT
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return RemoveOutcome.KEPT_NOT_REGULAR  # a symlink: never ours, never followed
            if exc.errno in (errno.EACCES, errno.EPERM):
                return RemoveOutcome.KEPT_NO_PROVENANCE  # not readable by us: not ours
            raise self._remove_error(exc, path, record, "cannot open") from exc
        try:
            st = os.fstat(fd)
            raw: bytes | None = None
            if stat.S_ISREG(st.st_mode):
                with contextlib.suppress(OSError):  # no xattr, or no xattr support
                    raw = os.getxattr(fd, XATTR_NAME)
            verdict = removal_verdict(
                record, regular=stat.S_ISREG(st.st_mode), size=st.st_size, provenance=raw
            )
            if verdict is not RemoveOutcome.REMOVED:
                return verdict
            # Still the very file checked (not replaced behind the lock by a local user)?
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return RemoveOutcome.KEPT_NOT_REGULAR
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return RemoveOutcome.ABSENT
        except OSError as exc:
            raise self._remove_error(exc, path, record, "cannot remove") from exc
        finally:
            os.close(fd)
        return RemoveOutcome.REMOVED

    @staticmethod
    def _remove_error(exc: OSError, path: Path, record: OtherRecord, doing: str) -> LocalError:
        url = object_url(record.bucket, record.key)
        return LocalError(f"{doing} {path} for the removal of {url}: {exc.strerror or exc}")

    def _skipped(
        self, skip: tuple[FetchOutcome, Provenance], path: Path, obj: ObjectCreated, started: float
    ) -> FetchResult:
        """The result for a file already in place, once its directory entry is durable too:
        the earlier attempt may have renamed it and then failed to sync the directory, and
        this answer lets the message be deleted."""
        try:
            self._directory_sync.renamed(str(path.parent))
        except OSError as exc:
            raise local_error(exc, path.parent, obj, "cannot sync directory") from exc
        outcome, have = skip
        return FetchResult(outcome, path, have.size, have.etag, have.version_id, _ms(started))

    @contextlib.contextmanager
    def _claim(self, path: Path) -> Iterator[_PathEntry]:
        """The table entry of one final path, kept while any thread holds a claim on it.

        Its lock orders the changes to the path; its ``changes`` counts them. A fetch claims
        its path before looking at it and keeps the claim until after the rename, so if the
        count has not moved by then, no other thread of this process changed the path.
        """
        with self._locks_guard:
            entry = self._locks.get(path)
            if entry is None:
                entry = self._locks[path] = _PathEntry()
            entry.users += 1
        try:
            yield entry
        finally:
            with self._locks_guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._locks[path]

    @contextlib.contextmanager
    def _path_lock(self, path: Path) -> Iterator[_PathEntry]:
        with self._claim(path) as entry, entry.lock:
            yield entry


def removal_verdict(
    record: OtherRecord, *, regular: bool, size: int, provenance: bytes | None
) -> RemoveOutcome:
    """The rule of ``Fetcher.remove`` for a file found at the record's path (pure): REMOVED
    when it may go, else the reason to keep it. ``provenance`` is the raw xattr value."""
    if not regular:
        return RemoveOutcome.KEPT_NOT_REGULAR
    have = None if provenance is None else Provenance.decode(provenance)
    if have is None or have.size != size:
        return RemoveOutcome.KEPT_NO_PROVENANCE
    if (have.bucket, have.key) != (record.bucket, record.key):
        return RemoveOutcome.KEPT_NOT_OURS
    if (
        record.event_name == "ObjectRemoved:Delete"
        and record.version_id is not None
        and have.version_id is not None
        and record.version_id != have.version_id
    ):
        return RemoveOutcome.KEPT_OTHER_VERSION
    if record.sequencer is None or have.sequencer is None:
        return RemoveOutcome.KEPT_NO_SEQUENCER
    if not sequencer_newer(record.sequencer, have.sequencer):
        return RemoveOutcome.KEPT_NEWER
    return RemoveOutcome.REMOVED


def is_removal(event_name: str) -> bool:
    """S3 notifications name removals ObjectRemoved:Delete / :DeleteMarkerCreated; EventBridge
    names them "Object Deleted". Lifecycle expirations (LifecycleExpiration:*) are not."""
    return event_name.startswith("ObjectRemoved:") or event_name == "Object Deleted"


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _close_quietly(body: Any) -> None:
    with contextlib.suppress(Exception):
        body.close()


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
