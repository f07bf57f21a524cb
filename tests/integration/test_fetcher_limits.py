"""``max_bandwidth_bytes_per_second`` through the fetcher against the emulator over real HTTP:
the GET of a whole object and the ranged GETs of a large one read through the one limiter
(s3transfer's bucket, counting what it grants, on a fake clock: time passes only when a
download waits, so the test is throttled without taking the time), and the files are still
checked whole. A stop ends a throttled download at once, with nothing left behind.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.errors import DownloadCancelledError
from s3sqsd.fetcher import FetchOutcome
from s3sqsd.limits import Limits, SpaceFloor, Throttle
from tests.support.fetching import created as event
from tests.support.fetching import leftovers, put
from tests.support.fetching import ranged_fetcher as make_fetcher
from tests.support.limits import CountingBucket, FakeClock

pytestmark = pytest.mark.integration

MiB = 1 << 20


def limits_at(rate: int, clock: FakeClock) -> tuple[Limits, CountingBucket]:
    bucket = CountingBucket(rate, clock)
    throttle = Throttle(rate, clock=clock, bucket=bucket)
    return Limits(throttle=throttle, floor=SpaceFloor(None)), bucket


def test_whole_and_ranged_downloads_pass_through_the_one_limit_and_are_verified(
    s3: Any, bucket: str, root: Path, parts_pool: ThreadPoolExecutor
) -> None:
    """1 MiB whole and 5 MiB in 1 MiB ranges at 1 MiB/s: the downloads waited (on the fake
    clock: about 6 s), the bucket granted each byte once, and each file is verified."""
    clock = FakeClock()
    limits, granted = limits_at(MiB, clock)
    fetcher = make_fetcher(s3, root, parts_pool, limits=limits)
    objects = {"small/one.bin": os.urandom(MiB), "big/five.bin": os.urandom(5 * MiB + 7)}
    for key, data in objects.items():
        put(s3, bucket, key, data, ChecksumAlgorithm="CRC32")
        result = fetcher.fetch(event(bucket, key, size=len(data)), cancel=threading.Event())
        assert result.outcome is FetchOutcome.DOWNLOADED
        assert result.verified_by == "crc32"
        assert (root / key).read_bytes() == data
    assert granted.granted == sum(len(data) for data in objects.values())
    assert clock.waits, "no download was throttled"
    assert 4 <= clock.now - 1000.0 <= 8
    assert leftovers(root) == []


@pytest.mark.parametrize("size", [MiB, 5 * MiB], ids=["whole", "ranged"])
def test_a_stop_ends_a_throttled_download_at_once(
    s3: Any, bucket: str, root: Path, parts_pool: ThreadPoolExecutor, size: int
) -> None:
    """At 1 byte/s every read after the first would wait for days; the drain's cancel, set
    while a read waits, ends the wait (no fake time passes) and the download, and nothing is
    left at the final path or in the temp folder."""
    cancel = threading.Event()
    clock = FakeClock(stop_on_wait=cancel)
    limits, _ = limits_at(1, clock)
    fetcher = make_fetcher(s3, root, parts_pool, limits=limits)
    put(s3, bucket, "slow.bin", os.urandom(size))
    with pytest.raises(DownloadCancelledError):
        fetcher.fetch(event(bucket, "slow.bin", size=size), cancel=cancel)
    assert clock.waits, "no read waited"
    assert min(clock.waits) > 86400  # what an uninterrupted wait would have been
    assert clock.now == 1000.0
    assert not (root / "slow.bin").exists()
    assert leftovers(root) == []
