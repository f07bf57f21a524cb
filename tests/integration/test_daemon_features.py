"""Operating features through the real daemon: routes, on_download, on_remove, metrics."""

from __future__ import annotations

import datetime
import signal
import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import (
    DaemonProcess,
    attribute,
    put_objects,
    receive_all,
    s3_notification_body,
    temp_files,
    wait_queue_empty,
    write_config,
)
from tests.support.emulator import Emulator, Pipeline, wait_until
from tests.support.notify import NotifySocket

pytestmark = pytest.mark.integration

Config = Callable[..., dict[str, Any]]
Spawn = Callable[..., DaemonProcess]


def bare_pipeline(emulator: Emulator, *, dlq: bool = False) -> Pipeline:
    """A bucket and a queue with no bucket notification: the test sends the events itself."""
    bucket = emulator.unique("bucket")
    emulator.client("s3").create_bucket(Bucket=bucket)
    dlq_url = emulator.create_queue(emulator.unique("dlq"))[0] if dlq else None
    queue_url, queue_arn = emulator.create_queue(emulator.unique("queue"))
    return Pipeline(
        bucket=bucket,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        topic_arn=None,
        via="none",
    )


def script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


def test_routes_place_objects_per_rule(
    emulator: Emulator, make_config: Config, spawn_daemon: Spawn, tmp_path: Path
) -> None:
    """First matching rule wins; a stripped prefix; an unrouted object is acknowledged."""
    pipeline = emulator.pipeline(via="direct")
    reports, images = tmp_path / "reports", tmp_path / "images"
    config = make_config(
        pipeline,
        download_folder=None,
        routes=[
            {"prefix": "reports/", "strip_prefix": True, "download_folder": str(reports)},
            {"glob": "*.jpg", "download_folder": str(images)},
        ],
    )
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready")
    put_objects(
        emulator.client("s3"),
        pipeline.bucket,
        {"reports/2026/q1.csv": b"a,b\n", "img/cat.jpg": b"\xff\xd8jpeg", "notes.txt": b"n"},
    )
    wait_queue_empty(emulator, pipeline.queue_url)
    assert (reports / "2026" / "q1.csv").read_bytes() == b"a,b\n"
    assert (images / "img" / "cat.jpg").read_bytes() == b"\xff\xd8jpeg"
    assert not (reports / "reports").exists()
    assert daemon.events("object.unrouted", key="notes.txt")
    assert not any(p.name == "notes.txt" for p in tmp_path.rglob("*"))
    assert temp_files(reports) == []
    assert temp_files(images) == []


def test_on_download_runs_per_file_and_gates_the_delete(
    emulator: Emulator, make_config: Config, spawn_daemon: Spawn, tmp_path: Path
) -> None:
    """Exit 0: message deleted, the command saw the file's facts; non-zero: retried, then
    dead-lettered, while the file stays in place."""
    pipeline = emulator.pipeline(via="direct")
    facts = tmp_path / "facts"
    hook = script(
        tmp_path / "hook.sh",
        f'echo "$S3SQSD_KEY|$S3SQSD_PATH|$S3SQSD_SIZE|$S3SQSD_BUCKET" >> {facts}\n'
        'echo "processed $S3SQSD_KEY"\n'
        'case "$S3SQSD_KEY" in bad*) exit 4;; esac\n',
    )
    config = make_config(
        pipeline,
        dead_letter_queue_url=pipeline.dlq_url,
        on_download={"command": [hook], "timeout_seconds": 10},
    )
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready")
    put_objects(emulator.client("s3"), pipeline.bucket, {"good.txt": b"good", "bad.txt": b"bad"})
    wait_queue_empty(emulator, pipeline.queue_url, timeout=40)
    lines = facts.read_text().splitlines()
    good = [line for line in lines if line.startswith("good.txt|")]
    assert len(good) == 1
    assert good[0].endswith("|4|" + pipeline.bucket)
    # bad.txt: the command ran once per attempt (max_attempts 3), then the message went away.
    assert len([line for line in lines if line.startswith("bad.txt|")]) == 3
    assert daemon.events("command.output", key="good.txt", message="processed good.txt")
    assert daemon.events("message.retry", reason="command_failed")
    [dead] = receive_all(emulator.client("sqs"), pipeline.dlq_url or "", count=1)
    assert attribute(dead, "s3sqsd.reason") == "too_many_attempts"
    assert "exited with status 4" in (attribute(dead, "s3sqsd.error") or "")


