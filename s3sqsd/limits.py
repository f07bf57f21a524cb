"""Bounds on what every download shares: the network (``max_bandwidth_bytes_per_second``), the
disk (``min_free_bytes``) and the part threads while small files wait (``PartShare``).

One ``Limits`` per process, built from the config by the daemon (or ``s3sqsd sync``) and handed
to every fetcher (fetchers.py), so one limit covers every folder, the GET of a whole object,
the ranged GETs of a large one and the reconcile pass.

**Bandwidth** (``Throttle``) is s3transfer's limiter, the one behind boto3's transfer manager
and the AWS CLI's ``max_bandwidth``, not a new one: one ``LeakyBucket`` for the process and a
``BandwidthLimitedStream`` around each GET's body. Around it, this module only decides what
the stream is charged and how its waits end:

- Every read asks for at most ``THROTTLED_READ_BYTES``, and never for more than the bytes the
  body still owes (its Content-Length, or the range): the stream charges what it is asked for,
  so a 4 KiB object read with 1 MiB reads would otherwise cost 2 MiB of the budget. The last
  bytes under the stream's 256 KiB threshold are charged once the body is complete; a read
  past the end (the empty one that ends a download) goes around the limiter.
- A wait is a wait on the download's ``cancel`` event (and a ranged part's ``stop``), not a
  ``time.sleep``: a stop interrupts a throttled download at once, at the drain deadline as
  for a failed range. The interrupted stream asks the bucket again at once, and a scheduled
  request is always granted, so its place in the bucket's queue of scheduled waits is given
  back instead of delaying every later download (the read loops, not the stream, then see the
  cancel and end the download).

Unset, there is no ``Throttle``: bodies are read as they come, at no cost. The bucket's rate
cannot be changed (s3transfer has no setter for it), so the limit is restart-only.

**Free space** (``SpaceFloor``): before a download writes its first byte, the folder's free
space (``statvfs``: ``f_bavail * f_frsize``, what an unprivileged service may use) less the
object's announced size must stay at or above the floor; otherwise ``LowSpaceError``, a
``LocalError``: the worker keeps the message in hand, as for a full disk, and waits (its
failure policy and ``worker.spacewait``). The floor is a plain value, changed by a reload.

**Small files first** (``PartShare``): the ranged GETs of large objects run on the shared
part threads (``large_objects.concurrency``, 10), and on a host whose CPU or link is the bound
they take it from the small files queued beside them (workload f: 4 x 1 GiB announced with
2,000 x 4 KiB). While the small lane's slots are all busy (the concurrency tuner says so every
0.1 s), at most ``YIELDING_RANGES`` ranges are read at once; when they are not, all of them.
A range that waits holds its part thread, not a connection, and a cancelled download's
ranges stop waiting at once. Large objects never stop: they slow while small files wait (the
shortest jobs first, which is what lowers the small files' latency) and speed up again as
soon as the small lane has a free slot. Only the daemon's tuner says "waiting": ``s3sqsd
sync`` and a reconcile pass keep every part thread.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from s3transfer.bandwidth import BandwidthLimitedStream, LeakyBucket, TimeUtils
from s3transfer.futures import TransferCoordinator

from s3sqsd.config import Config
from s3sqsd.errors import LowSpaceError
from s3sqsd.events import ObjectCreated
from s3sqsd.metrics import Metrics
from s3sqsd.preflight import format_bytes
from s3sqsd.verify import Readable, s3_url, unchecked_reader

# Reads of a throttled body: s3transfer's own read size for downloads, and its stream's
# threshold, so that every read is charged as it is made (a smaller read would be charged
# with the next ones, a larger one would wait longer between reads of the connection).
THROTTLED_READ_BYTES = 256 << 10
# Ranges of large objects read at once while the small lane's slots are all busy (PartShare).
YIELDING_RANGES = 2
# A wait that two events may end looks at the second one this often.
_POLL_SECONDS = 0.1


class Clock(TimeUtils):
    """The limiter's time: monotonic (a wall-clock step must not stall every download), and
    waits that a set event ends early. Tests give a fake one."""

    def time(self) -> float:
        return time.monotonic()

    def sleep(self, value: float) -> None:
        self.wait(value, ())

    def wait(self, seconds: float, interrupt: Sequence[threading.Event]) -> None:
        """Wait ``seconds``, or less if one of ``interrupt`` is set (at once for the first)."""
        deadline = self.time() + seconds
        while not any(event.is_set() for event in interrupt):
            left = deadline - self.time()
            if left <= 0:
                return
            if not interrupt:
                time.sleep(left)
            else:
                interrupt[0].wait(left if len(interrupt) == 1 else min(left, _POLL_SECONDS))


class _StreamClock(TimeUtils):
    """One stream's view of the clock: its sleeps end when its download is stopped."""

    def __init__(self, clock: Clock, interrupt: Sequence[threading.Event]) -> None:
        self._clock = clock
        self._interrupt = tuple(interrupt)

    def time(self) -> float:
        return self._clock.time()

    def sleep(self, value: float) -> None:
        self._clock.wait(value, self._interrupt)


