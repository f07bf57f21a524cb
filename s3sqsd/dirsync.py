"""Group commit for the directory fsync that makes a rename durable.

Every file is renamed into place and then its directory is fsynced: without that, a crash can
lose the rename while the message is already deleted. With many downloads landing in one
directory, each fsync is a journal commit of its own, and they queue behind each other. But one
fsync of a directory makes durable every entry change in it that completed before the fsync
began. So a thread whose rename completed before a running or later fsync started need not
make its own: it waits for that one.

Each rename takes a ticket (a per-directory counter) after it completes. A syncing thread
notes the newest ticket before it calls fsync and, once fsync returns, marks all tickets up to
that one durable. A thread whose ticket is already marked is done; otherwise it syncs itself,
covering everyone who renamed before it began. If an fsync fails, every ticket it was to cover
fails with the same error (a later fsync on another descriptor might not report it again), so
no message is deleted on the strength of a failed sync.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field


def fsync_directory(path: str) -> None:
    """Open, fsync and close the directory ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Directory:
    sync_lock: threading.Lock = field(default_factory=threading.Lock)
    renamed: int = 0  # tickets handed out: renames completed into this directory
    durable: int = 0  # every ticket up to this one is covered by a successful fsync
    failed_up_to: int = 0  # tickets up to this one were covered by the fsync that failed
    failure: OSError | None = None
    users: int = 0  # threads between their ticket and their answer


class DirectorySync:
    """``renamed(directory)`` after each rename into ``directory``; returns once the rename is
    durable (or raises the OSError of the fsync that was to make it so). Thread-safe."""

    def __init__(self, *, fsync: Callable[[str], None] = fsync_directory) -> None:
        self._fsync = fsync
        self._lock = threading.Lock()
        self._directories: dict[str, _Directory] = {}

    def renamed(self, directory: str) -> None:
        with self._lock:
            state = self._directories.get(directory)
            if state is None:
                state = self._directories[directory] = _Directory()
            state.renamed += 1
            ticket = state.renamed
            state.users += 1
        try:
            self._cover(directory, state, ticket)
        finally:
            with self._lock:
                state.users -= 1
                if state.users == 0:
                    del self._directories[directory]

    def _cover(self, directory: str, state: _Directory, ticket: int) -> None:
        with state.sync_lock:
            if state.failure is not None and state.failed_up_to >= ticket:
                raise state.failure  # even if a later fsync succeeded: it may not have retried
            if state.durable >= ticket:
                return  # an fsync that began after this rename has completed
            with self._lock:
                target = state.renamed  # every one of these renames has completed by now
            try:
                self._fsync(directory)
            except OSError as exc:
                state.failure, state.failed_up_to = exc, target
                raise
            state.durable = target
