"""One lock per final path, so that two threads changing one path take turns.

Two workers may race on one key (two events for it, or one event delivered twice): the check
of the file on disk and the rename over it, or the checks and the unlink of a removal, must not
interleave. A lock per path, made when the first thread claims the path and dropped when the
last lets go, keeps the table as small as the work in flight; the ``changes`` count tells a
fetch whether another thread renamed into or removed the path since it first looked, so it can
skip the second look when nothing happened.

Other processes write into the same folder too: ``s3sqsd sync`` runs beside the daemon.
``PathLocks.share`` adds a lock per path across processes (``ProcessLocks``) that ``hold``
and ``lock`` take after the thread lock: the compare before a rename and the rename, or the
checks and the unlink of a removal, are then one step in every process at once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import random
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from s3sqsd.errors import LocalError


@dataclass(slots=True, eq=False)
class PathEntry:
    """One final path's lock, its claimants, and its changes so far."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    changes: int = 0  # renames into the path and removals of it, by the owner of the table


class PathLocks:
    """The table of the paths claimed right now; safe to use from many threads at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[Path, PathEntry] = {}
        self._processes: ProcessLocks | None = None  # ``share``: the lock across processes
        self._root = Path("/")

    def share(self, *, root: Path, lock_file: Path) -> None:
        """From now on ``hold`` and ``lock`` also lock the path against other processes,
        through ``lock_file`` (``ProcessLocks``); paths are named relative to ``root``, so
        processes that spell the folder differently still meet. Called by ``prepare``; again
        is a no-op. Raises OSError when the lock file cannot be opened for writing."""
        if self._processes is None:
            self._root = root
            self._processes = ProcessLocks.open(lock_file=lock_file)
            weakref.finalize(self, self._processes.release)  # a dropped Fetcher lets go

    @contextlib.contextmanager
    def hold(self, path: Path, entry: PathEntry) -> Iterator[None]:
        """Hold ``entry``'s thread lock (a claim of ``path``), then the lock of ``path``
        across processes: the section where a path is compared and changed."""
        with entry.lock:
            if self._processes is None:
                yield
            else:
                with self._processes.hold(os.path.relpath(path, self._root)):
                    yield

    @contextlib.contextmanager
    def claim(self, path: Path) -> Iterator[PathEntry]:
        """The table entry of one final path, kept while any thread holds a claim on it.

        Its lock orders the changes to the path; its ``changes`` counts them. A fetch claims
        its path before looking at it and keeps the claim until after the rename, so if the
        count has not moved by then, no other thread of this process changed the path.
        """
        with self._guard:
            entry = self._entries.get(path)
            if entry is None:
                entry = self._entries[path] = PathEntry()
            entry.users += 1
        try:
            yield entry
        finally:
            with self._guard:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[path]

    @contextlib.contextmanager
    def lock(self, path: Path) -> Iterator[PathEntry]:
        """Claim ``path`` and hold its lock (``hold``)."""
        with self.claim(path) as entry, self.hold(path, entry):
            yield entry

    def claimed(self) -> dict[Path, PathEntry]:
        """A copy of the table: the paths some thread holds a claim on now."""
        with self._guard:
            return dict(self._entries)


# ---- across processes ---------------------------------------------------------------------

# Offsets are hashes below 2**62: start + length stays inside a signed 64-bit off_t.
_OFFSET_BITS = 62
_DEADLOCK_RETRY_SECONDS = (0.001, 0.02)


def lock_offset(relative: str) -> int:
    """The byte a path locks in the lock file (pure): a stable 62-bit hash of its name
    relative to the folder. Two paths that share a byte only take turns more often."""
    digest = hashlib.blake2b(os.fsencode(relative), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _OFFSET_BITS)


class ProcessLocks:
    """One lock per final path across processes: a POSIX byte-range lock (``fcntl.lockf``,
    ``F_SETLKW``) on one byte of the folder's lock file, the byte chosen by ``lock_offset``.

    Why this mechanism: record locks are the stdlib's, on every Linux filesystem a download
    folder can be (NFS included, through its lock manager), any number of them on one file,
    created by no one and never stale: the kernel drops a process's locks when it exits, even
    by SIGKILL. ``flock`` would need a file per path (files to create, sweep, and race on);
    open-file-description locks (``F_OFD_SETLKW``) have no stdlib call but ``fcntl.fcntl``
    with a hand-packed ``struct flock``.

    What POSIX record locks ask of their user, and how it is given:

    - They belong to the process, not the thread: a second thread taking the same byte gets
      it at once, and either thread's unlock drops it for both. So one thread of the process
      at a time holds a byte: the thread lock of the path comes first (``PathLocks.hold``), and
      a lock per byte (``_Slot``) here, because two paths may share a byte.
    - Closing any descriptor of the file drops every lock the process holds on it, whichever
      descriptor took them. So the process has one descriptor of the file, shared by every
      ``PathLocks`` of that folder in the process (``open``), open while any of its bytes is
      held and closed only when none is (then no lock is dropped): a descriptor open for
      writing kept for the process's life would make ``mount -o remount,ro`` of the folder's
      filesystem fail (busy). The file is never opened elsewhere in the process, and the
      daemon's sweep of the temp folder never deletes it (a new file would exclude nothing).
    - The kernel's deadlock detection sees processes, not threads: process A waiting for a byte
      B holds while another thread of B waits for a byte another thread of A holds looks like a
      deadlock, though each holder will let go without waiting for anything, and ``lockf``
      fails with EDEADLK. That answer is a false alarm here (a thread never holds two bytes),
      so the thread waits a few milliseconds and asks again.
    """

    _registry: dict[tuple[int, int], ProcessLocks] = {}
    _registry_guard = threading.Lock()

    def __init__(self, *, lock_file: Path, key: tuple[int, int]) -> None:
        self._lock_file = lock_file
        self._key = key
        self._users = 0
        self._guard = threading.Lock()
        self._slots: dict[int, _Slot] = {}
        self._fd: int | None = None  # open while a byte is held (``_held`` > 0)
        self._retired: list[int] = []  # of ``open`` calls made while bytes were held
        self._held = 0

    @classmethod
    def open(cls, *, lock_file: Path) -> ProcessLocks:
        """The locks of ``lock_file`` for this process: the ones already known, else new ones
        (the file created 0600 if missing: ``s3sqsd sync`` runs as the daemon's user). Each
        call is one user more, until its ``release``. Raises OSError when the file cannot be
        created or opened for writing."""
        with cls._registry_guard:
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            st = os.fstat(fd)
            found = cls._registry.get((st.st_dev, st.st_ino))
            if found is None:
                found = cls._registry[(st.st_dev, st.st_ino)] = cls(
                    lock_file=lock_file, key=(st.st_dev, st.st_ino)
                )
            with found._guard:
                if found._held:
                    # Bytes are held through another descriptor right now: closing this one
                    # would drop them. It is closed with that one, once none is held.
                    found._retired.append(fd)
                else:
                    os.close(fd)  # it only made sure the file exists and is writable
            found._users += 1
            return found

    def release(self) -> None:
        """One user fewer; the last one forgets the file."""
        with ProcessLocks._registry_guard:
            self._users -= 1
            if self._users == 0:
                del ProcessLocks._registry[self._key]
                with self._guard:
                    self._close_if_idle()

    @contextlib.contextmanager
    def hold(self, relative: str) -> Iterator[None]:
        """Lock the path ``relative`` to the folder against every other process using the
        folder (blocking). Raises LocalError when the lock file cannot be opened."""
        offset = lock_offset(relative)
        with self._guard:
            slot = self._slots.get(offset)
            if slot is None:
                slot = self._slots[offset] = _Slot()
            slot.users += 1
        try:
            with slot.lock:
                fd = self._enter()
                try:
                    self._lock(fd, offset)
                    try:
                        yield
                    finally:
                        fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset)
                finally:
                    with self._guard:
                        self._held -= 1
                        self._close_if_idle()
        finally:
            with self._guard:
                slot.users -= 1
                if slot.users == 0:
                    del self._slots[offset]

    def _enter(self) -> int:
        """The descriptor to lock through, opened if no byte is held now."""
        with self._guard:
            if self._fd is None:
                try:
                    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
                    self._fd = os.open(self._lock_file, flags)
                except OSError as exc:
                    raise LocalError(
                        f"cannot open the lock file {self._lock_file}: {exc.strerror or exc}"
                    ) from exc
            self._held += 1
            return self._fd

    def _close_if_idle(self) -> None:
        """Under ``_guard``: close the descriptors when no byte is held (nothing to drop)."""
        if self._held == 0:
            for fd in [*self._retired, *([] if self._fd is None else [self._fd])]:
                os.close(fd)
            self._retired.clear()
            self._fd = None

    def _lock(self, fd: int, offset: int) -> None:
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX, 1, offset)
            except OSError as exc:
                if exc.errno != errno.EDEADLK:
                    raise
            else:
                return
            time.sleep(random.uniform(*_DEADLOCK_RETRY_SECONDS))  # noqa: S311 (not secret)


@dataclass(slots=True, eq=False)
class _Slot:
    """The threads of this process that want one byte of the lock file, one at a time."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