class _Body:
    """What the stream reads from: the body's reads, without botocore's checksum pass
    (verify.unchecked_reader). The body is closed by its download, not by the stream."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self.read = read

    def close(self) -> None:
        pass


class _Throttled:
    """A GET body read through the shared limiter (a ``Readable``; see the module text)."""

    def __init__(self, stream: BandwidthLimitedStream, read: Callable[[int], bytes], owed: int):
        self._stream = stream
        self._read = read
        self._owed = owed

    def read(self, amt: int, /) -> bytes:
        if self._owed <= 0:
            return self._read(amt)  # past the end: nothing to pay for
        # (s3transfer's stubs type the stream as text; it hands back what the body gives)
        data = cast(bytes, self._stream.read(min(amt, self._owed, THROTTLED_READ_BYTES)))
        self._owed -= len(data)
        if self._owed <= 0 or not data:
            self._stream.close()  # charge what is left under the stream's threshold
        return data


class Throttle:
    """``max_bandwidth_bytes_per_second``: one s3transfer ``LeakyBucket`` every download
    reads through (``wrap``). ``clock`` and ``bucket`` are for tests."""

    def __init__(
        self,
        bytes_per_second: int,
        *,
        clock: Clock | None = None,
        bucket: LeakyBucket | None = None,
    ) -> None:
        if bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        self.bytes_per_second = bytes_per_second
        self._clock = clock or Clock()
        self._bucket = bucket or LeakyBucket(bytes_per_second, time_utils=self._clock)

    def wrap(
        self, body: Any, *, length: int | None, interrupt: Sequence[threading.Event]
    ) -> Readable:
        """``body`` (a GET's) read through the limiter; ``length``: the bytes it owes (None:
        unknown, charged as asked); a set ``interrupt`` event ends a wait at once."""
        read = unchecked_reader(body)
        stream = BandwidthLimitedStream(
            cast("IO[Any]", _Body(read)),
            self._bucket,
            TransferCoordinator(),  # never told of a failure: the read loops check cancel
            time_utils=_StreamClock(self._clock, interrupt),
            bytes_threshold=THROTTLED_READ_BYTES,
        )
        return _Throttled(stream, read, sys.maxsize if length is None else length)


class SpaceFloor:
    """``min_free_bytes``: the free space a download must leave in its folder (``check``).

    Thread-safe: the floor is one value, swapped by a reload (``update``). With ``metrics``,
    each check sets ``disk_free_bytes{folder}``: before every download, and every few seconds
    while messages wait for space (their tries again)."""

    def __init__(
        self,
        min_free_bytes: int | None,
        *,
        metrics: Metrics | None = None,
        statvfs: Callable[[Path], os.statvfs_result] = os.statvfs,
    ) -> None:
        self.min_free_bytes = min_free_bytes
        self._metrics = metrics
        self._statvfs = statvfs

    def update(self, min_free_bytes: int | None) -> None:
        self.min_free_bytes = min_free_bytes

    def free(self, folder: Path) -> int | None:
        """The bytes an unprivileged process may still write in ``folder``; None if it cannot
        be measured (the write that follows says why)."""
        try:
            stats = self._statvfs(folder)
        except OSError:
            return None
        free = stats.f_bavail * stats.f_frsize
        if self._metrics is not None:
            self._metrics.set("disk_free_bytes", free, folder=str(folder))
        return free

    def check(self, folder: Path, obj: ObjectCreated) -> None:
        """Raise LowSpaceError when writing ``obj`` (its event's size) into ``folder`` would
        leave less than the floor free."""
        floor = self.min_free_bytes
        if floor is None:
            return
        free = self.free(folder)
        size = obj.size or 0
        if free is None or free - size >= floor:
            return
        raise LowSpaceError(
            f"{folder}: {format_bytes(free)} free; {s3_url(obj)} ({format_bytes(size)}) would "
            f"leave less than min_free_bytes ({format_bytes(floor)}): waiting for space",
            folder=folder,
            free=free,
            size=size,
            floor=floor,
        )


class PartShare:
    """How many ranged GETs of large objects may read at once (see the module text): every
    part thread, or ``yielding`` of them while small files wait. Thread-safe."""

    def __init__(self, *, yielding: int = YIELDING_RANGES) -> None:
        self._yielding = max(1, yielding)
        self._waiting = False
        self._running = 0
        self._changed = threading.Condition()

    def small_waiting(self, waiting: bool) -> None:
        """The tuner, every sample: whether the small lane's slots are all busy."""
        with self._changed:
            if waiting != self._waiting:
                self._waiting = waiting
                self._changed.notify_all()

    def waiting(self) -> bool:
        """Whether small files wait (ranges take turns) now."""
        with self._changed:
            return self._waiting

    def running(self) -> int:
        """Ranges holding a place now."""
        with self._changed:
            return self._running

    @contextlib.contextmanager
    def place(self, interrupt: Sequence[threading.Event]) -> Iterator[None]:
        """Hold a place for one range: wait while small files wait and ``yielding`` ranges
        already read, unless one of ``interrupt`` is set (the range then sees it and ends)."""
        with self._changed:
            while (
                self._waiting
                and self._running >= self._yielding
                and not any(event.is_set() for event in interrupt)
            ):
                self._changed.wait(_POLL_SECONDS)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


@dataclass(frozen=True, slots=True)
class Limits:
    """The process's bounds, shared by every fetcher: ``throttle`` None means no limit."""

    throttle: Throttle | None
    floor: SpaceFloor
    parts: PartShare = field(default_factory=PartShare)

    @classmethod
    def from_config(cls, config: Config, *, metrics: Metrics | None = None) -> Limits:
        rate = config.max_bandwidth_bytes_per_second
        return cls(
            throttle=None if rate is None else Throttle(rate),
            floor=SpaceFloor(config.min_free_bytes, metrics=metrics),
        )

    @classmethod
    def none(cls) -> Limits:
        """No limit and no floor (tests, and fetchers built without a config)."""
        return cls(throttle=None, floor=SpaceFloor(None))

    def update(self, config: Config) -> None:
        """A reload: the floor follows the new file (the bandwidth limit is restart-only)."""
        self.floor.update(config.min_free_bytes)
