"""The download folder on disk: making it ready at start, and checking the way to a path in it.

``prepare`` makes ``root`` and its hidden temp folder ``root/.s3sqsd-tmp`` (same filesystem as
every final path, so renames are atomic) and sweeps the temp files an earlier run left. A
missing temp folder is never re-created later (the folder may be an unmounted mount point):
that is a LocalError until ``prepare`` runs again.

Two roles share a folder (``FolderRole``):

- the daemon (``DAEMON``, the default) takes the folder for itself: ``flock`` on the temp
  folder, so a second daemon on one folder is refused. Its temp files are in the temp folder
  itself, and at start it sweeps everything there, except the path lock file
  (``paths.PATH_LOCK_NAME``) and the sub-folder of a live ``s3sqsd sync``;
- ``s3sqsd sync`` (``SYNC``) runs beside a daemon or without one, any number at once: it
  takes no folder lock, and writes its temp files into a sub-folder of its own,
  ``.s3sqsd-tmp/sync.<pid>.<random>/``, which it ``flock``s for its life. A sub-folder whose
  lock can be taken belongs to a process that is gone: the daemon's start-up sweep and every
  sync's removes it; a locked one is left alone.

Both roles order their changes to one path through the per-path locks across processes of
pathlocks.py, on the lock file in the temp folder (``lock_file``).

Symlinks: every existing directory on the way to a final path must resolve inside ``root``;
this is checked before the GET and again when the directories are made, not atomically with
the rename, which is enough against keys but not against a local user racing symlinks into
the folder.

``local_error`` turns a local OSError into the error kind the worker acts on (errors.py).
"""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import os
import secrets
import shutil
import stat
import weakref
from pathlib import Path

from s3sqsd.dirsync import fsync_directory
from s3sqsd.errors import LocalError, MessageError, PathConflictError, UnsafeKeyError
from s3sqsd.events import ObjectCreated
from s3sqsd.paths import PATH_LOCK_NAME, SYNC_DIR_PREFIX, TEMP_DIR_NAME
from s3sqsd.verify import s3_url

_UNWRITABLE_ERRNOS = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_CONFLICT_ERRNOS = frozenset({errno.ENOTDIR, errno.EEXIST, errno.EISDIR})
_WORK_DIR_ATTEMPTS = 8  # a sub-folder removed by a sweep as it was being made: made again


class FolderRole(enum.Enum):
    """Who uses a download folder, and so how it is taken and swept (module docstring)."""

    DAEMON = "daemon"  # one per folder: takes the folder, sweeps all leftovers at start
    SYNC = "sync"  # ``s3sqsd sync``: beside the daemon, in a temp sub-folder of its own


def inside(path: str, root_real: str) -> bool:
    """Whether the resolved ``path`` is ``root_real`` or below it (pure)."""
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


def unwritable(root: Path, exc: OSError) -> LocalError:
    """The one sentence for a folder that cannot be prepared, with the systemd hint when it
    is a permission or read-only problem (the unit's sandbox is the usual cause)."""
    reason = exc.strerror or str(exc)
    if exc.errno in _UNWRITABLE_ERRNOS:
        return LocalError(
            f"download_folder {root} is not writable ({reason}); under systemd add it with "
            "ReadWritePaths= in a drop-in (systemctl edit s3sqsd)"
        )
    return LocalError(f"download_folder {root} cannot be prepared ({reason})")


