"""The real daemon when things go wrong: bad messages, foreign buckets, missing objects, no
redrive policy, and an SQS endpoint that is down or comes back."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.daemon import (
    PATH_LOCK_NAME,
    DaemonProcess,
    TcpForwarder,
    attribute,
    closed_port,
    final_path,
    put_objects,
    receive_all,
    s3_notification_body,
    temp_files,
    via_port,
    visible_files,
    wait_queue_empty,
)
from tests.support.emulator import Emulator, no_checksum_config
from tests.support.notify import NotifySocket

pytestmark = pytest.mark.integration


def _files_under(root: Path) -> list[Path]:
    """The files under ``root`` but the per-path lock file of a download folder's temp folder."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != PATH_LOCK_NAME)


# ---- messages that can never succeed ------------------------------------------------------------


def test_bad_messages_go_to_the_dead_letter_queue(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    """Garbage bodies and hostile keys, with dead_letter_queue_url set: each is sent to the DLQ
    with its original body and the reason, deleted from the source queue, nothing is written
    outside download_folder, and the daemon keeps running."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    folder = tmp_path / "deep" / "er" / "downloads"
    folder.mkdir(parents=True)
    s3 = emulator.client("s3")
    # Hostile keys exist in the bucket, so a daemon that followed them would find bytes to write.
    for key in ("../../escape", "sub/../../../escape2"):
        s3.put_object(Bucket=pipeline.bucket, Key=key, Body=b"escaped!")
    emulator.drain(pipeline.queue_url)  # only the hand-written messages below
    bodies = {
        "this is not JSON {": "bad_message",
        "[1, 2, 3]": "bad_message",
        '{"hello": "world", "Records": "nope"}': "bad_message",
        s3_notification_body(pipeline.bucket, "../../escape", size=8): "unsafe_key",
        s3_notification_body(pipeline.bucket, "sub/../../../escape2", size=8): "unsafe_key",
        s3_notification_body(pipeline.bucket, "bad%ZZescape", size=8): "bad_key_encoding",
    }
    sqs = emulator.client("sqs")
    sent = {
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)["MessageId"]: body
        for body in bodies
    }
    daemon = spawn_daemon(
        make_config(pipeline, download_folder=str(folder), dead_letter_queue_url=pipeline.dlq_url)
    )
    daemon.wait_for_event("message.dead_lettered", count=len(bodies), timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)

    dead = receive_all(sqs, pipeline.dlq_url, count=len(bodies))
    assert len(dead) == len(bodies)
    for message in dead:
        assert message["Body"] in bodies, message["Body"]
        assert attribute(message, "s3sqsd.reason") == bodies[message["Body"]], message
        source_id = attribute(message, "s3sqsd.source_message_id")
        assert sent.get(source_id or "") == message["Body"]
        assert attribute(message, "s3sqsd.error")
        assert attribute(message, "s3sqsd.receive_count") == "1"
    for event in daemon.events("message.dead_lettered"):
        assert event["level"] == "error"
        assert event["message_id"] in sent
        assert event["reason"] == bodies[sent[event["message_id"]]]
    assert _files_under(tmp_path) == [daemon.config_path]
    assert not (tmp_path.parent / "escape").exists()
    assert visible_files(folder) == {}
    assert daemon.running()
    assert daemon.stop() == 0
    assert daemon.non_json == []


def test_bad_message_without_dlq_is_left_for_the_redrive_policy(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """Without dead_letter_queue_url a bad message is not deleted: it is logged as
    left_for_redrive, stays in the queue, and the queue's own redrive policy moves it."""
    pipeline = emulator.pipeline(max_receive_count=2)
    assert pipeline.dlq_url is not None
    sqs = emulator.client("sqs")
    body = "definitely not an S3 event"
    message_id = sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)["MessageId"]
    daemon = spawn_daemon(make_config(pipeline, visibility_timeout_seconds=5))
    event = daemon.wait_for_event("message.left_for_redrive", timeout=30)
    assert event["message_id"] == message_id
    assert event["level"] == "error"
    assert event["reason"] == "bad_message"
    visible, in_flight = emulator.queue_counts(pipeline.queue_url)
    assert visible + in_flight == 1  # not deleted
    assert daemon.events("message.dead_lettered") == []
    # SQS (the emulator) moves it once maxReceiveCount receives have happened.
    (moved,) = receive_all(sqs, pipeline.dlq_url, count=1, timeout=30)
    assert moved["Body"] == body
    assert moved["MessageId"] == message_id
    assert emulator.queue_counts(pipeline.queue_url) == (0, 0)
    assert visible_files(download_folder) == {}
    assert daemon.running()
    assert daemon.stop() == 0