def test_on_download_sees_s3_metadata_and_the_file_has_last_modified(
    emulator: Emulator,
    make_config: Config,
    spawn_daemon: Spawn,
    download_folder: Path,
    tmp_path: Path,
) -> None:
    """The command gets LastModified (ISO 8601 UTC), the content type and each x-amz-meta-*
    entry under a sanitised name; the file's mtime is the object's LastModified."""
    pipeline = emulator.pipeline(via="direct")
    facts = tmp_path / "facts"
    hook = script(
        tmp_path / "hook.sh",
        f'echo "$S3SQSD_LAST_MODIFIED|$S3SQSD_CONTENT_TYPE|$S3SQSD_META_OWNER_ID'
        f'|$S3SQSD_META_BATCH_NO" >> {facts}\n',
    )
    config = make_config(pipeline, on_download={"command": [hook], "timeout_seconds": 10})
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready")
    s3 = emulator.client("s3")
    s3.put_object(
        Bucket=pipeline.bucket,
        Key="meta.csv",
        Body=b"a,b\n",
        ContentType="text/csv",
        Metadata={"owner-id": "42", "batch.no": "7"},
    )
    wait_queue_empty(emulator, pipeline.queue_url, timeout=40)
    head = s3.head_object(Bucket=pipeline.bucket, Key="meta.csv")
    seconds = int(head["LastModified"].timestamp())
    iso = head["LastModified"].astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert facts.read_text().splitlines() == [f"{iso}|text/csv|42|7"]
    assert (download_folder / "meta.csv").stat().st_mtime == seconds


def test_a_hanging_command_is_stopped_at_its_timeout(
    emulator: Emulator, make_config: Config, spawn_daemon: Spawn, tmp_path: Path
) -> None:
    pipeline = emulator.pipeline(via="direct")
    hook = script(tmp_path / "hang.sh", "sleep 60\n")
    config = make_config(pipeline, on_download={"command": [hook], "timeout_seconds": 1})
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready")
    put_objects(emulator.client("s3"), pipeline.bucket, {"slow.txt": b"x"})
    retry = daemon.wait_for_event("message.retry", timeout=20)
    assert "timed out after 1 s" in retry["error"]


