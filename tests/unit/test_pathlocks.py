"""pathlocks.py: one entry per claimed path, shared by its claimants, gone with the last."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from s3sqsd.pathlocks import PathLocks, lock_offset


def test_claimants_of_one_path_share_its_entry_until_the_last_lets_go() -> None:
    locks = PathLocks()
    path = Path("/d/a")
    with locks.claim(path) as first:
        first.changes += 1
        with locks.claim(path) as second:
            assert second is first
            assert second.users == 2
        assert locks.claimed() == {path: first}
        assert first.users == 1
    assert locks.claimed() == {}
    with locks.claim(path) as fresh:  # a new entry: the count starts over
        assert fresh is not first
        assert fresh.changes == 0


def test_other_paths_have_their_own_entries() -> None:
    locks = PathLocks()
    with locks.claim(Path("/d/a")) as a, locks.claim(Path("/d/b")) as b:
        assert a is not b
        assert set(locks.claimed()) == {Path("/d/a"), Path("/d/b")}


def test_the_lock_keeps_a_second_thread_out_until_released() -> None:
    locks = PathLocks()
    path = Path("/d/a")
    order: list[str] = []
    inside = threading.Event()

    def other() -> None:
        inside.wait()
        with locks.lock(path):
            order.append("other")

    thread = threading.Thread(target=other)
    thread.start()
    with locks.lock(path) as entry:
        inside.set()
        deadline = time.monotonic() + 5
        while entry.users < 2 and time.monotonic() < deadline:  # its claim comes before the wait
            time.sleep(0.001)
        assert entry.users == 2
        assert thread.is_alive()  # claimed, and waiting on the lock
        order.append("first")
    thread.join(timeout=5)
    assert order == ["first", "other"]
    assert locks.claimed() == {}


def test_a_path_locks_one_stable_byte_below_2_to_the_62() -> None:
    """Every process must pick the same byte for a path: a hash, not Python's salted one."""
    assert lock_offset("a/b.txt") == lock_offset("a/b.txt")
    assert lock_offset("a/b.txt") != lock_offset("a/c.txt")
    assert 0 <= lock_offset("\udcff") < 1 << 62  # undecodable names hash too


def test_fetchers_of_one_folder_share_one_lock_file_descriptor(tmp_path: Path) -> None:
    """Closing a second descriptor would drop the first one's locks: one per process."""
    lock_file = tmp_path / "paths.lock"
    first, second = PathLocks(), PathLocks()
    first.share(root=tmp_path, lock_file=lock_file)
    second.share(root=tmp_path, lock_file=lock_file)
    assert first._processes is second._processes
    with first.lock(tmp_path / "x"):
        del second  # its release keeps the file open for the first
        with second_process_tries(lock_file, "x") as blocked:
            assert blocked


@contextlib.contextmanager
def second_process_tries(lock_file: Path, relative: str) -> Iterator[bool]:
    """Whether another process finds ``relative``'s byte taken (a non-blocking try)."""
    code = (
        "import fcntl, os, sys\n"
        "from s3sqsd.pathlocks import lock_offset\n"
        f"fd = os.open({str(lock_file)!r}, os.O_RDWR)\n"
        "try:\n"
        f"    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, lock_offset({relative!r}))\n"
        "except OSError:\n"
        "    sys.exit(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, timeout=30)
    yield done.returncode == 3
