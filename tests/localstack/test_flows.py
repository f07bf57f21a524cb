"""The real daemon against LocalStack: the end-to-end flows, on a second S3/SQS implementation.

Every message is produced by LocalStack's own S3 notification machinery (direct, SNS envelope,
SNS raw delivery), except the garbage body of the dead-letter test, which is the point of it.
Where LocalStack differs from AWS is recorded in tests/support/localstack.py; two of those
differences are exercised here on purpose: keys arrive ``quote``-encoded, and every event has
the same ``sequencer``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import (
    DaemonProcess,
    attribute,
    final_path,
    put_objects,
    receive_all,
    temp_files,
    visible_files,
    wait_queue_empty,
)
from tests.support.localstack import LocalStack
from tests.support.notify import NotifySocket

pytestmark = pytest.mark.localstack

KiB = 1 << 10


@pytest.mark.parametrize("via", ["direct", "sns", "sns_raw"])
def test_objects_land_byte_identical(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
    download_folder: Path,
    via: str,
) -> None:
    """S3 -> SQS, S3 -> SNS -> SQS (envelope) and SNS raw delivery: objects put before and
    while the daemon runs land byte for byte, each logged once; no temp file remains and the
    queue ends empty."""
    pipeline = localstack.pipeline(via=via)
    s3 = localstack.client("s3")
    before = {f"{via}/before.txt": b"put before the daemon started\n", f"{via}/empty.bin": b""}
    after = {f"{via}/after.bin": os.urandom(300 * KiB), f"{via}/deeper/still/x.csv": b"a,b\n1,2\n"}
    put_objects(s3, pipeline.bucket, before)
    daemon = spawn_daemon(make_config(pipeline), notify=notify_socket)
    notify_socket.wait_for("READY=1", timeout=30)
    put_objects(s3, pipeline.bucket, after)
    expected = before | after
    daemon.wait_for_event("object.downloaded", count=len(expected), timeout=40)
    wait_queue_empty(localstack, pipeline.queue_url)

    assert visible_files(download_folder) == expected
    assert temp_files(download_folder) == []
    downloaded = daemon.events("object.downloaded")
    assert sorted(e["key"] for e in downloaded) == sorted(expected)
    for event in downloaded:
        assert event["bucket"] == pipeline.bucket
        assert event["size"] == len(expected[event["key"]])
    assert daemon.running()
    assert daemon.stop() == 0
    assert daemon.problems() == []


AWKWARD_KEYS = (
    "with space.txt",
    "plus+sign.txt",
    "both + and space.txt",
    "100% sure.txt",
    "literal%20percent-twenty.txt",
    "literal%2Bpercent-plus.txt",
    "ünïcødé/文件 ü.bin",
    "emoji 😀/snow ☃.txt",
    "a/b/c/d/e/f/deep file+1.txt",
    "dt=2024-01-01/part 1+2 (copy) & more~.csv",
    "semi;colon,comma=equals@at$dollar'quote.txt",
)


def test_awkward_keys_map_to_the_right_paths(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """Spaces, '+', literal '%XX' sequences, unicode and nested folders, as LocalStack encodes
    them in its events (``quote``: '%20' for a space, '%2B' for '+'), land at exactly the key's
    path under the folder."""
    pipeline = localstack.pipeline()
    objects = {key: f"body of {key}".encode() for key in AWKWARD_KEYS}
    daemon = spawn_daemon(make_config(pipeline))
    daemon.wait_for_event("daemon.ready", timeout=30)
    put_objects(localstack.client("s3"), pipeline.bucket, objects)
    daemon.wait_for_event("object.downloaded", count=len(objects), timeout=40)
    wait_queue_empty(localstack, pipeline.queue_url)

    assert visible_files(download_folder) == objects
    for event in daemon.events("object.downloaded"):
        assert Path(event["path"]) == final_path(download_folder, event["key"])
    assert sorted(e["key"] for e in daemon.events("object.downloaded")) == sorted(objects)
    assert temp_files(download_folder) == []
    assert daemon.stop() == 0
    assert daemon.problems() == []


@pytest.mark.parametrize("pace", ["quick-while-running", "quick-as-a-backlog", "one-by-one"])
def test_versioned_overwrites_end_with_the_latest_bytes(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    pace: str,
) -> None:
    """A key written and then overwritten twice in a versioned bucket: once all three events
    are handled, the file holds the last version's bytes.

    LocalStack gives all three events the same ``sequencer``, so a daemon that orders
    overwrites by sequencer alone takes the later events for duplicates of the first one it
    handled and keeps those bytes. Three paces: the three puts back to back while the daemon
    polls, the same with all three waiting in the queue when it starts (one batch), and each
    put only once the previous event was handled (the first version is on disk when the next
    event arrives, so keeping it is never a matter of luck).
    """
    pipeline = localstack.pipeline(versioned=True)
    config = make_config(pipeline, log_level="debug")  # message.received is a debug line
    key = "reports/latest.bin"
    versions = [os.urandom(64 * KiB + n) for n in range(3)]
    s3 = localstack.client("s3")
    daemon = None if pace == "quick-as-a-backlog" else spawn_daemon(config)
    if daemon is not None:
        daemon.wait_for_event("daemon.ready", timeout=30)
    version_ids = []
    for number, body in enumerate(versions, 1):
        version_ids.append(s3.put_object(Bucket=pipeline.bucket, Key=key, Body=body)["VersionId"])
        if daemon is not None and pace == "one-by-one":
            daemon.wait_for_event("message.received", count=number, timeout=30)
            wait_queue_empty(localstack, pipeline.queue_url)
    assert len(set(version_ids)) == 3
    running = daemon if daemon is not None else spawn_daemon(config)
    running.wait_for_event("message.received", count=3, timeout=40)
    wait_queue_empty(localstack, pipeline.queue_url, timeout=40)

    outcomes = [
        (e.get("event"), e.get("version_id"))
        for e in running.events()
        if e.get("key") == key and str(e.get("event", "")).startswith("object.")
    ]
    on_disk = final_path(download_folder, key).read_bytes()
    assert on_disk == versions[-1], (
        f"the file holds version {versions.index(on_disk) if on_disk in versions else '?'} of"
        f" 0-2, not the last; the daemon's outcomes: {outcomes}"
    )
    assert temp_files(download_folder) == []
    assert running.stop() == 0
    assert running.problems() == []


def test_other_bucket_and_garbage_go_to_the_dead_letter_queue(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """A LocalStack notification for a bucket outside ``s3_bucket_name`` and a body that is
    not JSON both end in the dead-letter queue with a reason; the daemon keeps running and an
    object of the allowed bucket put afterwards still lands."""
    pipeline = localstack.pipeline()
    assert pipeline.dlq_url is not None
    s3 = localstack.client("s3")
    sqs = localstack.client("sqs")
    other = localstack.unique("other")
    s3.create_bucket(Bucket=other)
    s3.put_bucket_notification_configuration(
        Bucket=other,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": pipeline.queue_arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    localstack.drain_test_event(pipeline.queue_url)
    daemon = spawn_daemon(make_config(pipeline, dead_letter_queue_url=pipeline.dlq_url))
    daemon.wait_for_event("daemon.ready", timeout=30)

    s3.put_object(Bucket=other, Key="not-ours.txt", Body=b"from a bucket not allowed")
    garbage = "this is not JSON {"
    sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=garbage)
    daemon.wait_for_event("message.dead_lettered", count=2, timeout=40)
    put_objects(s3, pipeline.bucket, {"ours.txt": b"still working"})
    daemon.wait_for_event("object.downloaded", key="ours.txt", timeout=40)
    wait_queue_empty(localstack, pipeline.queue_url)

    dead = receive_all(sqs, pipeline.dlq_url, count=2)
    by_reason = {attribute(m, "s3sqsd.reason"): m["Body"] for m in dead}
    assert set(by_reason) == {"bucket_not_allowed", "bad_message"}, by_reason
    assert by_reason["bad_message"] == garbage
    (record,) = json.loads(by_reason["bucket_not_allowed"])["Records"]
    assert record["s3"]["bucket"]["name"] == other
    assert visible_files(download_folder) == {"ours.txt": b"still working"}
    assert daemon.running()
    assert daemon.stop() == 0


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_stopped_mid_burst_then_restarted_loses_nothing(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    how: str,
) -> None:
    """40 objects waiting; the daemon is stopped (SIGTERM: drains and exits 0; SIGKILL: dies
    where it stands) after a few have landed, then started again: in the end every file is
    there and intact, nothing partial was ever visible at a final path, no temp file remains,
    and the queue is empty."""
    pipeline = localstack.pipeline()
    objects = {f"burst/{n:02d}.bin": os.urandom(256 * KiB + n) for n in range(40)}
    put_objects(localstack.client("s3"), pipeline.bucket, objects)
    # visibility 5 s (the minimum): after a SIGKILL, what the dead daemon held comes back soon.
    config = make_config(pipeline, workers=4, visibility_timeout_seconds=5)
    first = spawn_daemon(config)
    first.wait_for_event("object.downloaded", count=5, timeout=40)
    if how == "sigterm":
        assert first.stop(timeout=20) == 0
        assert temp_files(download_folder) == []
    else:
        first.kill9()
    landed = visible_files(download_folder)
    assert len(landed) < len(objects), "the burst was over before the signal: not mid-burst"
    for name, body in landed.items():
        assert body == objects[name], f"{name} is visible but not intact after {how}"

    second = spawn_daemon(config)
    wait_queue_empty(localstack, pipeline.queue_url, timeout=60)
    assert visible_files(download_folder) == objects
    assert temp_files(download_folder) == []
    assert second.running()
    assert second.stop() == 0
    assert second.problems() == []
    if how == "sigterm":
        assert first.problems() == []
