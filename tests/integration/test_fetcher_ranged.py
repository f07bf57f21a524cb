"""Ranged parallel downloads (ranged.py through Fetcher) against the emulator over real HTTP.

Objects of a few MiB with 1 MiB ranges stand in for large ones: the code path is the same and
the emulator reads a whole object for every ranged GET (see tests/support/emulator_server.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.errors import DownloadCancelledError, FetchError, IntegrityError, LocalError
from s3sqsd.fetcher import FetchOutcome, read_provenance
from s3sqsd.limits import Limits, PartShare, SpaceFloor
from s3sqsd.ranged import plan_ranges
from tests.support.emulator import Emulator, no_checksum_config
from tests.support.faultproxy import FLIP_BYTE, RESET_MID_BODY, proxy_for
from tests.support.fetching import created as event
from tests.support.fetching import leftovers, put
from tests.support.fetching import ranged_fetcher as make_fetcher
from tests.support.mounts import Mounts

pytestmark = pytest.mark.integration

MiB = 1 << 20
SIZE = 5 * MiB + 12345  # six ranges of 1 MiB, the last one short


def content(size: int = SIZE, seed: int = 1) -> bytes:
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    return (block * (size // len(block) + 1))[:size]


class Calls:
    """The S3 operations a client made, with their parameters (botocore's own event hook)."""

    def __init__(self, client: Any) -> None:
        self.params: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        client.meta.events.register("provide-client-params.s3.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        with self._lock:
            self.params.append((model.name, dict(params)))

    def of(self, operation: str) -> list[dict[str, Any]]:
        with self._lock:
            return [p for name, p in self.params if name == operation]


def put_without_checksum(emulator: Emulator, bucket: str, key: str, data: bytes) -> None:
    """As an older SDK uploads: no checksum stored, so only the MD5 ETag can be checked."""
    client = emulator.client("s3", config=no_checksum_config())
    client.put_object(Bucket=bucket, Key=key, Body=data)
    assert "ChecksumCRC32" not in client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")


def test_plan_ranges_cover_every_byte_once() -> None:
    assert [(r.start, r.end) for r in plan_ranges(10, 4)] == [(0, 3), (4, 7), (8, 9)]
    assert [(r.start, r.end) for r in plan_ranges(8, 4)] == [(0, 3), (4, 7)]
    assert list(plan_ranges(0, 4)) == []
    huge = plan_ranges(5 << 40, 1 << 20)  # 5 TiB in 1 MiB ranges: made one at a time
    assert next(huge).end == (1 << 20) - 1


def test_large_object_arrives_whole_through_ranges(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    """Every range is asked for once, pinned to the HEAD's ETag; the file is the object."""
    data = content()
    etag = put(s3, bucket, "big/file.bin", data, ChecksumAlgorithm="CRC32")["ETag"].strip('"')
    calls = Calls(s3)
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool)
    obj = event(bucket, "big/file.bin", size=SIZE, etag=etag, sequencer="0A")
    result = fetcher.fetch(obj, cancel=threading.Event())
    assert result.outcome is FetchOutcome.DOWNLOADED
    assert result.size == SIZE
    assert (tmp_path / "dl" / "big" / "file.bin").read_bytes() == data
    heads = calls.of("HeadObject")
    assert len(heads) == 1
    assert heads[0]["ChecksumMode"] == "ENABLED"
    gets = calls.of("GetObject")
    assert sorted(g["Range"] for g in gets) == sorted(
        f"bytes={r.start}-{r.end}" for r in plan_ranges(SIZE, MiB)
    )
    assert {g.get("IfMatch") for g in gets} == {f'"{etag}"'}
    provenance = read_provenance(tmp_path / "dl" / "big" / "file.bin")
    assert provenance is not None
    assert (provenance.etag, provenance.size) == (etag, SIZE)
    assert leftovers(tmp_path / "dl") == []


def test_below_threshold_and_without_executor_one_get(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    data = content(3 * MiB)
    etag = put(s3, bucket, "k", data)["ETag"].strip('"')
    calls = Calls(s3)
    obj = event(bucket, "k", size=len(data), etag=etag)
    make_fetcher(s3, tmp_path / "a", parts_pool, ranged_threshold=4 * MiB).fetch(
        obj, cancel=threading.Event()
    )
    make_fetcher(s3, tmp_path / "b", None).fetch(obj, cancel=threading.Event())
    assert [("Range" in g) for g in calls.of("GetObject")] == [False, False]
    assert calls.of("HeadObject") == []
    assert (tmp_path / "a" / "k").read_bytes() == data == (tmp_path / "b" / "k").read_bytes()


def test_announced_version_is_fetched_not_the_newest(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    old, new = content(seed=1), content(seed=2)
    first = put(s3, bucket, "v.bin", old)
    put(s3, bucket, "v.bin", new)
    calls = Calls(s3)
    obj = event(
        bucket, "v.bin", size=SIZE, etag=first["ETag"].strip('"'), version_id=first["VersionId"]
    )
    result = make_fetcher(s3, tmp_path / "dl", parts_pool).fetch(obj, cancel=threading.Event())
    assert result.version_id == first["VersionId"]
    assert (tmp_path / "dl" / "v.bin").read_bytes() == old
    assert {g.get("VersionId") for g in calls.of("GetObject")} == {first["VersionId"]}
    assert calls.of("HeadObject")[0]["VersionId"] == first["VersionId"]


def test_overwrite_during_download_fails_instead_of_mixing(
    emulator: Emulator, s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    """Unversioned: the object is replaced after the HEAD; the ranges' If-Match fails (412),
    the download is a retryable FetchError, and nothing is left behind."""
    put(s3, bucket, "o.bin", content(seed=1))
    other = emulator.client("s3")
    replaced = threading.Event()

    def overwrite(**_: Any) -> None:
        if not replaced.is_set():
            replaced.set()
            other.put_object(Bucket=bucket, Key="o.bin", Body=content(seed=3))

    s3.meta.events.register("after-call.s3.HeadObject", overwrite)
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool)
    with pytest.raises(FetchError, match=r"PreconditionFailed.*412"):
        fetcher.fetch(event(bucket, "o.bin", size=SIZE), cancel=threading.Event())
    assert replaced.is_set()
    assert not (tmp_path / "dl" / "o.bin").exists()
    assert leftovers(tmp_path / "dl") == []


@pytest.fixture
def proxied_s3(emulator: Emulator) -> Iterator[tuple[Any, Any]]:
    with proxy_for(emulator, seed=7) as proxy:
        yield emulator.client("s3", endpoint=proxy.url), proxy


@pytest.mark.parametrize("algorithm", ["CRC32", "MD5"])
def test_flipped_byte_in_one_range_is_caught(
    emulator: Emulator,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    parts_pool: ThreadPoolExecutor,
    proxied_s3: tuple[Any, Any],
    algorithm: str,
) -> None:
    """A byte changed on the wire in the third range: the whole-object check (the CRC32 S3
    stored, or the MD5 ETag when it stored none) catches it; no file, no temp file."""
    client, proxy = proxied_s3
    if algorithm == "CRC32":
        put(s3, bucket, "f.bin", content(), ChecksumAlgorithm="CRC32")
    else:
        put_without_checksum(emulator, bucket, "f.bin", content())
    proxy.add_rule(operation="GetObject", fault=FLIP_BYTE, match="f.bin", count=1)
    fetcher = make_fetcher(client, tmp_path / "dl", parts_pool)
    with pytest.raises(IntegrityError, match=f"{algorithm} (checksum )?mismatch"):
        fetcher.fetch(event(bucket, "f.bin", size=SIZE), cancel=threading.Event())
    assert proxy.faults == {("GetObject", FLIP_BYTE): 1}
    assert not (tmp_path / "dl" / "f.bin").exists()
    assert leftovers(tmp_path / "dl") == []


def test_connection_reset_in_a_range_is_retryable_and_leaves_nothing(
    s3: Any,
    bucket: str,
    tmp_path: Path,
    parts_pool: ThreadPoolExecutor,
    proxied_s3: tuple[Any, Any],
) -> None:
    client, proxy = proxied_s3
    put(s3, bucket, "r.bin", content())
    proxy.add_rule(operation="GetObject", fault=RESET_MID_BODY, match="r.bin", count=1)
    fetcher = make_fetcher(client, tmp_path / "dl", parts_pool)
    with pytest.raises(FetchError):
        fetcher.fetch(event(bucket, "r.bin", size=SIZE), cancel=threading.Event())
    assert proxy.faults == {("GetObject", RESET_MID_BODY): 1}
    assert leftovers(tmp_path / "dl") == []
    # The next attempt (a redelivery) succeeds.
    fetcher.fetch(event(bucket, "r.bin", size=SIZE), cancel=threading.Event())
    assert (tmp_path / "dl" / "r.bin").read_bytes() == content()


def test_event_size_mismatch_with_same_etag(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    etag = put(s3, bucket, "s.bin", content())["ETag"].strip('"')
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool)
    with pytest.raises(IntegrityError, match="size mismatch"):
        fetcher.fetch(event(bucket, "s.bin", size=SIZE + 1, etag=etag), cancel=threading.Event())
    assert leftovers(tmp_path / "dl") == []


def test_cancel_stops_every_range(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    put(s3, bucket, "c.bin", content())
    cancel = threading.Event()
    s3.meta.events.register("after-call.s3.HeadObject", lambda **_: cancel.set())
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool)
    with pytest.raises(DownloadCancelledError, match="cancelled"):
        fetcher.fetch(event(bucket, "c.bin", size=SIZE), cancel=cancel)
    assert leftovers(tmp_path / "dl") == []


def test_missing_object_is_a_fetch_error(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    """The HEAD answers 404 (deleted since the event): retried like a GET's NoSuchKey."""
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool)
    with pytest.raises(FetchError, match="404"):
        fetcher.fetch(event(bucket, "gone.bin", size=SIZE), cancel=threading.Event())
    assert leftovers(tmp_path / "dl") == []


def test_full_disk_is_a_local_error_and_stops_every_range(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor, mounts: Mounts
) -> None:
    """A 3 MiB tmpfs cannot take the 5 MiB object: a LocalError (the message stays in hand,
    the worker), the temp file is removed and the space comes back."""
    folder = mounts.tmpfs("small", size="3m")
    put(s3, bucket, "full.bin", content())
    fetcher = make_fetcher(s3, folder, parts_pool)
    with pytest.raises(LocalError, match="No space left on device"):
        fetcher.fetch(event(bucket, "full.bin", size=SIZE), cancel=threading.Event())
    assert leftovers(folder) == []
    assert os.statvfs(folder).f_bfree == os.statvfs(folder).f_blocks


def test_executor_shut_down_is_a_cancelled_download(s3: Any, bucket: str, tmp_path: Path) -> None:
    """The daemon shuts the parts pool down when it exits: a download still starting then is
    a FetchError (its message goes back), not an unexpected error with a traceback."""
    put(s3, bucket, "late.bin", content())
    pool = ThreadPoolExecutor(max_workers=1)
    pool.shutdown()
    fetcher = make_fetcher(s3, tmp_path / "dl", pool)
    with pytest.raises(DownloadCancelledError, match=r"cancelled \(shutting down\)"):
        fetcher.fetch(event(bucket, "late.bin", size=SIZE), cancel=threading.Event())
    assert leftovers(tmp_path / "dl") == []


class PeakShare(PartShare):
    """A ``PartShare`` that remembers the most ranges it ever let read at once."""

    def __init__(self, *, yielding: int) -> None:
        super().__init__(yielding=yielding)
        self.peak = 0
        self.entered = 0
        self._seen = threading.Lock()

    @contextlib.contextmanager
    def place(self, interrupt: Sequence[threading.Event]) -> Iterator[None]:
        with super().place(interrupt):
            with self._seen:
                self.entered += 1
                self.peak = max(self.peak, self.running())
            yield


def test_while_small_files_wait_a_large_object_reads_fewer_ranges_at_once(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    """Small files wait (the tuner says so): the six ranges of the object take their turn,
    one at a time with ``yielding=1``, on a pool of 4 threads with 3 submitted ahead; the
    file is still whole. When they stop waiting, ranges read side by side again."""
    data = content()
    put(s3, bucket, "big/turns.bin", data)
    share = PeakShare(yielding=1)
    share.small_waiting(True)
    limits = Limits(throttle=None, floor=SpaceFloor(None), parts=share)
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool, limits=limits)
    result = fetcher.fetch(event(bucket, "big/turns.bin", size=SIZE), cancel=threading.Event())
    assert result.outcome is FetchOutcome.DOWNLOADED
    assert (tmp_path / "dl" / "big" / "turns.bin").read_bytes() == data
    assert (share.entered, share.peak) == (6, 1)
    assert share.running() == 0


def test_a_cancelled_download_does_not_wait_for_its_turn(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor
) -> None:
    """Small files wait and another download holds the only place: a cancel still ends this
    download at once (its ranges stop waiting), leaving nothing behind."""
    put(s3, bucket, "big/cancelled.bin", content())
    share = PartShare(yielding=1)
    share.small_waiting(True)
    cancel = threading.Event()
    limits = Limits(throttle=None, floor=SpaceFloor(None), parts=share)
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool, limits=limits)
    with share.place(()):  # the one place is taken for the whole download
        threading.Timer(0.3, cancel.set).start()
        with pytest.raises(DownloadCancelledError, match="cancelled"):
            fetcher.fetch(event(bucket, "big/cancelled.bin", size=SIZE), cancel=cancel)
    assert leftovers(tmp_path / "dl") == []