def test_bucket_outside_the_allow_list_is_dead_lettered(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """Two buckets notify one queue; only the allowed one is downloaded, the other's event is
    dead-lettered as bucket_not_allowed."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    s3 = emulator.client("s3")
    foreign = emulator.unique("foreign")
    s3.create_bucket(Bucket=foreign)
    s3.put_bucket_notification_configuration(
        Bucket=foreign,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"QueueArn": pipeline.queue_arn, "Events": ["s3:ObjectCreated:*"]}
            ]
        },
    )
    emulator.drain(pipeline.queue_url)
    put_objects(s3, pipeline.bucket, {"allowed.txt": b"mine"})
    put_objects(s3, foreign, {"foreign.txt": b"not mine"})
    daemon = spawn_daemon(
        make_config(
            pipeline,
            s3_bucket_name=[pipeline.bucket, "some-other-allowed-bucket"],
            dead_letter_queue_url=pipeline.dlq_url,
        )
    )
    dead = daemon.wait_for_event("message.dead_lettered", timeout=30)
    daemon.wait_for_event("object.downloaded", key="allowed.txt", timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert dead["reason"] == "bucket_not_allowed"
    (message,) = receive_all(emulator.client("sqs"), pipeline.dlq_url, count=1)
    assert attribute(message, "s3sqsd.reason") == "bucket_not_allowed"
    assert foreign in message["Body"]
    assert visible_files(download_folder) == {"allowed.txt": b"mine"}
    assert daemon.stop() == 0


def test_strict_integrity_dead_letters_what_only_its_length_verifies(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """integrity: strict. An SSE-KMS object uploaded without a checksum (its ETag is no MD5)
    can be verified by nothing but its length: dead-lettered at once as unverifiable, nothing
    written; a checksummed object beside it downloads."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    s3 = emulator.client("s3")
    daemon = spawn_daemon(
        make_config(pipeline, integrity="strict", dead_letter_queue_url=pipeline.dlq_url)
    )
    plain = emulator.client("s3", config=no_checksum_config())
    plain.put_object(
        Bucket=pipeline.bucket, Key="kms.bin", Body=b"secret", ServerSideEncryption="aws:kms"
    )
    put_objects(s3, pipeline.bucket, {"fine.txt": b"checked"})
    dead = daemon.wait_for_event("message.dead_lettered", timeout=30)
    daemon.wait_for_event("object.downloaded", key="fine.txt", timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert dead["reason"] == "unverifiable"
    (message,) = receive_all(emulator.client("sqs"), pipeline.dlq_url, count=1)
    assert attribute(message, "s3sqsd.reason") == "unverifiable"
    assert "only the length could be verified" in attribute(message, "s3sqsd.error")
    assert visible_files(download_folder) == {"fine.txt": b"checked"}
    assert temp_files(download_folder) == []
    assert daemon.stop() == 0


# ---- transient failures -------------------------------------------------------------------------


def test_missing_object_is_retried_then_dead_lettered(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """A notification for an object that does not exist is returned with a backoff
    (message.retry, growing receive_count) and dead-lettered as too_many_attempts after
    retry.max_attempts."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    sqs = emulator.client("sqs")
    key = "missing/never-uploaded.txt"
    body = s3_notification_body(pipeline.bucket, key)
    message_id = sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)["MessageId"]
    daemon = spawn_daemon(
        make_config(
            pipeline,
            dead_letter_queue_url=pipeline.dlq_url,
            retry={"max_attempts": 3, "base_delay_seconds": 1, "max_delay_seconds": 2},
        )
    )
    dead = daemon.wait_for_event("message.dead_lettered", timeout=40)
    assert dead["reason"] == "too_many_attempts"
    assert dead["message_id"] == message_id
    retries = daemon.events("message.retry")
    counts = [int(e["receive_count"]) for e in retries]
    assert len(retries) >= 2, counts
    assert counts == sorted(set(counts)), counts  # one retry per receive, growing
    assert counts[0] == 1
    for event in retries:
        assert event["level"] == "warning"
        assert event["message_id"] == message_id
        assert 0 <= float(event["delay_seconds"]) <= 2
    assert int(dead["receive_count"]) >= 3
    wait_queue_empty(emulator, pipeline.queue_url)
    (message,) = receive_all(sqs, pipeline.dlq_url, count=1)
    assert message["Body"] == body
    assert attribute(message, "s3sqsd.reason") == "too_many_attempts"
    assert attribute(message, "s3sqsd.source_message_id") == message_id
    assert not final_path(download_folder, key).exists()
    assert temp_files(download_folder) == []
    assert daemon.stop() == 0


def test_queue_without_redrive_policy_warns_at_start(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
) -> None:
    """No dead_letter_queue_url and no RedrivePolicy: a queue.no_redrive warning at start;
    with a dead_letter_queue_url there is nothing to warn about."""
    pipeline = emulator.pipeline(redrive=False)
    warned = spawn_daemon(make_config(pipeline))
    event = warned.wait_for_event("queue.no_redrive", timeout=30)
    assert event["level"] == "warning"
    assert warned.stop() == 0

    # A fresh queue: the stopped daemon's last long poll may still be open on the first one.
    pipeline = emulator.pipeline(redrive=False)
    dlq_url, _ = emulator.create_queue(emulator.unique("app-dlq"))
    quiet = spawn_daemon(make_config(pipeline, dead_letter_queue_url=dlq_url))
    quiet.wait_for_event("daemon.ready", timeout=30)
    put_objects(emulator.client("s3"), pipeline.bucket, {"probe.txt": b"x"})
    quiet.wait_for_event("object.downloaded", key="probe.txt", timeout=30)
    assert quiet.events("queue.no_redrive") == []
    assert quiet.stop() == 0


# ---- the SQS endpoint is down -------------------------------------------------------------------


def test_unreachable_endpoint_stays_up_and_logs_once(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
) -> None:
    """With nothing listening at the endpoint the daemon still starts (READY=1), logs
    sqs.receive.failed once rather than once per attempt, and exits 0 on SIGTERM."""
    pipeline = emulator.pipeline()
    port = closed_port()
    config = make_config(
        pipeline,
        endpoint_url=f"http://127.0.0.1:{port}",
        sqs_queue_url=via_port(pipeline.queue_url, port),
    )
    daemon = spawn_daemon(config, notify=notify_socket)
    notify_socket.wait_for("READY=1", timeout=30)
    first = daemon.wait_for_event("sqs.receive.failed", timeout=30)
    assert first["level"] in ("warning", "error")
    assert first.get("error")
    time.sleep(5.0)  # the window in which repeated attempts must not be logged again
    assert len(daemon.events("sqs.receive.failed")) == 1, daemon.describe()
    assert daemon.events("sqs.receive.recovered") == []
    assert daemon.running()
    signalled = time.monotonic()
    assert daemon.stop(timeout=10) == 0
    assert time.monotonic() - signalled <= 2.0
    assert "STOPPING=1" in notify_socket.messages()
    assert daemon.non_json == []


def test_endpoint_that_comes_back_is_used_again(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """Start against a port where nothing listens; once a relay to the emulator opens on that
    port, the daemon logs sqs.receive.recovered and downloads what was announced."""
    pipeline = emulator.pipeline()
    port = closed_port()
    daemon = spawn_daemon(
        make_config(
            pipeline,
            endpoint_url=f"http://127.0.0.1:{port}",
            sqs_queue_url=via_port(pipeline.queue_url, port),
        )
    )
    daemon.wait_for_event("sqs.receive.failed", timeout=30)
    key = "after/recovery.txt"
    put_objects(emulator.client("s3"), pipeline.bucket, {key: b"back again"})
    target = urlsplit(emulator.endpoint)
    assert target.hostname is not None
    assert target.port is not None
    with TcpForwarder((target.hostname, target.port), listen_port=port):
        recovered = daemon.wait_for_event("sqs.receive.recovered", timeout=60)
        assert recovered["level"] in ("info", "warning")
        daemon.wait_for_event("object.downloaded", key=key, timeout=30)
        wait_queue_empty(emulator, pipeline.queue_url)
        assert final_path(download_folder, key).read_bytes() == b"back again"
        assert len(daemon.events("sqs.receive.failed")) == 1
        assert daemon.stop() == 0
