"""The shared bounds of limits.py on their own: s3transfer's limiter around GET bodies, on a
fake clock (no test here waits on, or measures, real time), and the free-space floor on a fake
``statvfs``."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from botocore.response import StreamingBody

from s3sqsd.errors import LocalError, LowSpaceError
from s3sqsd.events import ObjectCreated
from s3sqsd.limits import THROTTLED_READ_BYTES, Clock, PartShare, SpaceFloor, Throttle
from s3sqsd.metrics import Metrics
from tests.support.limits import CountingBucket, FakeClock

MiB = 1 << 20


def body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def drain(readers: Sequence[object], *, chunk: int = MiB) -> list[bytes]:
    """Read every reader to its end, a chunk of each in turn: downloads side by side."""
    got = [bytearray() for _ in readers]
    live = set(range(len(readers)))
    while live:
        for index in sorted(live):
            data = readers[index].read(chunk)  # type: ignore[attr-defined]
            if data:
                got[index] += data
            else:
                live.discard(index)
    return [bytes(b) for b in got]


class TestThrottle:
    RATE = 1 * MiB

    def read_through(self, sizes: Sequence[int]) -> tuple[FakeClock, CountingBucket]:
        clock = FakeClock()
        bucket = CountingBucket(self.RATE, clock)
        throttle = Throttle(self.RATE, clock=clock, bucket=bucket)
        datas = [os.urandom(size) for size in sizes]
        readers = [throttle.wrap(body(d), length=len(d), interrupt=()) for d in datas]
        assert drain(readers) == datas
        return clock, bucket

    def test_two_downloads_share_one_limit(self) -> None:
        """8 MiB at 1 MiB/s takes about 8 s of (fake) time; two downloads of 8 MiB side by
        side take about 16 s, not 8: the limit is for both together."""
        one, one_bucket = self.read_through([8 * MiB])
        start = 1000.0
        alone = one.now - start
        two, two_bucket = self.read_through([8 * MiB, 8 * MiB])
        together = two.now - start
        assert 6 <= alone <= 10, alone
        assert 13 <= together <= 20, together
        # Every byte, and no more, was charged to the one bucket.
        assert (one_bucket.granted, two_bucket.granted) == (8 * MiB, 16 * MiB)

    def test_reads_are_charged_what_arrives_not_what_was_asked(self) -> None:
        """1 MiB reads of a 4 KiB object (and the empty read that ends it) charge 4 KiB, and
        a read never asks the stream for more than THROTTLED_READ_BYTES."""
        clock, bucket = self.read_through([4096, 3 * THROTTLED_READ_BYTES + 5])
        assert bucket.granted == 4096 + 3 * THROTTLED_READ_BYTES + 5
        assert all(wait <= 2 * THROTTLED_READ_BYTES / self.RATE + 1e-9 for wait in clock.waits)

    def test_a_stop_ends_a_throttled_wait_and_gives_its_turn_back(self) -> None:
        """At 1 byte/s a 256 KiB read would wait three days. The stop (here: set as the wait
        begins) ends it at once; the read loop then sees it. A download started after it waits
        only for its own bytes, not also for the stopped one's."""
        stop = threading.Event()
        clock = FakeClock(stop_on_wait=stop)
        bucket = CountingBucket(1, clock)
        throttle = Throttle(1, clock=clock, bucket=bucket)
        first = throttle.wrap(body(os.urandom(2 * MiB)), length=2 * MiB, interrupt=(stop,))
        first.read(MiB)  # the first request is granted: nothing measured yet
        first.read(MiB)  # this one waits, and the stop ends the wait
        assert clock.waits == [THROTTLED_READ_BYTES]  # asked for 262144 s at 1 byte/s
        assert clock.now == 1000.0  # and no time passed
        clock.stop_on_wait = None
        other = threading.Event()
        second = throttle.wrap(body(os.urandom(MiB)), length=MiB, interrupt=(other,))
        other.set()  # (so that the fake wait returns; the length asked is what is checked)
        second.read(MiB)
        assert clock.waits[-1] == pytest.approx(THROTTLED_READ_BYTES)  # not twice that

    @pytest.mark.parametrize("which", [0, 1], ids=["cancel", "stop"])
    def test_the_real_clock_wait_ends_when_either_event_is_set(self, which: int) -> None:
        """A ranged part waits on its download's cancel and on its own stop: either, set
        while it waits, ends an hour's wait (the join's bound is only against a hang)."""
        events = (threading.Event(), threading.Event())
        waiting = threading.Thread(target=Clock().wait, args=(3600, events), daemon=True)
        waiting.start()
        threading.Timer(0.05, events[which].set).start()
        waiting.join(timeout=30)
        assert not waiting.is_alive()

    def test_a_limit_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            Throttle(0)


