"""after_download: delete through the real daemon against the emulator (moto over HTTP, which
enforces If-Match on DeleteObject): the source goes once the file is in place and the command
exited 0, exactly the version downloaded; never a newer one, never for a stale event, a
duplicate another event or a listing brought, or after a failed command; keep deletes nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import Fetcher, FetchOutcome, FolderRole
from s3sqsd.provenance import Origin
from tests.integration.test_daemon_features import bare_pipeline, script
from tests.support.daemon import DaemonProcess, wait_queue_empty
from tests.support.emulator import Emulator, wait_until
from tests.support.events import notification, s3_record

pytestmark = pytest.mark.integration

Config = Callable[..., dict[str, Any]]
Spawn = Callable[..., DaemonProcess]


def exists(s3: Any, bucket: str, key: str) -> bool:
    return bool(s3.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount"))


def put(s3: Any, bucket: str, key: str, data: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = s3.put_object(Bucket=bucket, Key=key, Body=data)
    answer["ETag"] = str(answer["ETag"]).strip('"')
    return answer


def event_body(bucket: str, key: str, answer: dict[str, Any], **fields: Any) -> str:
    """A notification of the object ``answer`` (a put's) describes; ``fields``: sequencer,
    eventTime (the record's), versionId..."""
    event_time = fields.pop("eventTime", "2026-01-01T00:00:00.000Z")
    record = s3_record(bucket, key, size=fields.pop("size", 3), eTag=answer["ETag"], **fields)
    record["eventTime"] = event_time
    return notification(record)


def test_routes_delete_their_sources_and_keep_keeps(
    emulator: Emulator, make_config: Config, spawn_daemon: Spawn, tmp_path: Path
) -> None:
    """Real S3 notifications: a route with after_download: delete empties its prefix, the
    top-level keep keeps the others; each file is in place either way."""
    pipeline = emulator.pipeline(via="direct")
    s3 = emulator.client("s3")
    inbox, archive = tmp_path / "inbox", tmp_path / "archive"
    config = make_config(
        pipeline,
        download_folder=None,
        routes=[
            {"prefix": "in/", "download_folder": str(inbox), "after_download": "delete"},
            {"download_folder": str(archive)},
        ],
    )
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready")
    put(s3, pipeline.bucket, "in/a.txt", b"aaa")
    put(s3, pipeline.bucket, "other/b.txt", b"bbb")
    wait_queue_empty(emulator, pipeline.queue_url)

    assert (inbox / "in/a.txt").read_bytes() == b"aaa"
    assert (archive / "other/b.txt").read_bytes() == b"bbb"
    assert not exists(s3, pipeline.bucket, "in/a.txt")
    assert exists(s3, pipeline.bucket, "other/b.txt")
    [deleted] = daemon.events("source.deleted")
    assert (deleted["bucket"], deleted["key"]) == (pipeline.bucket, "in/a.txt")
    assert "s3://" in deleted["message"]
    assert not daemon.events("source.kept")


def test_never_a_newer_object_versioned_or_not(
    emulator: Emulator, make_config: Config, spawn_daemon: Spawn, tmp_path: Path
) -> None:
    """A newer object arrives while on_download runs: in a versioned bucket the downloaded
    version is deleted and the newer one stays; in an unversioned one the conditional delete
    answers 412, the newer object stays, and the message is deleted all the same."""
    versioned = bare_pipeline(emulator)
    plain = bare_pipeline(emulator)
    s3, sqs = emulator.client("s3"), emulator.client("sqs")
    s3.put_bucket_versioning(Bucket=versioned.bucket, VersioningConfiguration={"Status": "Enabled"})
    marks = tmp_path / "marks"
    marks.mkdir()
    hook = script(
        tmp_path / "hook.sh",
        f'touch "{marks}/started-$S3SQSD_KEY"\n'
        f'while [ ! -e "{marks}/go-$S3SQSD_KEY" ]; do sleep 0.05; done\n',
    )
    config = make_config(
        versioned,
        s3_bucket_name=[versioned.bucket, plain.bucket],
        after_download="delete",
        on_download={"command": [hook], "timeout_seconds": 30},
    )
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready")

    first = put(s3, versioned.bucket, "v.txt", b"one")
    old = put(s3, plain.bucket, "u.txt", b"old")
    sqs.send_message(
        QueueUrl=versioned.queue_url,
        MessageBody=event_body(
            versioned.bucket, "v.txt", first, versionId=first["VersionId"], sequencer="0A"
        ),
    )
    sqs.send_message(
        QueueUrl=versioned.queue_url,
        MessageBody=event_body(plain.bucket, "u.txt", old, sequencer="0A"),
    )
    for key in ("v.txt", "u.txt"):
        wait_until(lambda k=key: (marks / f"started-{k}").exists(), what=f"{key}'s command")
    newer = put(s3, versioned.bucket, "v.txt", b"two")
    put(s3, plain.bucket, "u.txt", b"new")
    for key in ("v.txt", "u.txt"):
        (marks / f"go-{key}").touch()
    wait_queue_empty(emulator, versioned.queue_url)

    listed = s3.list_object_versions(Bucket=versioned.bucket)["Versions"]
    assert [v["VersionId"] for v in listed] == [newer["VersionId"]]
    assert daemon.events("source.deleted", key="v.txt", version_id=first["VersionId"])
    assert s3.get_object(Bucket=plain.bucket, Key="u.txt")["Body"].read() == b"new"
    [kept] = daemon.events("source.kept", key="u.txt")
    assert (kept["reason"], kept["level"]) == ("changed", "info")
    download_folder = Path(config["download_folder"])
    assert (download_folder / "v.txt").read_bytes() == b"one"
    assert (download_folder / "u.txt").read_bytes() == b"old"


def test_failed_commands_stale_and_foreign_duplicates_delete_nothing(
    emulator: Emulator,
    make_config: Config,
    spawn_daemon: Spawn,
    tmp_path: Path,
    download_folder: Path,
) -> None:
    """stale.txt: the file holds a newer event's object. dup.txt: a listing wrote the file.
    own.txt: the file is this very event's (an earlier attempt): its delete is completed.
    retry.txt: on_download fails once: nothing is deleted until the retry succeeds."""
    pipeline = bare_pipeline(emulator)
    s3, sqs = emulator.client("s3"), emulator.client("sqs")
    answers = {key: put(s3, pipeline.bucket, key, b"abc") for key in ("stale.txt", "dup.txt")}
    answers |= {key: put(s3, pipeline.bucket, key, b"abc") for key in ("own.txt", "retry.txt")}
    # Files already in the folder, as an earlier event (or a listing) left them.
    earlier = {"stale.txt": {"sequencer": "0B"}, "dup.txt": {}, "own.txt": {"sequencer": "0A"}}
    before = Fetcher(s3=s3, root=download_folder, role=FolderRole.SYNC)
    before.prepare()
    for key, fields in earlier.items():
        obj = ObjectCreated(
            bucket=pipeline.bucket,
            key=key,
            event_name="ObjectCreated:Put",
            size=3,
            etag=answers[key]["ETag"],
            event_time="2026-01-01T00:00:00.000Z",
            **fields,
        )
        origin = Origin.LISTING if key == "dup.txt" else Origin.EVENT
        result = before.fetch(obj, cancel=threading.Event(), origin=origin)
        assert result.outcome is FetchOutcome.DOWNLOADED
    before.close()

    failed_once = tmp_path / "failed-once"
    hook = script(
        tmp_path / "hook.sh",
        f'if [ "$S3SQSD_KEY" = retry.txt ] && [ ! -e "{failed_once}" ]; then\n'
        f'  touch "{failed_once}"; exit 7\nfi\n',
    )
    config = make_config(
        pipeline, after_download="delete", on_download={"command": [hook], "timeout_seconds": 30}
    )
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready")
    bodies = [
        event_body(pipeline.bucket, "stale.txt", answers["stale.txt"], sequencer="0A"),
        event_body(pipeline.bucket, "dup.txt", answers["dup.txt"], sequencer="0A"),
        event_body(
            pipeline.bucket,
            "own.txt",
            answers["own.txt"],
            sequencer="0A",
            eventTime="2026-01-01T00:00:00.000Z",
        ),
        event_body(pipeline.bucket, "retry.txt", answers["retry.txt"], sequencer="0A"),
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)

    daemon.wait_for_event("message.retry")
    assert exists(s3, pipeline.bucket, "retry.txt")  # the command failed: nothing deleted
    wait_queue_empty(emulator, pipeline.queue_url)

    assert exists(s3, pipeline.bucket, "stale.txt")
    assert exists(s3, pipeline.bucket, "dup.txt")
    assert not exists(s3, pipeline.bucket, "own.txt")
    assert not exists(s3, pipeline.bucket, "retry.txt")
    reasons = {e["key"]: e["reason"] for e in daemon.events("source.kept")}
    assert reasons == {"stale.txt": "stale", "dup.txt": "duplicate"}
    assert sorted(e["key"] for e in daemon.events("source.deleted")) == ["own.txt", "retry.txt"]
    assert failed_once.exists()