def test_on_remove_delete_removes_only_provably_older_files(
    emulator: Emulator,
    make_config: Config,
    spawn_daemon: Spawn,
    download_folder: Path,
) -> None:
    pipeline = bare_pipeline(emulator)
    s3, sqs = emulator.client("s3"), emulator.client("sqs")
    put_objects(s3, pipeline.bucket, {"doc.txt": b"doc", "keep.txt": b"keep"})
    config = make_config(pipeline, on_remove="delete")
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready")

    def send(key: str, event_name: str, sequencer: str) -> None:
        sqs.send_message(
            QueueUrl=pipeline.queue_url,
            MessageBody=s3_notification_body(
                pipeline.bucket, key, size=len(key), event_name=event_name, sequencer=sequencer
            ),
        )

    send("doc.txt", "ObjectCreated:Put", "0A")
    send("keep.txt", "ObjectCreated:Put", "0A")
    wait_until(lambda: len(daemon.events("object.downloaded")) == 2, timeout=20, what="downloads")
    send("keep.txt", "ObjectRemoved:Delete", "09")  # older than the file: kept
    send("doc.txt", "ObjectRemoved:Delete", "0B")  # newer: removed
    send("other.txt", "ObjectRemoved:Delete", "0B")  # no such file
    wait_queue_empty(emulator, pipeline.queue_url)
    assert not (download_folder / "doc.txt").exists()
    assert (download_folder / "keep.txt").read_bytes() == b"keep"
    assert daemon.events("object.removed", key="doc.txt")
    assert daemon.events("object.kept", key="keep.txt", outcome="kept_newer")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_metrics_endpoint_and_status_share_the_counters(
    emulator: Emulator,
    make_config: Config,
    spawn_daemon: Spawn,
    notify_socket: NotifySocket,
) -> None:
    pytest.importorskip("prometheus_client")
    pipeline = emulator.pipeline(via="direct")
    port = free_port()
    config = make_config(pipeline, metrics={"listen": f"127.0.0.1:{port}"})
    daemon = spawn_daemon(config, notify=notify_socket)
    daemon.wait_for_event("metrics.listening")
    put_objects(emulator.client("s3"), pipeline.bucket, {"a": b"12345", "b/c": b"678"})
    wait_queue_empty(emulator, pipeline.queue_url)

    def scrape() -> str:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return str(response.read().decode())

    text = wait_until(
        lambda: (t := scrape()) and "s3sqsd_messages_deleted_total 2.0" in t and t,
        timeout=10,
        what="deletes counted",
    )
    assert "s3sqsd_objects_downloaded_total 2.0" in text
    assert "s3sqsd_downloaded_bytes_total 8.0" in text
    assert 's3sqsd_queue_messages{state="visible"}' in text
    assert "s3sqsd_lag_seconds_count 2.0" in text
    wait_until(
        lambda: any("downloaded 2," in v for v in notify_socket.values("STATUS")),
        timeout=5,
        what="STATUS with the same count",
    )


def test_workers_auto_downloads_a_backlog_and_moves_within_its_bounds(
    emulator: Emulator,
    make_config: Config,
    spawn_daemon: Spawn,
    notify_socket: NotifySocket,
    download_folder: Path,
) -> None:
    """The default ``workers: auto`` on a backlog: every file arrives, the target never leaves
    min/max_workers (the gauge, STATUS), and a reload that lowers ``max_workers`` below the
    target moves it there at once (a ``concurrency.changed`` line). Whether the controller
    grows on its own depends on this machine's spare CPU, so that is left to the fake-clock
    tests (tests/unit/test_concurrency.py), not asserted here."""
    pytest.importorskip("prometheus_client")
    pipeline = emulator.pipeline(via="direct")
    objects = {f"f/{i:04d}": b"x" * 512 for i in range(400)}
    put_objects(emulator.client("s3"), pipeline.bucket, objects)
    port = free_port()
    config = make_config(
        pipeline,
        workers=None,  # the default: auto
        min_workers=2,
        max_workers=12,
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    daemon = spawn_daemon(config, notify=notify_socket)
    daemon.wait_for_event("daemon.ready", timeout=30)
    write_config(daemon.config_path, {**config, "max_workers": 3})
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_event("config.reloaded", timeout=30)
    lowered = daemon.wait_for_event("concurrency.changed", timeout=10)
    assert lowered["workers"] == 3
    assert lowered["previous"] > 3
    wait_queue_empty(emulator, pipeline.queue_url, timeout=120)
    wait_until(
        lambda: sum(1 for p in (download_folder / "f").iterdir() if p.is_file()) == 400,
        timeout=30,
        what="every file in place",
    )
    changes = daemon.events("concurrency.changed")
    assert all(2 <= change["workers"] <= 12 for change in changes)
    assert changes[-1]["workers"] <= 3
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    gauge = [line for line in text.splitlines() if line.startswith("s3sqsd_workers_target ")]
    assert len(gauge) == 1
    assert 2 <= float(gauge[0].split()[1]) <= 3
    assert any(", workers " in value for value in notify_socket.values("STATUS"))
    assert temp_files(download_folder) == []