class DownloadFolder:
    """One ``download_folder``: its start-up, its lock, and the checks of the directories on
    the way to a final path. Safe to use from many threads once prepared."""

    def __init__(
        self, *, root: Path, directory_mode: int, role: FolderRole = FolderRole.DAEMON
    ) -> None:
        self._root = root
        self._temp_dir = root / TEMP_DIR_NAME
        self._directory_mode = directory_mode
        self._role = role
        self._lock_fd: int | None = None  # the folder lock (``_lock_folder``), kept open
        self._work_fd: int | None = None  # a sync's lock of its sub-folder, kept open
        # Closes ``_work_fd`` once: at ``close``, or when a folder never closed is collected.
        self._work_closer: weakref.finalize[[int], DownloadFolder] | None = None
        if role is FolderRole.SYNC:
            name = f"{SYNC_DIR_PREFIX}{os.getpid()}.{secrets.token_hex(4)}"
            self._work_dir = self._temp_dir / name
        else:
            self._work_dir = self._temp_dir

    @property
    def root(self) -> Path:
        return self._root

    @property
    def role(self) -> FolderRole:
        return self._role

    @property
    def temp_dir(self) -> Path:
        """The folder's temp folder, ``root/.s3sqsd-tmp``."""
        return self._temp_dir

    @property
    def work_dir(self) -> Path:
        """Where this process's temp files go: the temp folder for the daemon, the sync's
        own sub-folder for a sync."""
        return self._work_dir

    @property
    def lock_file(self) -> Path:
        """The file of the per-path locks across processes (pathlocks.py)."""
        return self._temp_dir / PATH_LOCK_NAME

    def prepare(self) -> int:
        """Create root and temp folder, take the folder, sweep leftover temp files, and check
        both are on one filesystem. Returns the number of leftovers removed; raises LocalError
        with one sentence when the folder cannot be used."""
        try:
            self._make_dirs(self._root)
            self._make_dirs(self._temp_dir)
        except OSError as exc:
            raise unwritable(self._root, exc) from exc
        if self._role is FolderRole.DAEMON:
            self._lock_folder()
        else:
            self._take_work_dir()
        try:
            swept = self._sweep()
            root_dev = os.stat(self._root).st_dev
            temp_dev = os.stat(self._work_dir).st_dev
        except OSError as exc:
            raise unwritable(self._root, exc) from exc
        if root_dev != temp_dev:
            raise LocalError(
                f"download_folder {self._root} and its temp folder {self._work_dir} are on "
                "different filesystems; renames would not be atomic"
            )
        return swept

    def close(self) -> None:
        """A sync's end: remove its temp sub-folder (empty once every fetch is over) and let
        go of its lock. Nothing for the daemon, whose lock lasts as long as the process."""
        closer, self._work_closer = self._work_closer, None
        self._work_fd = None
        if closer is None:
            return
        try:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        finally:
            # Through the finalizer, which then never runs again: closing the number here and
            # leaving it armed closed it a second time when the folder was collected, by then
            # another object's descriptor (a socket, a pipe) in this process.
            closer()

    def _take_work_dir(self) -> None:
        """Make the sync's temp sub-folder and ``flock`` it for the process's life.

        A sweep (the daemon's start, another sync's) removes a sub-folder whose lock it can
        take: this one, if it runs between the ``mkdir`` and the ``flock``. So, once locked,
        the sub-folder must still be the one at the path; if not, it is made again.
        """
        if self._work_fd is not None:
            return  # prepare() again: still ours
        path = self._work_dir
        for _ in range(_WORK_DIR_ATTEMPTS):
            try:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path, 0o700)
                fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue  # swept between the mkdir and the open
            except OSError as exc:
                raise unwritable(self._root, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = os.fstat(fd)
                now = os.stat(path, follow_symlinks=False)
                if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                    self._work_fd = fd
                    self._work_closer = weakref.finalize(self, _close_quietly, fd)
                    return
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.ENOENT):
                    os.close(fd)
                    raise unwritable(self._root, exc) from exc
            os.close(fd)  # a sweep holds it or has removed it: make it again
        raise LocalError(
            f"download_folder {self._root}: cannot make the temp folder {path} of this sync "
            "(removed by a sweep each time)"
        )

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
            raise unwritable(self._root, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LocalError(
                    f"download_folder {self._root} is in use by another s3sqsd process (it "
                    f"holds a lock on {path}); each daemon needs a folder of its own"
                ) from exc
            raise unwritable(self._root, exc) from exc
        self._lock_fd = fd
        weakref.finalize(self, os.close, fd)  # a Fetcher dropped (tests, tools) lets go of it

    def _sweep(self) -> int:
        """Remove what earlier runs left in the temp folder; returns how many entries went.

        The daemon removes every entry but the path lock file (other processes may hold locks
        on it: a new file would not exclude them) and the sub-folders of live syncs. A sync
        removes only the sub-folders of syncs that are gone: the temp files in the temp folder
        itself are a running daemon's.
        """
        count = 0
        with os.scandir(self._temp_dir) as entries:
            for entry in entries:
                if entry.name == PATH_LOCK_NAME or entry.path == str(self._work_dir):
                    continue
                if entry.name.startswith(SYNC_DIR_PREFIX) and entry.is_dir(follow_symlinks=False):
                    count += _remove_if_unlocked(entry.path)
                elif self._role is not FolderRole.DAEMON:
                    continue
                elif entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)  # never follows symlinks
                    count += 1
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
                    count += 1
        return count

    def check_parents(self, path: Path, obj: ObjectCreated, *, create: bool) -> None:
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
            if not inside(os.path.realpath(current), root_real):
                raise UnsafeKeyError(
                    f"{s3_url(obj)}: {current} resolves outside download_folder (symlink)"
                )
            if not stat.S_ISDIR(st.st_mode):
                raise PathConflictError(
                    f"{s3_url(obj)}: {current} is a file where a directory is needed"
                )

    def check_not_directory(self, path: Path, obj: ObjectCreated) -> bool:
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


def _remove_if_unlocked(path: str) -> int:
    """Remove a sync's temp sub-folder if its process is gone (its ``flock`` can be taken);
    1 if it was removed, 0 if it is alive (or already gone)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return 0
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return 0  # a live sync's
            raise
        held = os.fstat(fd)
        try:
            now = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            return 0  # another sweep removed it meanwhile
        if (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino):
            return 0  # made again since it was opened: a live sync's, not the one locked
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(path)  # never follows symlinks
        return 1
    finally:
        os.close(fd)


def _close_quietly(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
