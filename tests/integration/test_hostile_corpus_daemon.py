"""The whole hostile corpus (tests/data/hostile) through the real daemon, in one queue.

Every body SQS can carry is sent; the objects the keys name exist in the bucket, so a refusal
is about the message or the key, never a 404. The daemon must dead-letter each refused message
with the corpus's reason, write each accepted look-alike at its literal path, log one line per
message, write nothing anywhere else, and still be running (and stop cleanly) at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from s3sqsd.events import KeyDecodingPolicy, parse_message
from tests.support.daemon import (
    TEMP_DIR_NAME,
    DaemonProcess,
    attribute,
    receive_all,
    temp_files,
    visible_files,
    wait_queue_empty,
)
from tests.support.emulator import Emulator, Pipeline
from tests.unit.test_hostile_corpus import CORPUS_BUCKET, OBJECT_CONTENT, Entry, load_corpus

pytestmark = pytest.mark.integration

S3_KEY_LIMIT = 1024  # bytes; S3 refuses longer keys


def _raw_keys(value: Any) -> Iterator[str]:
    """Every string under an ``object.key`` in a JSON document, SNS envelopes included."""
    if isinstance(value, dict):
        for name, child in value.items():
            if name == "object" and isinstance(child, dict) and isinstance(child.get("key"), str):
                yield child["key"]
            if name == "Message" and isinstance(child, str):
                with contextlib.suppress(ValueError, RecursionError):
                    yield from _raw_keys(json.loads(child))
            yield from _raw_keys(child)
    elif isinstance(value, list):
        for child in value:
            yield from _raw_keys(child)


def _keys_to_create(entries: list[Entry]) -> set[str]:
    """The decoded keys the corpus announces (best effort for bodies that do not parse)."""
    keys: set[str] = set()
    for entry in entries:
        try:
            doc = json.loads(entry.body)
        except (ValueError, RecursionError):
            continue
        for raw in _raw_keys(doc):
            with contextlib.suppress(UnicodeDecodeError):
                keys.add(unquote_plus(raw, errors="strict"))
    return keys


def _snapshot(root: Path, *, skip: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``root`` except the ``skip`` subtree: (mode, size, mtime_ns)."""
    found = {}
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        dirs[:] = [d for d in dirs if here / d != skip]
        for name in [*dirs, *files]:
            st = (here / name).lstat()
            found[str((here / name).relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return found


def _listing(directory: Path) -> set[str]:
    try:
        return set(os.listdir(directory))
    except OSError:
        return set()


def _expected_event(entry: Entry) -> str:
    if entry.reason is not None:
        return "message.dead_lettered"
    return "object.downloaded" if entry.path is not None else "record.ignored"


def test_every_corpus_body_is_dead_lettered_with_its_reason(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    entries = [entry for entry in load_corpus() if entry.sqs]
    refused = {entry.body: entry for entry in entries if entry.reason is not None}
    accepted = [entry for entry in entries if entry.reason is None]
    assert len(refused) + len(accepted) == len(entries) >= 60, "bodies must be unique"

    s3 = emulator.client("s3")
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket=CORPUS_BUCKET)
    for entry in accepted:  # these must exist: the daemon downloads them
        for obj in parse_message(entry.body, decoding=KeyDecodingPolicy()).created:
            s3.put_object(Bucket=CORPUS_BUCKET, Key=obj.key, Body=OBJECT_CONTENT)
    for key in _keys_to_create(list(refused.values())):
        if not key or len(key.encode("utf-8", "surrogatepass")) > S3_KEY_LIMIT:
            continue
        # Best effort: the emulator refuses some hostile keys; a refused key fails before
        # any GET anyway, so a missing object cannot turn into a 404 retry.
        with contextlib.suppress(ClientError, BotoCoreError, UnicodeError, ValueError):
            s3.put_object(Bucket=CORPUS_BUCKET, Key=key, Body=b"followed a hostile key!\n")

    dlq_url, _ = emulator.create_queue(emulator.unique("hostile-dlq"))
    queue_url, queue_arn = emulator.create_queue(emulator.unique("hostile"))
    pipeline = Pipeline(
        bucket=CORPUS_BUCKET,
        queue_url=queue_url,
        queue_arn=queue_arn,
        dlq_url=dlq_url,
        topic_arn=None,
        via="direct",
    )
    sqs = emulator.client("sqs")
    sent: dict[str, Entry] = {}
    for entry in entries:
        response = sqs.send_message(QueueUrl=queue_url, MessageBody=entry.body)
        sent[response["MessageId"]] = entry

    # Deep enough that every traversal in the corpus would land inside tmp_path.
    folder = tmp_path / "jail" / "a" / "b" / "c" / "downloads"
    folder.mkdir(parents=True)
    config = make_config(
        pipeline, download_folder=str(folder), dead_letter_queue_url=dlq_url, workers=4
    )
    watched = [p for p in tmp_path.parents if p != Path("/")]
    outside_before = _snapshot(tmp_path, skip=folder)
    listings_before = {p: _listing(p) for p in watched}
    passwd_before = os.stat("/etc/passwd").st_mtime_ns

    daemon = spawn_daemon(config)
    config_files = {daemon.config_path.name}
    daemon.wait_for_event("message.dead_lettered", count=len(refused), timeout=120)
    wait_queue_empty(emulator, queue_url, timeout=60)

    # Every refused body is in the dead-letter queue with its reason, once.
    dead = receive_all(sqs, dlq_url, count=len(refused), timeout=60)
    assert len(dead) == len(refused)
    wrong = []
    for message in dead:
        entry = refused[message["Body"]]
        if attribute(message, "s3sqsd.reason") != entry.reason:
            wrong.append((entry.name, entry.reason, attribute(message, "s3sqsd.reason")))
        assert sent[attribute(message, "s3sqsd.source_message_id") or ""] is entry
        assert len(attribute(message, "s3sqsd.error") or "") <= 1000
    assert wrong == [], wrong
    assert {m["Body"] for m in dead} == set(refused)

    # One log line per message, none of them huge, no tracebacks, nothing but JSON.
    per_message: dict[str, list[str]] = {message_id: [] for message_id in sent}
    for record in daemon.events():
        assert len(json.dumps(record)) < 2500, str(record)[:300]
        message_id = record.get("message_id")
        if message_id is not None:
            assert message_id in per_message, record
            per_message[message_id].append(str(record["event"]))
        else:
            assert record["level"] in ("info", "warning"), record
        assert "exc_info" not in record, record
        assert "Traceback" not in json.dumps(record), record
    assert per_message == {message_id: [_expected_event(e)] for message_id, e in sent.items()}
    for event in daemon.events("message.dead_lettered"):
        assert event["reason"] == sent[event["message_id"]].reason, event
    assert daemon.non_json == []
    assert daemon.stderr == ""

    # Inside the folder: the accepted literal names and the (empty) temp folder, nothing else.
    expected_files = {
        Path(entry.path).as_posix(): OBJECT_CONTENT for entry in accepted if entry.path
    }
    assert visible_files(folder) == expected_files
    top_level = {p.name for p in folder.iterdir()}
    assert top_level == {TEMP_DIR_NAME} | {Path(name).parts[0] for name in expected_files}
    assert temp_files(folder) == []

    # Outside the folder: nothing new, nothing changed.
    outside_after = _snapshot(tmp_path, skip=folder)
    for name in config_files:
        outside_after.pop(name, None)
        outside_before.pop(name, None)
    assert outside_after == outside_before
    for directory in watched:
        # Directories above tmp_path are shared with other processes: only names the corpus
        # aims at count.
        new = _listing(directory) - listings_before[directory]
        assert not {n for n in new if "escape" in n or n in ("passwd", "share", "evil.part")}
    assert os.stat("/etc/passwd").st_mtime_ns == passwd_before

    assert daemon.running()
    assert daemon.stop() == 0
