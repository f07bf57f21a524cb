"""pathlocks.py: one entry per claimed path, shared by its claimants, gone with the last."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from s3sqsd.pathlocks import PathLocks


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
