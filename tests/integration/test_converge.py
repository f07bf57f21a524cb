"""The daemon and ``s3sqsd sync`` on one folder (issue 15, points 3 and 4): S3's metadata kept
with each file, and never an older object over a newer one, whichever process or order.

The second process is real (tests/support/sync_racer.py: a Fetcher in the sync role, in its own
interpreter), the objects are versions of one key in a versioned bucket of the emulator over
HTTP, and the interleavings are forced with pipes and the kernel's own lock table
(``/proc/locks`` shows a process waiting for a byte of the lock file): no sleeps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import Fetcher, FetchOutcome, FetchResult, FolderRole, Origin
from s3sqsd.paths import PATH_LOCK_NAME, SYNC_DIR_PREFIX, TEMP_DIR_NAME
from s3sqsd.provenance import read_provenance
from s3sqsd.staging import StagedFile
from tests.support.emulator import Emulator, wait_until
from tests.support.fetching import created, put

REPO = Path(__file__).resolve().parents[2]


def go() -> threading.Event:
    return threading.Event()


def versions(s3: Any, bucket: str, key: str, *bodies: bytes) -> list[dict[str, Any]]:
    """Upload ``bodies`` as successive versions of ``key`` (oldest first); S3's answers."""
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return [put(s3, bucket, key, body) for body in bodies]


def event_for(bucket: str, key: str, answer: dict[str, Any], size: int) -> ObjectCreated:
    """The event of one version (moto's carry no sequencer: the LastModified rule applies)."""
    return created(
        bucket,
        key,
        size=size,
        etag=str(answer["ETag"]).strip('"'),
        version_id=answer["VersionId"],
    )


def listed(bucket: str, key: str, answer: dict[str, Any], size: int) -> dict[str, Any]:
    """What a listing says of one version (no sequencer), for the racer."""
    return {
        "bucket": bucket,
        "key": key,
        "size": size,
        "etag": str(answer["ETag"]).strip('"'),
        "version_id": answer["VersionId"],
    }