def created(size: int | None) -> ObjectCreated:
    return ObjectCreated(bucket="inbox", key="a.bin", event_name="ObjectCreated:Put", size=size)


class FakeStatvfs:
    def __init__(self, free: int, block: int = 4096) -> None:
        self.free, self.block, self.calls = free, block, 0

    def __call__(self, path: Path) -> os.statvfs_result:
        self.calls += 1
        blocks = self.free // self.block
        # f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_favail, f_flag,
        # f_namemax: the root-only reserve makes f_bfree larger than f_bavail.
        return os.statvfs_result(
            (self.block, self.block, 10 * blocks, blocks + 100, blocks, 0, 0, 0, 0, 255)
        )


class TestSpaceFloor:
    def test_a_download_that_would_go_below_the_floor_waits(self) -> None:
        statvfs = FakeStatvfs(free=100 * MiB)
        metrics = Metrics()
        floor = SpaceFloor(60 * MiB, metrics=metrics, statvfs=statvfs)
        floor.check(Path("/srv/in"), created(40 * MiB))  # leaves exactly the floor
        with pytest.raises(LowSpaceError) as raised:
            floor.check(Path("/srv/in"), created(40 * MiB + 1))
        error = raised.value
        assert isinstance(error, LocalError)  # kept in hand like a full disk
        assert (error.folder, error.free, error.size, error.floor) == (
            Path("/srv/in"),
            100 * MiB,
            40 * MiB + 1,
            60 * MiB,
        )
        assert "/srv/in" in str(error)
        assert "s3://inbox/a.bin" in str(error)
        assert "min_free_bytes" in str(error)
        # What an unprivileged service may use: f_bavail, not f_bfree.
        assert metrics.get("disk_free_bytes", folder="/srv/in") == 100 * MiB

    def test_an_object_of_unknown_size_counts_for_nothing(self) -> None:
        floor = SpaceFloor(10, statvfs=FakeStatvfs(free=4096))
        floor.check(Path("/srv/in"), created(None))

    def test_no_floor_measures_nothing_and_a_reload_sets_one(self) -> None:
        statvfs = FakeStatvfs(free=0)
        floor = SpaceFloor(None, statvfs=statvfs)
        floor.check(Path("/srv/in"), created(MiB))
        assert statvfs.calls == 0
        floor.update(1)
        with pytest.raises(LowSpaceError):
            floor.check(Path("/srv/in"), created(0))

    def test_a_folder_that_cannot_be_measured_is_left_to_the_write(self) -> None:
        def gone(path: Path) -> os.statvfs_result:
            raise FileNotFoundError(2, "No such file or directory")

        SpaceFloor(1 << 40, statvfs=gone).check(Path("/srv/in"), created(MiB))


def test_part_share_lets_every_range_read_unless_small_files_wait() -> None:
    """Not waiting: any number of places at once. Waiting: ``yielding`` of them; a third
    waits until one leaves, or until the small files stop waiting, whichever comes first."""
    share = PartShare(yielding=2)
    with share.place(()), share.place(()), share.place(()):
        assert share.running() == 3
    share.small_waiting(True)
    entered = threading.Event()

    def third() -> None:
        with share.place(()):
            entered.set()

    with share.place(()), share.place(()):
        waiter = threading.Thread(target=third)
        waiter.start()
        assert not entered.wait(0.3)  # two read: the third waits its turn
    assert entered.wait(5)  # a place came free
    waiter.join(5)
    with share.place(()), share.place(()):
        waiter = threading.Thread(target=third)
        entered.clear()
        waiter.start()
        assert not entered.wait(0.3)
        share.small_waiting(False)  # the small lane has a free slot again: no more turns
        assert entered.wait(5)
        waiter.join(5)
    assert share.running() == 0


def test_a_range_waiting_its_turn_goes_on_when_interrupted() -> None:
    """A cancel (or another range's failure) ends the wait: the range runs, sees the event
    at its first chunk and ends; the place it took is given back."""
    share = PartShare(yielding=1)
    share.small_waiting(True)
    cancel, entered = threading.Event(), threading.Event()

    def waiting() -> None:
        with share.place((cancel,)):
            entered.set()

    with share.place(()):
        waiter = threading.Thread(target=waiting)
        waiter.start()
        assert not entered.wait(0.3)
        cancel.set()
        assert entered.wait(5)
        waiter.join(5)
    assert share.running() == 0
