"""Group commit of directory fsyncs: one fsync covers the renames completed before it began,
never a rename completed after, and a failed fsync fails every rename it was to cover."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from s3sqsd.dirsync import DirectorySync, fsync_directory
from tests.support.emulator import wait_until


class GatedFsync:
    """Records each fsync; the first one waits for ``gate`` (so others pile up behind it)."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.calls: list[str] = []
        self.fail_first = False
        self._lock = threading.Lock()

    def __call__(self, directory: str) -> None:
        with self._lock:
            self.calls.append(directory)
            first = len(self.calls) == 1
        if first:
            self.started.set()
            self.gate.wait(10)
            if self.fail_first:
                raise OSError(errno.EIO, "Input/output error")


class Renames:
    """Threads that each report one rename into a directory; their errors, once joined."""

    def __init__(self, sync: DirectorySync) -> None:
        self.sync = sync
        self.threads: list[threading.Thread] = []
        self.errors: list[OSError | None] = []

    def start(self, directory: str, count: int) -> None:
        for _ in range(count):
            index = len(self.errors)
            self.errors.append(None)
            thread = threading.Thread(target=self._one, args=(directory, index))
            self.threads.append(thread)
            thread.start()

    def _one(self, directory: str, index: int) -> None:
        try:
            self.sync.renamed(directory)
        except OSError as exc:
            self.errors[index] = exc

    def join(self) -> list[OSError | None]:
        for thread in self.threads:
            thread.join(10)
            assert not thread.is_alive()
        return self.errors


def first_fsync_blocked(directory: str, *, fail: bool = False) -> tuple[GatedFsync, Renames]:
    """A sync whose first fsync (of one rename into ``directory``) is running and held."""
    fsync = GatedFsync()
    fsync.fail_first = fail
    renames = Renames(DirectorySync(fsync=fsync))
    renames.start(directory, 1)
    assert fsync.started.wait(10)
    return fsync, renames


def test_renames_one_after_the_other_each_get_their_own_fsync() -> None:
    calls: list[str] = []
    sync = DirectorySync(fsync=calls.append)
    for _ in range(3):
        sync.renamed("/d")
    assert calls == ["/d", "/d", "/d"]


def test_renames_waiting_behind_a_running_fsync_share_the_next_one() -> None:
    fsync, renames = first_fsync_blocked("/d")
    sync = renames.sync
    # These five complete their renames while the first fsync runs: that fsync began before
    # them and cannot cover them, but one more fsync covers all five.
    renames.start("/d", 5)
    wait_until(lambda: _users(sync, "/d") == 6, what="five more renames waiting")
    fsync.gate.set()
    assert renames.join() == [None] * 6
    assert fsync.calls == ["/d", "/d"]


def test_other_directories_are_not_held_up_or_covered() -> None:
    fsync, renames = first_fsync_blocked("/a")
    renames.sync.renamed("/b")  # returns while /a's fsync is still blocked
    assert fsync.calls == ["/a", "/b"]
    fsync.gate.set()
    assert renames.join() == [None]


def test_a_failed_fsync_fails_every_rename_it_was_to_cover() -> None:
    """Renames completed before the failing fsync began raise its error, even if a later
    fsync succeeds; renames after it get their own fsync."""
    fsync, renames = first_fsync_blocked("/d", fail=True)
    sync = renames.sync
    renames.start("/d", 3)  # renamed while the failing fsync runs: covered by the next one
    wait_until(lambda: _users(sync, "/d") == 4, what="three more renames waiting")
    fsync.gate.set()
    errors = renames.join()
    assert isinstance(errors[0], OSError)
    assert errors[0].errno == errno.EIO
    assert errors[1:] == [None, None, None]
    assert len(fsync.calls) == 2
    sync.renamed("/d")  # a new rename: its own fsync
    assert len(fsync.calls) == 3


def test_the_state_of_a_directory_is_dropped_when_nobody_waits() -> None:
    sync = DirectorySync(fsync=lambda directory: None)
    sync.renamed("/d")
    assert _users(sync, "/d") == 0


def test_the_real_fsync_works_on_a_directory_and_refuses_a_file(tmp_path: Path) -> None:
    fsync_directory(str(tmp_path))
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(NotADirectoryError):
        fsync_directory(str(tmp_path / "f"))
    assert os.listdir(tmp_path) == ["f"]


def _users(sync: DirectorySync, directory: str) -> int:
    with sync._lock:
        state = sync._directories.get(directory)
        return 0 if state is None else state.users