class Racer:
    """The sync-role process (tests/support/sync_racer.py), one line at a time."""

    def __init__(self, emulator: Emulator, root: Path, **spec: Any) -> None:
        body = json.dumps({"endpoint": emulator.endpoint, "root": str(root), **spec})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.sync_racer", body],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = self.expect("ready")
        self.work_dir = Path(ready.split(" ", 1)[1])

    @property
    def pid(self) -> int:
        return self.proc.pid

    def expect(self, word: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line.startswith(word), f"the sync process said {line!r}, not {word!r}"
        return line

    def release(self) -> None:
        """Let a paused racer go on to its rename."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def outcome(self) -> str:
        return self.expect("result").split(" ", 1)[1]

    def finish(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0


@pytest.fixture
def racers(emulator: Emulator) -> Iterator[Callable[..., Racer]]:
    started: list[Racer] = []

    def start(root: Path, **spec: Any) -> Racer:
        racer = Racer(emulator, root, **spec)
        started.append(racer)
        return racer

    yield start
    for racer in started:
        if racer.proc.poll() is None:
            racer.proc.kill()
            racer.proc.wait()


def waits_for_path_lock(pid: int, root: Path) -> bool:
    """Whether process ``pid`` is blocked on a byte of ``root``'s path lock file: the kernel's
    lock table lists each waiter as ``-> POSIX ... <pid> <dev>:<inode> ...``."""
    inode = os.stat(root / TEMP_DIR_NAME / PATH_LOCK_NAME).st_ino
    with open("/proc/locks", encoding="ascii") as table:
        for line in table:
            fields = line.split()
            if "->" not in fields:
                continue
            fields = fields[fields.index("->") + 1 :]
            if fields[0] == "POSIX" and fields[3] == str(pid) and fields[4].endswith(f":{inode}"):
                return True
    return False


@pytest.fixture
def daemon_fetcher(make_fetcher: Callable[..., Fetcher], xattrs: None) -> Fetcher:
    """The daemon's fetcher of ``root`` (the default role), on a filesystem with xattrs."""
    return make_fetcher()


# ---- S3's metadata ---------------------------------------------------------------------------


def test_the_file_has_last_modified_as_mtime_and_its_metadata_recorded(
    s3: Any, bucket: str, root: Path, daemon_fetcher: Fetcher
) -> None:
    put(s3, bucket, "m.csv", b"a,b\n", ContentType="text/csv", Metadata={"owner": "ops"})
    head = s3.head_object(Bucket=bucket, Key="m.csv")
    seconds = int(head["LastModified"].timestamp())
    result = daemon_fetcher.fetch(created(bucket, "m.csv", size=4), cancel=go())
    assert result.outcome is FetchOutcome.DOWNLOADED
    assert (root / "m.csv").stat().st_mtime_ns == seconds * 10**9
    assert (result.meta.last_modified, result.meta.content_type) == (seconds, "text/csv")
    assert result.meta.metadata == (("owner", "ops"),)
    record = read_provenance(root / "m.csv")
    assert record is not None
    assert record.meta == result.meta
    again = daemon_fetcher.fetch(created(bucket, "m.csv", size=4), cancel=go())
    assert again.outcome is FetchOutcome.DUPLICATE
    assert again.meta == result.meta  # from the record: what on_download gets for a duplicate


def test_file_mtime_download_time_leaves_the_time_of_the_download(
    s3: Any, bucket: str, root: Path, make_fetcher: Callable[..., Fetcher]
) -> None:
    put(s3, bucket, "d.txt", b"now")
    seconds = int(s3.head_object(Bucket=bucket, Key="d.txt")["LastModified"].timestamp())
    before = time.time_ns() - 100_000_000  # file times come from the kernel's coarse clock
    fetcher = make_fetcher(file_mtime="download_time")
    assert fetcher.fetch(created(bucket, "d.txt"), cancel=go()).outcome is FetchOutcome.DOWNLOADED
    mtime = (root / "d.txt").stat().st_mtime_ns
    assert mtime >= before
    assert mtime != seconds * 10**9


def test_a_bad_file_mtime_is_refused(s3: Any, root: Path) -> None:
    with pytest.raises(ValueError, match="file_mtime"):
        Fetcher(s3=s3, root=root, file_mtime="now")


# ---- never older over newer, across processes --------------------------------------------------


def test_a_newer_event_waits_for_a_sync_inside_its_rename_then_replaces_it(
    s3: Any, bucket: str, root: Path, daemon_fetcher: Fetcher, racers: Callable[..., Racer]
) -> None:
    """(a), sync first: the sync process holds the path's lock between its look (nothing there)
    and its rename of version 1; the daemon's event for version 2 must wait for it (without the
    lock across processes it renames first, and the sync's older file lands over it), then
    judge the sync's file older and replace it."""
    v1, v2 = versions(s3, bucket, "r.txt", b"version 1", b"version 2!")
    racer = racers(root, fetch=listed(bucket, "r.txt", v1, 9), pause=True)
    racer.expect("inside")
    with ThreadPoolExecutor(max_workers=1) as pool:
        newer = pool.submit(daemon_fetcher.fetch, event_for(bucket, "r.txt", v2, 10), cancel=go())
        wait_until(
            lambda: waits_for_path_lock(os.getpid(), root) or newer.done(),
            what="the daemon's fetch to wait for the sync's lock",
        )
        assert not newer.done(), "the daemon renamed while the sync held the path"
        racer.release()
        assert racer.outcome() == "downloaded"
        assert newer.result(timeout=30).outcome is FetchOutcome.DOWNLOADED
    racer.finish()
    assert (root / "r.txt").read_bytes() == b"version 2!"
    record = read_provenance(root / "r.txt")
    assert record is not None
    assert record.version_id == v2["VersionId"]


def test_an_older_sync_waits_for_an_event_inside_its_rename_then_is_stale(
    s3: Any,
    bucket: str,
    root: Path,
    daemon_fetcher: Fetcher,
    racers: Callable[..., Racer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """(a), event first: the daemon holds the path's lock between its look and its rename of
    version 2; the sync's version 1 must wait (without the lock it renames into the empty
    path meanwhile), then find version 2 there and keep it (STALE)."""
    v1, v2 = versions(s3, bucket, "s.txt", b"version 1", b"version 2!")
    inside, resume = threading.Event(), threading.Event()
    move_to = StagedFile.move_to

    def paused(self: StagedFile, final: Path, obj: ObjectCreated) -> None:
        inside.set()
        assert resume.wait(timeout=60)
        move_to(self, final, obj)

    monkeypatch.setattr(StagedFile, "move_to", paused)
    with ThreadPoolExecutor(max_workers=1) as pool:
        newer: Future[FetchResult] = pool.submit(
            daemon_fetcher.fetch, event_for(bucket, "s.txt", v2, 10), cancel=go()
        )
        assert inside.wait(timeout=30)
        racer = racers(root, fetch=listed(bucket, "s.txt", v1, 9))
        wait_until(
            lambda: waits_for_path_lock(racer.pid, root) or racer.proc.poll() is not None,
            what="the sync to wait for the daemon's lock",
        )
        monkeypatch.setattr(StagedFile, "move_to", move_to)
        resume.set()
        assert newer.result(timeout=30).outcome is FetchOutcome.DOWNLOADED
    assert racer.outcome() == "stale"
    racer.finish()
    assert (root / "s.txt").read_bytes() == b"version 2!"


def test_an_event_for_an_older_version_after_a_sync_wrote_the_newer_is_stale(
    s3: Any, bucket: str, root: Path, daemon_fetcher: Fetcher, racers: Callable[..., Racer]
) -> None:
    """(b): the file a sync wrote has no sequencer; the late event of version 1 is judged by
    LastModified (or, in the same second, by asking S3), and its download discarded."""
    v1, v2 = versions(s3, bucket, "b.txt", b"version 1", b"version 2!")
    racer = racers(root, fetch=listed(bucket, "b.txt", v2, 10))
    assert racer.outcome() == "downloaded"
    racer.finish()
    late = daemon_fetcher.fetch(event_for(bucket, "b.txt", v1, 9), cancel=go())
    assert late.outcome is FetchOutcome.STALE
    assert (root / "b.txt").read_bytes() == b"version 2!"
    assert os.listdir(root / TEMP_DIR_NAME) == [PATH_LOCK_NAME]  # its temp file went


def test_a_sync_of_an_older_version_after_an_event_wrote_the_newer_is_stale(
    s3: Any, bucket: str, root: Path, daemon_fetcher: Fetcher, racers: Callable[..., Racer]
) -> None:
    """(c): a listing taken before version 2 was written still names version 1."""
    v1, v2 = versions(s3, bucket, "c.txt", b"version 1", b"version 2!")
    newer = daemon_fetcher.fetch(event_for(bucket, "c.txt", v2, 10), cancel=go())
    assert newer.outcome is FetchOutcome.DOWNLOADED
    racer = racers(root, fetch=listed(bucket, "c.txt", v1, 9))
    assert racer.outcome() == "stale"
    racer.finish()
    assert (root / "c.txt").read_bytes() == b"version 2!"


def test_a_sync_of_the_newer_version_replaces_an_older_event_file(
    s3: Any, bucket: str, root: Path, daemon_fetcher: Fetcher, racers: Callable[..., Racer]
) -> None:
    """No lost newer: the listing's newer version goes over the event's older file."""
    v1, v2 = versions(s3, bucket, "n.txt", b"version 1", b"version 2!")
    assert daemon_fetcher.fetch(event_for(bucket, "n.txt", v1, 9), cancel=go()).outcome is (
        FetchOutcome.DOWNLOADED
    )
    racer = racers(root, fetch=listed(bucket, "n.txt", v2, 10))
    assert racer.outcome() == "downloaded"
    racer.finish()
    assert (root / "n.txt").read_bytes() == b"version 2!"


def test_a_listing_never_replaces_a_file_s3sqsd_did_not_write_and_an_event_still_does(
    s3: Any, bucket: str, root: Path, daemon_fetcher: Fetcher, make_fetcher: Callable[..., Fetcher]
) -> None:
    put(s3, bucket, "mine.txt", b"from s3")
    (root / "mine.txt").write_bytes(b"the operator's own")
    sync = make_fetcher(role=FolderRole.SYNC)
    conflict = sync.fetch(created(bucket, "mine.txt", size=7), cancel=go())
    assert conflict.outcome is FetchOutcome.CONFLICT
    assert (root / "mine.txt").read_bytes() == b"the operator's own"
    as_event = sync.fetch(created(bucket, "mine.txt"), cancel=go(), origin=Origin.EVENT)
    assert as_event.outcome is FetchOutcome.DOWNLOADED  # what events always did
    assert (root / "mine.txt").read_bytes() == b"from s3"
    sync.close()
    assert not any(name.startswith(SYNC_DIR_PREFIX) for name in os.listdir(root / TEMP_DIR_NAME))


# ---- the temp folder's roles -------------------------------------------------------------------


def test_sweeps_keep_a_live_syncs_temp_folder_and_remove_a_dead_ones(
    s3: Any, root: Path, make_fetcher: Callable[..., Fetcher], racers: Callable[..., Racer]
) -> None:
    """(d): the daemon's start-up sweep, and a sync's, remove a sync sub-folder whose lock is
    free (its process is gone) and keep one whose process holds it, temp file included; a
    sync's sweep also keeps the daemon's own temp files."""
    temp = root / TEMP_DIR_NAME
    temp.mkdir(parents=True)
    live = racers(root)
    (live.work_dir / "in-flight.part").write_bytes(b"a live sync's download")
    dead = temp / f"{SYNC_DIR_PREFIX}999999.dead"
    dead.mkdir()
    (dead / "left.part").write_bytes(b"a killed sync's")
    (temp / "daemon-left.part").write_bytes(b"an earlier daemon's")

    other_sync = make_fetcher(role=FolderRole.SYNC)  # a second one: only the dead folder goes
    assert not dead.exists()
    assert (temp / "daemon-left.part").exists()
    assert (live.work_dir / "in-flight.part").exists()

    dead.mkdir()
    swept = Fetcher(s3=s3, root=root).prepare()  # the daemon's start-up
    assert swept == 2  # the dead sub-folder and the daemon's leftover
    assert not dead.exists()
    assert not (temp / "daemon-left.part").exists()
    assert (live.work_dir / "in-flight.part").read_bytes() == b"a live sync's download"
    assert (temp / PATH_LOCK_NAME).exists()
    live.finish()
    other_sync.close()
