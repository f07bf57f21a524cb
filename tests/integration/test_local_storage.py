"""The real daemon when the download folder cannot take a file: a full disk, a read-only
file system (at start and in the middle of a run), a file system unmounted under it, and a
file where a directory is needed (or the reverse).

A local failure is never the message's fault: the message goes back with a backoff, receiving
pauses, it never counts as an attempt and is never dead-lettered, and everything completes
once the condition is gone. The folders are small tmpfs and bind mounts made by the tests
(root only; every mount is removed at teardown, lazily as a last resort).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.daemon import (
    TEMP_DIR_NAME,
    DaemonProcess,
    TcpForwarder,
    attribute,
    closed_port,
    final_path,
    put_objects,
    receive_all,
    temp_files,
    via_port,
    visible_files,
    wait_queue_empty,
)
from tests.support.emulator import Emulator, Pipeline, wait_until
from tests.support.mounts import Mounts
from tests.support.notify import NotifySocket

pytestmark = pytest.mark.integration

MiB = 1 << 20
EX_CONFIG = 78


# ---- fixtures: a forwarder that counts ReceiveMessage calls -----------------------------------


class ReceiveCounter(TcpForwarder):
    """A relay to the emulator that notes when (wall clock) each ReceiveMessage arrives.

    Both protocols are recognised: the JSON one (``X-Amz-Target: AmazonSQS.ReceiveMessage``,
    boto3 >= 1.34) and the query one (``Action=ReceiveMessage``, Debian's boto3 1.26).
    """

    MARKERS = (b"AmazonSQS.ReceiveMessage", b"Action=ReceiveMessage")

    def __init__(self, target: tuple[str, int]) -> None:
        self.times: list[float] = []
        self._times_lock = threading.Lock()
        super().__init__(target)

    def receive_times(self) -> list[float]:
        with self._times_lock:
            return list(self.times)

    def _pipe(self, src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        try:
            to_upstream = dst.getpeername()[1] == self.target[1]
        except OSError:
            to_upstream = False
        if not to_upstream:
            super()._pipe(src, dst, rate)
            return
        keep = max(len(m) for m in self.MARKERS) - 1
        tail = b""
        try:
            while not self._stop.is_set():
                data = src.recv(65536)
                if not data:
                    break
                window = tail + data
                found = sum(window.count(m) for m in self.MARKERS)
                if found:
                    with self._times_lock:
                        self.times.extend([time.time()] * found)
                    tail = b""
                else:
                    tail = window[-keep:]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def _used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _log_time(record: dict[str, Any]) -> float:
    """A log record's ``time`` (``2026-03-01T12:00:00.123Z``) as seconds since the epoch."""
    stamp = datetime.datetime.strptime(str(record["time"]), "%Y-%m-%dT%H:%M:%S.%fZ")
    return stamp.replace(tzinfo=datetime.UTC).timestamp()


def _pages(size: int) -> int:
    return -(-size // 4096) * 4096


def _received_counts(daemon: DaemonProcess, message_ids: set[str]) -> list[int]:
    return [
        int(r["receive_count"])
        for r in daemon.events("message.received")
        if r["message_id"] in message_ids
    ]


def _pipeline_without_redrive(emulator: Emulator) -> Pipeline:
    """Bucket -> queue with no RedrivePolicy, and a separate queue for dead_letter_queue_url.

    The queue's own redrive policy counts every receive, local failures included (see
    test_local_failures_do_not_reach_the_redrive_policy), so the tests that retry past
    maxReceiveCount use the daemon's dead-lettering only.
    """
    pipeline = emulator.pipeline(redrive=False)
    dlq_url, _ = emulator.create_queue(emulator.unique("dlq"))
    return dataclasses.replace(pipeline, dlq_url=dlq_url)


def _storage_errors_for(daemon: DaemonProcess, key: str) -> list[dict[str, Any]]:
    return [r for r in daemon.events("local.storage_error") if f"/{key}" in r["error"]]


# ---- a full disk ----------------------------------------------------------------------------


def test_disk_full_keeps_messages_pauses_receiving_and_resumes(
    mounts: Mounts,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
) -> None:
    """An 8 MiB folder and 4 x 3 MiB + 6 small objects: two big files fit, the other two get
    ENOSPC. Those leave nothing at their final paths and nothing in the temp folder; they stay
    in hand (received once, retried in place past retry.max_attempts failures, never
    dead-lettered), and while they fail no ReceiveMessage is sent during the pause the daemon
    logged. After the tmpfs grows to 64 MiB everything completes with the right bytes."""
    folder = mounts.tmpfs("downloads", size="8m")
    pipeline = _pipeline_without_redrive(emulator)
    assert pipeline.dlq_url is not None
    target = urlsplit(emulator.endpoint)
    assert target.hostname is not None
    assert target.port is not None
    max_attempts = 2
    counter = ReceiveCounter((target.hostname, target.port))
    with counter:
        config = make_config(
            pipeline,
            download_folder=str(folder),
            dead_letter_queue_url=pipeline.dlq_url,
            sqs_endpoint_url=counter.url,
            sqs_queue_url=via_port(pipeline.queue_url, counter.port),
            # One download at a time: exactly two big files fit, whatever the order.
            workers=1,
            log_level="debug",
            # Pauses of 2-6 s: long enough to see that no receive happens during them.
            retry={"max_attempts": max_attempts, "base_delay_seconds": 4, "max_delay_seconds": 6},
        )
        daemon = spawn_daemon(config)
        daemon.wait_for_event("daemon.ready", timeout=30)
        big = {f"big/{i}.bin": os.urandom(3 * MiB) for i in range(4)}
        small = {f"small/{i}.txt": os.urandom(4096) for i in range(6)}
        s3 = emulator.client("s3")
        put_objects(s3, pipeline.bucket, big)
        put_objects(s3, pipeline.bucket, small)

        def downloaded() -> set[str]:
            return {str(r["key"]) for r in daemon.events("object.downloaded")}

        def settled() -> bool:
            waiting = set(big) - downloaded()
            return len(waiting) == 2 and all(_storage_errors_for(daemon, k) for k in waiting)

        daemon.wait_for(settled, timeout=60, what="two big files in place, two refused")
        stuck = sorted(set(big) - downloaded())
        assert len(stuck) == 2
        stuck_ids = {
            str(r["message_id"]) for key in stuck for r in _storage_errors_for(daemon, key)
        }
        assert len(stuck_ids) == 2, stuck_ids
        # Failed more often than retry.max_attempts, retried from the lease, never received
        # again (so a queue redrive policy cannot count them), still not dead-lettered.
        daemon.wait_for(
            lambda: all(len(_storage_errors_for(daemon, k)) > max_attempts + 1 for k in stuck),
            timeout=90,
            what=f"each stuck message failing more than {max_attempts + 1} times",
        )
        assert set(_received_counts(daemon, stuck_ids)) == {1}

        # The state while the disk is full.
        for key in stuck:
            assert not final_path(folder, key).exists()
        on_disk = visible_files(folder)
        done = downloaded()
        assert on_disk == {k: v for k, v in {**big, **small}.items() if k in done}
        wait_until(lambda: temp_files(folder) == [], timeout=10, what="an empty temp folder")
        # No space held by a deleted temp file that is still open.
        expected_used = sum(_pages(len(body)) for body in on_disk.values())
        wait_until(
            lambda: _used_bytes(folder) <= expected_used + 256 * 1024,
            timeout=10,
            what=f"used space back to {expected_used} bytes (now {_used_bytes(folder)})",
        )
        visible, in_flight = emulator.queue_counts(pipeline.queue_url)
        assert visible + in_flight == len(big) + len(small) - len(done)
        assert emulator.queue_counts(pipeline.dlq_url) == (0, 0)
        assert daemon.events("message.dead_lettered") == []
        assert daemon.events("message.left_for_redrive") == []
        assert daemon.events("message.retry") == []  # not counted as an attempt
        deleted = {str(r["message_id"]) for r in daemon.events("message.deleted")}
        assert not deleted & stuck_ids
        errors = daemon.events("local.storage_error")
        for record in errors:
            assert record["level"] == "error"
            assert record["reason"] == "local_storage"
            assert record["message_id"] in stuck_ids
            assert "No space left on device" in record["error"], record
            assert float(record["delay_seconds"]) >= 1.5

        # Receiving paused: no ReceiveMessage starts inside the pause the daemon logged. Times
        # are the daemon's own (the log record's, taken right after the pause is set) and the
        # relay's, both wall clock. A request is held against the latest error at least GRACE
        # before it (the receiver may have checked the pause just before that error); MARGIN
        # covers rounding (delay_seconds has one decimal).
        grace, margin = 1.5, 0.5
        pauses = sorted((_log_time(r), float(r["delay_seconds"])) for r in errors)
        during, after = [], 0
        for at in counter.receive_times():
            earlier = [p for p in pauses if p[0] <= at - grace]
            if not earlier:
                continue
            start, delay = earlier[-1]
            if at < start + delay - margin:
                during.append(round(at - start, 2))
            else:
                after += 1
        assert during == [], f"ReceiveMessage sent {during} s into pauses of {pauses}"
        # (``after`` may stay 0: with one download thread the two stuck messages fill the
        # daemon's capacity, so it receives nothing until they are placed; the end of this
        # test shows that receiving resumes once space comes back.)
        del after
        # An unpaused receiver polls about once a second (wait_time_seconds 1): these windows
        # would each have held at least one request.
        assert sum(1 for _, delay in pauses if delay - margin - grace >= 1.0) >= 3, pauses

        # Space comes back: the stuck files complete, with the right bytes.
        mounts.remount(folder, "size=64m")
        for key in stuck:
            daemon.wait_for_event("object.downloaded", key=key, timeout=60)
        wait_queue_empty(emulator, pipeline.queue_url, timeout=30)
        assert visible_files(folder) == {**big, **small}
        assert temp_files(folder) == []
        assert emulator.queue_counts(pipeline.dlq_url) == (0, 0)
        assert daemon.events("message.dead_lettered") == []
        assert daemon.running()
        assert daemon.stop() == 0


def test_local_failures_do_not_reach_the_redrive_policy(
    mounts: Mounts,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
) -> None:
    """The README's setup without dead_letter_queue_url: the queue's own RedrivePolicy
    (maxReceiveCount 3 here) is the dead-letter path. A local failure "never counts as an
    attempt and never dead-letters", so a disk that stays full for more than three backoff
    rounds must leave the message in the source queue, not in the redrive DLQ."""
    folder = mounts.tmpfs("downloads", size="1m")
    pipeline = emulator.pipeline(max_receive_count=3)
    assert pipeline.dlq_url is not None
    daemon = spawn_daemon(
        make_config(
            pipeline,
            download_folder=str(folder),
            workers=1,
            retry={"max_attempts": 5, "base_delay_seconds": 1, "max_delay_seconds": 2},
        )
    )
    key = "too/big.bin"
    body = os.urandom(2 * MiB)
    put_objects(emulator.client("s3"), pipeline.bucket, {key: body})

    def redriven_or_retried() -> bool:
        dead = sum(emulator.queue_counts(pipeline.dlq_url or ""))
        return dead > 0 or len(daemon.events("local.storage_error")) > 4

    daemon.wait_for(redriven_or_retried, timeout=60, what="a fifth local failure or a redrive")
    assert emulator.queue_counts(pipeline.dlq_url) == (0, 0), (
        f"moved to the redrive DLQ after {len(daemon.events('local.storage_error'))} local failures"
    )
    mounts.remount(folder, "size=8m")
    daemon.wait_for_event("object.downloaded", key=key, timeout=30)
    assert final_path(folder, key).read_bytes() == body
    assert daemon.stop() == 0


# ---- min_free_bytes: a floor under the free space ------------------------------------------


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_below_min_free_bytes_messages_stay_in_hand_until_space_comes_back(
    mounts: Mounts,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
) -> None:
    """A 16 MiB tmpfs, 10 MiB of it taken by another file, and min_free_bytes 8 MiB: the
    announced objects are not downloaded and their messages stay in hand (received once,
    never deleted or dead-lettered, nothing written), with one warning, the paused gauge and
    the STATUS line saying so. Once the other file is gone, everything is downloaded, with
    one info line. (The bandwidth limit, high here, is on: the downloads go through it.)"""
    pytest.importorskip("prometheus_client")
    disk = mounts.tmpfs("disk", size="16m")
    folder = disk / "downloads"
    filler = disk / "other-service.bin"
    filler.write_bytes(os.urandom(10 * MiB))
    pipeline = _pipeline_without_redrive(emulator)
    assert pipeline.dlq_url is not None
    port = closed_port()
    daemon = spawn_daemon(
        make_config(
            pipeline,
            download_folder=str(folder),
            dead_letter_queue_url=pipeline.dlq_url,
            min_free_bytes=8 * MiB,
            max_bandwidth_bytes_per_second=1 << 30,
            workers=2,
            log_level="debug",
            metrics={"listen": f"127.0.0.1:{port}"},
        ),
        notify=notify_socket,
    )
    daemon.wait_for_event("daemon.ready", timeout=30)
    objects = {"a.txt": b"small", "b/c.bin": os.urandom(100_000), "d.bin": os.urandom(MiB)}
    put_objects(emulator.client("s3"), pipeline.bucket, objects)

    def waits(key: str) -> int:
        return len(
            [r for r in daemon.events("local.waiting_for_space") if f"/{key} (" in r["message"]]
        )

    daemon.wait_for_event("disk.low_space", timeout=30)
    waiting = [key for key in objects if waits(key)]
    daemon.wait_for(
        lambda: all(waits(key) >= 3 for key in waiting),
        timeout=60,
        what="the waiting downloads tried again, twice",
    )
    (low,) = daemon.events("disk.low_space")
    assert low["level"] == "warning"
    assert low["path"] == str(folder)
    assert low["min_free_bytes"] == 8 * MiB
    assert "min_free_bytes" in low["message"]
    wait_until(
        lambda: any("waiting for disk space" in v for v in notify_socket.values("STATUS")),
        timeout=10,
        what="STATUS saying why",
    )
    text = wait_until(
        lambda: (t := _scrape(port)) and 's3sqsd_paused{reason="disk"} 1.0' in t and t,
        timeout=10,
        what="the paused gauge",
    )
    assert f's3sqsd_disk_free_bytes{{folder="{folder}"}}' in text
    # Kept in hand: nothing downloaded or written, received once, nothing settled, no
    # failure counted and no error logged per try.
    assert daemon.events("object.downloaded") == []
    assert visible_files(folder) == {}
    assert temp_files(folder) == []
    waiting_ids = {str(r["message_id"]) for r in daemon.events("local.waiting_for_space")}
    assert set(_received_counts(daemon, waiting_ids)) == {1}
    assert daemon.events("message.deleted") == []
    assert daemon.events("message.dead_lettered") == []
    assert daemon.events("local.storage_error") == []
    assert "s3sqsd_messages_failed_total{" not in text
    assert sum(emulator.queue_counts(pipeline.queue_url)) == len(objects)
    assert emulator.queue_counts(pipeline.dlq_url) == (0, 0)

    filler.unlink()  # the other service frees its space
    for key in objects:
        daemon.wait_for_event("object.downloaded", key=key, timeout=60)
    wait_queue_empty(emulator, pipeline.queue_url, timeout=30)
    assert visible_files(folder) == objects
    recovered = daemon.wait_for_event("disk.space_recovered", timeout=10)
    assert recovered["level"] == "info"
    assert len(daemon.events("disk.space_recovered")) == 1
    assert len(daemon.events("disk.low_space")) == 1
    wait_until(
        lambda: 's3sqsd_paused{reason="disk"} 0.0' in _scrape(port),
        timeout=10,
        what="the paused gauge back to 0",
    )
    assert emulator.queue_counts(pipeline.dlq_url) == (0, 0)
    assert daemon.stop() == 0


# ---- read-only file systems -----------------------------------------------------------------


@pytest.mark.parametrize(
    "case", ["read-only-tmpfs", "read-only-empty-temp", "read-only-with-leftovers", "missing-below"]
)
def test_unwritable_folder_at_start_is_one_error_and_exit_78(
    case: str,
    mounts: Mounts,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    """The folder is on a read-only mount (root ignores mode bits, so a mount it is): the daemon
    exits 78 (EX_CONFIG, no restart loop) with one error line that names the folder."""
    leftover = None
    if case == "read-only-tmpfs":  # the temp folder cannot be made
        folder = mounts.tmpfs("ro", size="1m", read_only=True)
    elif case == "read-only-empty-temp":  # it exists, the write probe fails
        (tmp_path / "source" / TEMP_DIR_NAME).mkdir(parents=True)
        folder = mounts.bind(tmp_path / "source", "ro-bind", read_only=True)
    elif case == "read-only-with-leftovers":  # the start-up sweep fails
        leftover = tmp_path / "source" / TEMP_DIR_NAME / "0123456789abcdef01234567.part"
        leftover.parent.mkdir(parents=True)
        leftover.write_bytes(b"left by a kill -9")
        folder = mounts.bind(tmp_path / "source", "ro-bind", read_only=True)
    else:  # the folder itself cannot be made
        folder = mounts.tmpfs("ro", size="1m", read_only=True) / "sub" / "downloads"
    pipeline = emulator.pipeline()
    daemon = spawn_daemon(make_config(pipeline, download_folder=str(folder)))
    assert daemon.wait_exit(timeout=30) == EX_CONFIG

    errors = [r for r in daemon.events() if r.get("level") in ("error", "critical")]
    assert len(errors) == 1, daemon.describe()
    (error,) = errors
    assert error["event"] == "daemon.folder_unusable"
    assert f"download_folder {folder} is not writable" in error["message"]
    assert "Read-only file system" in error["message"]
    assert "ReadWritePaths=" in error["message"]
    assert daemon.events("daemon.ready") == []
    assert daemon.non_json == []
    assert "Traceback" not in daemon.stderr
    if leftover is not None:
        assert (folder / TEMP_DIR_NAME / leftover.name).read_bytes() == b"left by a kill -9"


def test_folder_turning_read_only_mid_run_keeps_messages_until_writable(
    mounts: Mounts,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
) -> None:
    """remount,ro while running: every object gets its own local.storage_error, no message is
    dead-lettered or received again even past retry.max_attempts failures; remount,rw: all
    complete."""
    folder = mounts.tmpfs("downloads", size="16m")
    pipeline = _pipeline_without_redrive(emulator)
    assert pipeline.dlq_url is not None
    max_attempts = 2
    daemon = spawn_daemon(
        make_config(
            pipeline,
            download_folder=str(folder),
            dead_letter_queue_url=pipeline.dlq_url,
            workers=2,
            log_level="debug",
            retry={"max_attempts": max_attempts, "base_delay_seconds": 1, "max_delay_seconds": 2},
        )
    )
    s3 = emulator.client("s3")
    put_objects(s3, pipeline.bucket, {"before/ok.txt": b"written while writable"})
    daemon.wait_for_event("object.downloaded", key="before/ok.txt", timeout=30)

    mounts.remount(folder, "ro")
    later = {"a.txt": b"first", "b/c.txt": b"second", "d/e/f.bin": os.urandom(100_000)}
    put_objects(s3, pipeline.bucket, later)
    daemon.wait_for(
        lambda: all(_storage_errors_for(daemon, key) for key in later),
        timeout=60,
        what="a local.storage_error for every object",
    )
    failed_ids = {str(r["message_id"]) for r in daemon.events("local.storage_error")}
    assert len(failed_ids) == len(later)
    daemon.wait_for(
        lambda: all(len(_storage_errors_for(daemon, k)) > max_attempts + 1 for k in later),
        timeout=60,
        what=f"every message failing more than {max_attempts + 1} times",
    )
    assert set(_received_counts(daemon, failed_ids)) == {1}
    for key in later:
        for record in _storage_errors_for(daemon, key):
            assert record["level"] == "error"
            assert record["reason"] == "local_storage"
            assert "Read-only file system" in record["error"], record
    assert emulator.queue_counts(pipeline.dlq_url) == (0, 0)
    assert daemon.events("message.dead_lettered") == []
    assert daemon.events("message.retry") == []
    assert sum(emulator.queue_counts(pipeline.queue_url)) == len(later)
    assert visible_files(folder) == {"before/ok.txt": b"written while writable"}

    mounts.remount(folder, "rw")
    for key in later:
        daemon.wait_for_event("object.downloaded", key=key, timeout=60)
    wait_queue_empty(emulator, pipeline.queue_url, timeout=30)
    assert visible_files(folder) == {"before/ok.txt": b"written while writable", **later}
    assert temp_files(folder) == []
    assert emulator.queue_counts(pipeline.dlq_url) == (0, 0)
    assert daemon.stop() == 0


def test_folder_unmounted_mid_run_writes_nothing_to_the_mount_point(
    mounts: Mounts,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    """The download folder's file system goes away (a disk unmounted under the daemon): the
    bare mount point is left untouched (no directories, no files, no temp folder re-created
    there), the messages wait as local errors, and once the same file system is back they
    complete on it. The daemon holds the folder (its lock), so a plain umount is refused as
    busy; a lazy one takes it away regardless, as a failing disk would."""
    disk = tmp_path / "disk"
    disk.mkdir()
    folder = mounts.bind(disk, "downloads")
    pipeline = _pipeline_without_redrive(emulator)
    daemon = spawn_daemon(
        make_config(
            pipeline,
            download_folder=str(folder),
            dead_letter_queue_url=pipeline.dlq_url,
            retry={"max_attempts": 2, "base_delay_seconds": 1, "max_delay_seconds": 2},
        )
    )
    s3 = emulator.client("s3")
    put_objects(s3, pipeline.bucket, {"first.txt": b"on the disk"})
    daemon.wait_for_event("object.downloaded", key="first.txt", timeout=30)

    assert mounts.busy(folder)
    mounts.unmount(folder, lazy=True)
    assert list(folder.iterdir()) == []
    later = {"deep/er/second.txt": b"waits for the disk", "third.txt": b"so does this"}
    put_objects(s3, pipeline.bucket, later)
    daemon.wait_for(
        lambda: all(_storage_errors_for(daemon, key) for key in later),
        timeout=60,
        what="a local.storage_error for every object",
    )
    assert list(folder.iterdir()) == [], "written to the bare mount point"
    assert daemon.events("message.dead_lettered") == []

    mounts.bind(disk, "downloads")
    for key in later:
        daemon.wait_for_event("object.downloaded", key=key, timeout=60)
    wait_queue_empty(emulator, pipeline.queue_url, timeout=30)
    assert visible_files(disk) == {"first.txt": b"on the disk", **later}
    assert temp_files(disk) == []
    assert emulator.queue_counts(pipeline.dlq_url or "") == (0, 0)
    assert daemon.stop() == 0


# ---- a file where a directory is needed, and the reverse ------------------------------------


@pytest.mark.parametrize(
    ("first", "second", "blocker"),
    [
        ("a", "a/b", "a"),  # a file where a directory is needed
        ("a", "a/b/c", "a"),
        ("d/x", "d", "d"),  # a directory where the file should go
        ("d/x/y", "d/x", "d/x"),
    ],
)
def test_file_and_directory_sharing_a_name_is_a_path_conflict(
    first: str,
    second: str,
    blocker: str,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """S3 has keys ``a`` and ``a/b`` side by side; a file system cannot. The second one is
    refused with one clear error naming both, dead-lettered as path_conflict (permanent), and
    the first file is left as it was."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    daemon = spawn_daemon(make_config(pipeline, dead_letter_queue_url=pipeline.dlq_url))
    s3 = emulator.client("s3")
    put_objects(s3, pipeline.bucket, {first: b"first one wins"})
    daemon.wait_for_event("object.downloaded", key=first, timeout=30)
    put_objects(s3, pipeline.bucket, {second: b"second one is refused"})
    dead = daemon.wait_for_event("message.dead_lettered", timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)

    assert dead["reason"] == "path_conflict"
    assert f"/{second}" in dead["error"]
    assert str(final_path(download_folder, blocker)) in dead["error"]
    (message,) = receive_all(emulator.client("sqs"), pipeline.dlq_url, count=1)
    assert attribute(message, "s3sqsd.reason") == "path_conflict"
    assert second in (attribute(message, "s3sqsd.error") or "")
    assert visible_files(download_folder) == {first: b"first one wins"}
    assert temp_files(download_folder) == []
    assert daemon.events("local.storage_error") == []
    errors = [r for r in daemon.events() if r.get("level") == "error"]
    assert errors == [dead]
    assert daemon.running()
    assert daemon.stop() == 0


def test_second_daemon_on_the_same_folder_exits_78_and_the_first_keeps_working(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """A second daemon pointed at a folder in use (a copied unit, a test run on a server) is
    refused with one error line and exit 78; the first goes on downloading."""
    pipeline = emulator.pipeline()
    first = spawn_daemon(make_config(pipeline))
    first.wait_for_event("daemon.ready", timeout=30)
    second = spawn_daemon(make_config(emulator.pipeline()))
    assert second.wait_exit(timeout=30) == EX_CONFIG
    errors = [r for r in second.events() if r.get("level") in ("error", "critical")]
    assert [e["event"] for e in errors] == ["daemon.folder_unusable"], second.describe()
    assert f"download_folder {download_folder} is in use by another s3sqsd" in errors[0]["message"]
    put_objects(emulator.client("s3"), pipeline.bucket, {"after.txt": b"still working"})
    first.wait_for_event("object.downloaded", timeout=30)
    assert visible_files(download_folder) == {"after.txt": b"still working"}
    assert first.stop() == 0
