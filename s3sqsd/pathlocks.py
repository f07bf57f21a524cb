"""One lock per final path, so that two threads changing one path take turns.

Two workers may race on one key (two events for it, or one event delivered twice): the check
of the file on disk and the rename over it, or the checks and the unlink of a removal, must not
interleave. A lock per path, made when the first thread claims the path and dropped when the
last lets go, keeps the table as small as the work in flight; the ``changes`` count tells a
fetch whether another thread renamed into or removed the path since it first looked, so it can
skip the second look when nothing happened.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


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
        """Claim ``path`` and hold its lock."""
        with self.claim(path) as entry, entry.lock:
            yield entry

    def claimed(self) -> dict[Path, PathEntry]:
        """A copy of the table: the paths some thread holds a claim on now."""
        with self._guard:
            return dict(self._entries)
