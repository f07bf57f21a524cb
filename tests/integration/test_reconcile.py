"""Reconcile in the real daemon against the emulator: objects that never had an event reach the
folder, objects whose events were purged from the queue reach it on SIGUSR1, and each is said
(``reconcile.missing``) and counted, while what events bring is not called missing."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.daemon import (
    DaemonProcess,
    put_objects,
    run_cli,
    temp_files,
    visible_files,
    wait_queue_empty,
    write_config,
)
from tests.support.emulator import Emulator


def test_objects_there_before_the_first_start_arrive_by_the_first_pass(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    pipeline = emulator.pipeline()
    objects = {f"old/{n}.txt": f"before the daemon {n}".encode() for n in range(5)}
    put_objects(emulator.client("s3"), pipeline.bucket, objects)
    emulator.client("sqs").purge_queue(QueueUrl=pipeline.queue_url)  # their events: lost
    daemon = spawn_daemon(
        make_config(pipeline, reconcile={"interval_seconds": 3600, "min_age_seconds": 0})
    )
    finished = daemon.wait_for_event("reconcile.finished", timeout=60)
    assert visible_files(download_folder) == objects
    assert finished["missing"] == 5
    assert finished["listed"] == 5
    missing = {event["url"] for event in daemon.events("reconcile.missing")}
    assert missing == {f"s3://{pipeline.bucket}/{key}" for key in objects}
    assert all(e["level"] == "warning" for e in daemon.events("reconcile.missing"))


def test_sigusr1_runs_a_pass_for_objects_whose_events_never_came(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    pipeline = emulator.pipeline()
    daemon = spawn_daemon(
        make_config(pipeline, reconcile={"interval_seconds": 3600, "min_age_seconds": 0})
    )
    daemon.wait_for_event("reconcile.finished", timeout=60)  # the pass at start: nothing there
    s3 = emulator.client("s3")
    put_objects(s3, pipeline.bucket, {"with-event.txt": b"an event brings me"})
    daemon.wait_for(
        lambda: "with-event.txt" in visible_files(download_folder),
        timeout=30,
        what="the file whose event arrived",
    )
    wait_queue_empty(emulator, pipeline.queue_url, timeout=30)
    # The notification is removed, as a misconfigured one would be: these get no event.
    s3.put_bucket_notification_configuration(Bucket=pipeline.bucket, NotificationConfiguration={})
    lost = {f"lost/{n}.bin": bytes([n]) * 1000 for n in range(3)}
    put_objects(s3, pipeline.bucket, lost)
    daemon.signal(signal.SIGUSR1)
    second = daemon.wait_for_event("reconcile.finished", count=2, timeout=60)
    assert (second["listed"], second["missing"], second["skipped"]) == (4, 3, 1)
    assert visible_files(download_folder) == {"with-event.txt": b"an event brings me", **lost}
    missing = {event["url"] for event in daemon.events("reconcile.missing")}
    assert missing == {f"s3://{pipeline.bucket}/{key}" for key in lost}


def test_unconfigured_sigusr1_still_passes_and_leaves_fresh_objects_to_their_events(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    pipeline = emulator.pipeline()
    s3 = emulator.client("s3")
    s3.put_bucket_notification_configuration(Bucket=pipeline.bucket, NotificationConfiguration={})
    put_objects(s3, pipeline.bucket, {"fresh.txt": b"uploaded a moment ago"})
    daemon = spawn_daemon(make_config(pipeline))
    daemon.wait_for_event("daemon.ready", timeout=30)
    assert daemon.events("reconcile.started") == []  # not configured: no pass of its own
    daemon.signal(signal.SIGUSR1)
    finished = daemon.wait_for_event("reconcile.finished", timeout=60)
    # min_age_seconds (300 s by default) leaves an object this new to its event.
    assert (finished["listed"], finished["missing"], finished["skipped"]) == (1, 0, 1)
    assert visible_files(download_folder) == {}


def test_a_pass_calls_nothing_missing_when_events_brought_everything(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    pipeline = emulator.pipeline()
    daemon = spawn_daemon(make_config(pipeline, reconcile={"min_age_seconds": 0}))
    daemon.wait_for_event("reconcile.finished", timeout=60)  # the first pass: nothing there
    objects = {f"evented/{n}.txt": f"event {n}".encode() for n in range(4)}
    put_objects(emulator.client("s3"), pipeline.bucket, objects)
    daemon.wait_for(
        lambda: visible_files(download_folder) == objects, timeout=30, what="the evented files"
    )
    wait_queue_empty(emulator, pipeline.queue_url, timeout=30)
    daemon.signal(signal.SIGUSR1)
    second = daemon.wait_for_event("reconcile.finished", count=2, timeout=60)
    assert (second["listed"], second["missing"], second["skipped"]) == (4, 0, 4)
    assert daemon.events("reconcile.missing") == []


def test_sync_runs_beside_the_daemon_on_its_folder(
    tmp_path: Path,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """`s3sqsd sync` while the daemon runs on the same folder: it backfills what had no event,
    leaves the daemon's files alone, and the daemon goes on receiving."""
    pipeline = emulator.pipeline()
    s3 = emulator.client("s3")
    before = {f"before/{n}.txt": f"from before the install {n}".encode() for n in range(4)}
    put_objects(s3, pipeline.bucket, before)
    emulator.client("sqs").purge_queue(QueueUrl=pipeline.queue_url)
    config = make_config(pipeline)
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready", timeout=30)
    put_objects(s3, pipeline.bucket, {"evented.txt": b"an event brings me"})
    daemon.wait_for(
        lambda: "evented.txt" in visible_files(download_folder), timeout=30, what="evented.txt"
    )
    done = run_cli(["sync", "--config", str(write_config(tmp_path / "sync.yaml", config))])
    assert done.returncode == 0, done.stderr
    summary = [json.loads(line) for line in done.stderr.splitlines() if '"sync.summary"' in line]
    assert (summary[-1]["downloaded"], summary[-1]["skipped"]) == (4, 1)
    assert visible_files(download_folder) == {**before, "evented.txt": b"an event brings me"}
    assert temp_files(download_folder) == []
    put_objects(s3, pipeline.bucket, {"after.txt": b"after the sync"})
    daemon.wait_for(
        lambda: "after.txt" in visible_files(download_folder), timeout=30, what="after.txt"
    )
    assert daemon.returncode is None
