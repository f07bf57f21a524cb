"""The real daemon against the emulator: objects announced every way S3 can, end to end.

Every message here is produced by the emulator's own S3 notification machinery (direct, SNS
envelope, SNS raw delivery, EventBridge), except the duplicate-delivery case, which re-sends a
body the emulator produced.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import (
    DaemonProcess,
    final_path,
    put_objects,
    receive_all,
    temp_files,
    visible_files,
    wait_queue_empty,
)
from tests.support.emulator import Emulator, wait_until
from tests.support.faultproxy import proxy_for
from tests.support.notify import NotifySocket

pytestmark = pytest.mark.integration

MiB = 1 << 20


def test_direct_end_to_end(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
    download_folder: Path,
) -> None:
    """Objects with nested, spaced, '+', unicode and empty names land byte for byte, each
    logged once as object.downloaded; no temp files remain and the queue is empty."""
    pipeline = emulator.pipeline()
    before = {
        "nested/deeper/still/a.txt": b"alpha\n" * 100,
        "with space+plus.txt": b"space and plus",
        "ünïcødé/文件 ü.bin": os.urandom(70_001),
        "empty.bin": b"",
    }
    after = {
        "later/dt=2024-01-01/part 1+2.csv": b"a,b\n1,2\n",
        "later/second.bin": os.urandom(1_300_000),
    }
    s3 = emulator.client("s3")
    put_objects(s3, pipeline.bucket, before)
    daemon = spawn_daemon(make_config(pipeline), notify=notify_socket)
    notify_socket.wait_for("READY=1", timeout=30)
    put_objects(s3, pipeline.bucket, after)  # announced while the daemon long-polls
    expected = before | after
    daemon.wait_for_event("object.downloaded", count=len(expected), timeout=40)
    wait_queue_empty(emulator, pipeline.queue_url)

    assert visible_files(download_folder) == expected
    assert temp_files(download_folder) == []
    downloaded = daemon.events("object.downloaded")
    assert sorted(e["key"] for e in downloaded) == sorted(expected)
    for event in downloaded:
        assert event["bucket"] == pipeline.bucket
        assert Path(event["path"]) == final_path(download_folder, event["key"])
        assert event["size"] == len(expected[event["key"]])
        assert event.get("message_id")
        assert event["level"] == "info"
        # Current boto3 adds a CRC32 to every PUT; botocore < 1.36 (bookworm) adds none, so
        # the MD5 ETag. Never silently weaker: each line names its check.
        assert event["verified_by"] in ("crc32", "md5"), event
        assert event["unverifiable"] == []
    integrity = daemon.events("daemon.integrity")
    assert len(integrity) == 1
    assert integrity[0]["integrity"] == "best_effort"
    assert "CRC32" in integrity[0]["algorithms"]
    assert final_path(download_folder, "empty.bin").stat().st_size == 0
    assert daemon.events("queue.no_redrive") == []  # the pipeline's queue has a redrive policy
    assert daemon.running()
    assert daemon.stop() == 0
    assert daemon.problems() == []


@pytest.mark.parametrize("via", ["direct", "sns", "sns_raw", "eventbridge"])
def test_created_then_removed_every_route(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    via: str,
) -> None:
    """Creation events arriving directly, in an SNS envelope, by SNS raw delivery or through
    EventBridge are downloaded; the removal events that follow are acknowledged
    (record.ignored) and the local files are kept."""
    pipeline = emulator.pipeline(via=via)
    config = make_config(pipeline)
    if via == "eventbridge":
        config["key_decoding"] = {"eventbridge": "none"}  # moto sends EventBridge keys raw
    objects = {f"{via}/one.txt": b"first object", f"{via}/two words+plus.bin": os.urandom(4096)}
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready", timeout=30)
    s3 = emulator.client("s3")
    put_objects(s3, pipeline.bucket, objects)
    daemon.wait_for_event("object.downloaded", count=2, timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert visible_files(download_folder) == objects

    for key in objects:
        s3.delete_object(Bucket=pipeline.bucket, Key=key)

    def removals() -> list[dict[str, Any]]:
        # moto's EventBridge also forwards "Object Tags Added" for each put: ignored as well.
        return [
            e
            for e in daemon.events("record.ignored")
            if "Removed" in str(e.get("event_name")) or "Deleted" in str(e.get("event_name"))
        ]

    daemon.wait_for(lambda: len(removals()) >= 2, timeout=30, what="2 removals acknowledged")
    wait_queue_empty(emulator, pipeline.queue_url)
    assert visible_files(download_folder) == objects  # removal never deletes local files
    assert sorted(e["key"] for e in removals()) == sorted(objects)
    assert len(daemon.events("object.downloaded")) == 2
    assert temp_files(download_folder) == []
    assert daemon.stop() == 0
    assert daemon.problems() == []


@pytest.mark.parametrize("via", ["direct", "sns"])
def test_s3_test_event_is_acknowledged(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    via: str,
) -> None:
    """The s3:TestEvent S3 sends when notifications are configured (direct or in an SNS
    envelope) is deleted with an info line, never treated as an error."""
    pipeline = emulator.pipeline(via=via, drain_test_event=False)
    assert emulator.queue_counts(pipeline.queue_url) == (1, 0)
    daemon = spawn_daemon(make_config(pipeline))
    event = daemon.wait_for_event("message.test_event", timeout=30)
    assert event["level"] == "info"
    wait_queue_empty(emulator, pipeline.queue_url)
    assert visible_files(download_folder) == {}
    assert daemon.stop() == 0
    assert daemon.problems() == []


def test_folder_marker_is_acknowledged_without_a_file(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """A console 'folder' (key ending in '/') is acknowledged and writes no file."""
    pipeline = emulator.pipeline()
    s3 = emulator.client("s3")
    put_objects(s3, pipeline.bucket, {"reports/2024/": b""})
    daemon = spawn_daemon(make_config(pipeline))
    marker = daemon.wait_for_event("object.folder_marker", timeout=30)
    assert marker["key"] == "reports/2024/"
    put_objects(s3, pipeline.bucket, {"plain.txt": b"after the marker"})
    daemon.wait_for_event("object.downloaded", key="plain.txt", timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert visible_files(download_folder) == {"plain.txt": b"after the marker"}
    assert not (download_folder / "reports" / "2024").is_file()
    assert daemon.events("object.downloaded", key="reports/2024/") == []
    assert daemon.stop() == 0
    assert daemon.problems() == []


def test_duplicate_delivery_gives_one_file(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """The same notification body delivered twice: one file with the right bytes, and both
    messages deleted."""
    pipeline = emulator.pipeline()
    sqs = emulator.client("sqs")
    key = "dup/once.bin"
    body = os.urandom(100_000)
    put_objects(emulator.client("s3"), pipeline.bucket, {key: body})
    (original,) = receive_all(sqs, pipeline.queue_url, count=1)
    sqs.delete_message(QueueUrl=pipeline.queue_url, ReceiptHandle=original["ReceiptHandle"])
    for _ in range(2):
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=original["Body"])
    assert emulator.queue_counts(pipeline.queue_url) == (2, 0)

    daemon = spawn_daemon(make_config(pipeline))
    daemon.wait_for(
        lambda: (
            (
                len(daemon.events("object.downloaded", key=key))
                + len(daemon.events("object.duplicate", key=key))
                + len(daemon.events("object.stale", key=key))
            )
            >= 2
        ),
        timeout=30,
        what="both deliveries settled",
    )
    wait_queue_empty(emulator, pipeline.queue_url)
    assert visible_files(download_folder) == {key: body}
    assert temp_files(download_folder) == []
    assert len(daemon.events("object.downloaded", key=key)) >= 1
    assert daemon.stop() == 0
    assert daemon.problems() == []


def test_large_objects_arrive_through_ranged_gets(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """With large_objects lowered to 1 MiB, a 3.5 MiB object is fetched as one HEAD and four
    ranged GETs (counted by a proxy in front of S3), a 100 KiB one with a single GET; both land
    byte for byte and the message is deleted."""
    pipeline = emulator.pipeline()
    objects = {"big.bin": os.urandom(3 * MiB + MiB // 2), "small.bin": os.urandom(100_000)}
    with proxy_for(emulator, seed=11) as proxy:
        config = make_config(
            pipeline,
            s3_endpoint_url=proxy.url,
            large_objects={"threshold_bytes": MiB, "part_size_bytes": MiB, "concurrency": 3},
        )
        daemon = spawn_daemon(config)
        put_objects(emulator.client("s3"), pipeline.bucket, objects)
        daemon.wait_for_event("object.downloaded", count=2, timeout=40)
        wait_queue_empty(emulator, pipeline.queue_url)
        assert visible_files(download_folder) == objects
        assert proxy.counts["HeadObject"] == 1
        assert proxy.counts["GetObject"] == 4 + 1
    assert temp_files(download_folder) == []
    assert daemon.stop() == 0
    assert daemon.problems() == []


@pytest.mark.parametrize("pollers", [1, 3])
def test_pollers_keep_that_many_long_polls_open(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    pollers: int,
) -> None:
    """On an idle queue with 2 s long polls, ``pollers`` receivers make ``pollers`` times the
    ReceiveMessage calls of one (counted by a proxy in front of SQS), and objects still land."""
    pipeline = emulator.pipeline()
    with proxy_for(emulator, seed=12) as proxy:
        daemon = spawn_daemon(
            make_config(pipeline, sqs_endpoint_url=proxy.url, wait_time_seconds=2, pollers=pollers)
        )
        daemon.wait_for_event("daemon.ready", timeout=30)
        wait_until(lambda: proxy.counts["ReceiveMessage"] >= pollers, what="first polls")
        start = proxy.counts["ReceiveMessage"]
        time.sleep(5.0)  # two full rounds of 2 s polls, and a bit
        polls = proxy.counts["ReceiveMessage"] - start
        assert 2 * pollers <= polls <= 3 * pollers + 1, polls
        put_objects(emulator.client("s3"), pipeline.bucket, {"p.txt": b"polled"})
        daemon.wait_for_event("object.downloaded", timeout=30)
        assert daemon.stop() == 0  # before the proxy goes: its end would cut the open polls
    assert visible_files(download_folder) == {"p.txt": b"polled"}
    assert daemon.problems() == []
