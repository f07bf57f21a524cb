"""The real daemon behind the fault-injecting proxy: every fault class on GetObject and on the
SQS calls it makes, and what must hold afterwards.

The daemon's endpoint (S3 and SQS, the queue and dead-letter URLs too) is a ``FaultProxy`` in
front of the session emulator. Each case faults the next N requests of one operation: N is
larger than botocore's own attempts (S3 4, ReceiveMessage 2, control calls 3), so the daemon
sees the failure itself, and the first fault is always one botocore hides. Afterwards, for
every case: every object on disk with the right bytes, nothing else in the folder, no temp
files, the queue empty (nothing visible, nothing in flight), nothing dead-lettered, the proxy
really applied the fault, and the daemon still runs and stops cleanly.

Then the other side: an object whose every GET is corrupted (one flipped byte) or cut short
ends in the dead-letter queue with reason ``too_many_attempts`` after ``retry.max_attempts``,
and no file appears at its final path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import botocore
import pytest

from tests.support.daemon import (
    DaemonProcess,
    attribute,
    final_path,
    put_objects,
    receive_all,
    temp_files,
    via_port,
    visible_files,
    wait_queue_empty,
)
from tests.support.emulator import Emulator, Pipeline
from tests.support.faultproxy import (
    BODY_FAULTS,
    FAULTS,
    FLIP_BYTE,
    LATENCY,
    SLOW_DOWN,
    TRUNCATE_BODY,
    FaultProxy,
    proxy_for,
)
from tests.support.notify import NotifySocket

pytestmark = pytest.mark.integration

# botocore >= 1.31 speaks SQS's JSON protocol; bookworm's 1.29 the query (XML) protocol.
JSON_SQS = tuple(int(x) for x in botocore.__version__.split(".")[:2]) >= (1, 31)

# Log events at error level that a fault on an SQS call legitimately produces.
EXPECTED_ERRORS = {"sqs.receive.failed"}


def objects_for(tag: str) -> dict[str, bytes]:
    """Mixed sizes, from empty to a little over the fetcher's 1 MiB read size."""
    return {
        f"{tag}/empty.bin": b"",
        f"{tag}/one.txt": b"1",
        f"{tag}/with space+plus.txt": b"spaces and plus\n" * 64,
        f"{tag}/mid.bin": os.urandom(100_000),
        f"{tag}/deep/er/large.bin": os.urandom(1_100_000),
    }


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    with proxy_for(emulator, seed=4) as fault_proxy:
        yield fault_proxy


def proxied_config(
    make_config: Callable[..., dict[str, Any]],
    pipeline: Pipeline,
    proxy: FaultProxy,
    **overrides: Any,
) -> dict[str, Any]:
    """The test config with every AWS URL pointing at the proxy."""
    assert pipeline.dlq_url is not None
    config = make_config(
        pipeline,
        endpoint_url=proxy.url,
        sqs_queue_url=via_port(pipeline.queue_url, proxy.port),
        dead_letter_queue_url=via_port(pipeline.dlq_url, proxy.port),
        visibility_timeout_seconds=6,
        retry={"max_attempts": 10, "base_delay_seconds": 1, "max_delay_seconds": 2},
    )
    config.update(overrides)
    return config


def assert_everything_delivered(
    emulator: Emulator,
    pipeline: Pipeline,
    daemon: DaemonProcess,
    folder: Path,
    objects: dict[str, bytes],
    *,
    timeout: float = 90.0,
) -> None:
    """Every object on disk byte for byte, nothing partial, queue and DLQ empty."""

    def landed() -> bool:
        files = visible_files(folder)
        return all(files.get(key) == body for key, body in objects.items())

    daemon.wait_for(landed, timeout=timeout, what=f"{len(objects)} objects on disk")
    # daemon.wait_for fails at once if the daemon exits (a crash), with its last words.
    daemon.wait_for(
        lambda: emulator.queue_counts(pipeline.queue_url) == (0, 0),
        timeout=timeout,
        what=f"an empty queue (now {emulator.queue_counts(pipeline.queue_url)})",
    )
    assert visible_files(folder) == objects
    # A message whose visibility could not be extended comes back and may be downloaded again
    # and deleted while its first download is still running (a slow GET): that one's temp file
    # goes when it finishes. Nothing partial is ever at a final path (checked above).
    daemon.wait_for(
        lambda: temp_files(folder) == [], timeout=timeout, what="no temp file left behind"
    )
    assert pipeline.dlq_url is not None
    assert emulator.queue_counts(pipeline.dlq_url) == (0, 0)
    assert daemon.events("message.dead_lettered") == []
    assert daemon.events("message.left_for_redrive") == []
    assert daemon.running(), daemon.describe()


def assert_nothing_held(daemon: DaemonProcess, notify: NotifySocket) -> None:
    """The queue is empty, so the daemon must hold no message: STATUS says "in flight 0",
    and SIGTERM finds nothing to drain (no drain timeout)."""
    daemon.wait_for(
        lambda: (notify.values("STATUS") or [""])[-1].startswith("in flight 0,"),
        timeout=10,
        what=f"STATUS 'in flight 0' (last: {(notify.values('STATUS') or [''])[-1]!r})",
    )
    assert daemon.stop(timeout=30) == 0
    assert daemon.events("daemon.drain_timeout") == []


def unexpected_problems(daemon: DaemonProcess) -> list[str]:
    return [p for p in daemon.problems() if not any(e in p for e in EXPECTED_ERRORS)]


# ---- every fault class on GetObject ------------------------------------------------------------


@pytest.mark.parametrize("fault", FAULTS)
def test_get_object_faults_end_with_every_object_on_disk(
    emulator: Emulator,
    proxy: FaultProxy,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    fault: str,
) -> None:
    """The first 4 GETs of one object and 3 more GETs of any object are faulted. Errors and
    resets are retried by botocore (4 attempts): the 4 in a row on one object surface as a
    message.retry (fetch_failed), the others are hidden. Body faults (reset mid-body,
    truncation, flipped byte) always reach the daemon, which refuses the bytes, removes the
    temp file and retries: one message.retry per applied fault. In the end all is on disk."""
    pipeline = emulator.pipeline()
    objects = objects_for(fault)
    target = f"{fault}/mid.bin"
    delay = 1.0 if fault == LATENCY else 0.0
    focused = proxy.add_rule(operation="GetObject", fault=fault, count=4, match=target, delay=delay)
    spread = proxy.add_rule(operation="GetObject", fault=fault, count=3, delay=delay)
    put_objects(emulator.client("s3"), pipeline.bucket, objects)
    daemon = spawn_daemon(proxied_config(make_config, pipeline, proxy))
    assert_everything_delivered(emulator, pipeline, daemon, download_folder, objects)

    assert focused.fired == (1 if fault == LATENCY else 4)  # latency: one GET is enough
    assert spread.fired == 3
    applied = proxy.faults[("GetObject", fault)] - proxy.skipped[("GetObject", fault)]
    assert applied >= focused.fired, (proxy.faults, proxy.skipped)
    retries = daemon.events("message.retry")
    on_target = [r for r in retries if target in str(r.get("error"))]
    if fault in BODY_FAULTS:
        # Not retryable by botocore: every applied body fault is one daemon-level retry.
        assert len(retries) == applied, [r.get("error") for r in retries]
        assert [int(r["receive_count"]) for r in on_target] == [1, 2, 3, 4]
        reasons = {r["reason"] for r in retries}
        if fault == FLIP_BYTE:
            assert reasons == {"integrity_mismatch"}
        else:  # a broken read, or (old urllib3) a short body caught by the length check
            assert reasons <= {"fetch_failed", "integrity_mismatch"}, reasons
    elif fault == LATENCY:
        assert retries == []  # latency alone is not a failure
    else:
        assert len(on_target) == 1, [r.get("error") for r in retries]
        assert {r["reason"] for r in retries} == {"fetch_failed"}
    downloads = daemon.events("object.downloaded")
    assert sorted({e["key"] for e in downloads}) == sorted(objects)
    assert unexpected_problems(daemon) == []
    assert daemon.stop() == 0


# ---- faults on the SQS calls -------------------------------------------------------------------

# Each of these once broke the daemon (docs/reliability.md, "Defects found"): an answer
# botocore cannot parse escaped the loop thread (exit 70), and a cut-off DeleteMessageBatch
# answer parsed as {} orphaned leases until receiving stopped.
SQS_CASES = [
    pytest.param(
        op,
        fault,
        id=f"{op}-{fault}",
    )
    for op in ("ReceiveMessage", "DeleteMessageBatch", "ChangeMessageVisibilityBatch")
    for fault in FAULTS
]


@pytest.mark.parametrize(("operation", "fault"), SQS_CASES)
def test_sqs_faults_end_with_every_object_on_disk(
    emulator: Emulator,
    proxy: FaultProxy,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    notify_socket: NotifySocket,
    operation: str,
    fault: str,
) -> None:
    """The next 4 calls of one SQS operation are faulted (more than botocore retries). A
    lost ReceiveMessage answer leaves messages in flight until their visibility timeout; a
    lost DeleteMessageBatch answer, a delivery again; a failed visibility change, a lease
    that runs out. Whatever happens, every object ends on disk and the queue empty.

    ChangeMessageVisibilityBatch is called for renewals and retries: the first GET fails
    outright (4 x 503) so a retry needs one, and 7 s of latency on one GET makes a renewal
    due (visibility timeout 6 s)."""
    pipeline = emulator.pipeline()
    objects = objects_for(f"{operation}-{fault}")
    rule = proxy.add_rule(
        operation=operation, fault=fault, count=4, delay=1.0 if fault == LATENCY else 0.0
    )
    if operation == "ChangeMessageVisibilityBatch":
        proxy.add_rule(operation="GetObject", fault=SLOW_DOWN, count=4)
        proxy.add_rule(operation="GetObject", fault=LATENCY, count=1, delay=7.0)
    put_objects(emulator.client("s3"), pipeline.bucket, objects)
    daemon = spawn_daemon(proxied_config(make_config, pipeline, proxy), notify=notify_socket)
    assert_everything_delivered(emulator, pipeline, daemon, download_folder, objects)

    assert_nothing_held(daemon, notify_socket)
    if fault in (LATENCY, TRUNCATE_BODY, FLIP_BYTE):
        # Slow, or spoilt after the call took effect: fewer calls may be needed.
        assert 1 <= rule.fired <= 4, proxy.counts
    else:
        assert rule.fired == 4, proxy.counts
    assert proxy.faults[(operation, fault)] == rule.fired
    assert unexpected_problems(daemon) == []


# ---- corrupted for good: the dead-letter path --------------------------------------------------


@pytest.mark.parametrize("fault", [FLIP_BYTE, TRUNCATE_BODY])
def test_object_corrupted_on_every_get_is_dead_lettered(
    emulator: Emulator,
    proxy: FaultProxy,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    fault: str,
) -> None:
    """Every GET of one object is corrupted: its message is retried (message.retry with
    receive counts 1, 2), then dead-lettered on attempt 3 as too_many_attempts with the
    original body; no file at its final path, no temp file; the other objects arrive."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    bad_key = f"{fault}/doomed/forever.bin"
    good = objects_for(f"{fault}-good")
    proxy.add_rule(operation="GetObject", fault=fault, match=bad_key)
    s3 = emulator.client("s3")
    put_objects(s3, pipeline.bucket, {bad_key: os.urandom(200_000)})
    put_objects(s3, pipeline.bucket, good)
    config = proxied_config(
        make_config,
        pipeline,
        proxy,
        retry={"max_attempts": 3, "base_delay_seconds": 1, "max_delay_seconds": 2},
    )
    daemon = spawn_daemon(config)
    dead = daemon.wait_for_event("message.dead_lettered", timeout=90)
    daemon.wait_for(
        lambda: all(visible_files(download_folder).get(k) == v for k, v in good.items()),
        timeout=60,
        what="the good objects",
    )
    wait_queue_empty(emulator, pipeline.queue_url, timeout=60)

    assert dead["reason"] == "too_many_attempts"
    assert int(dead["receive_count"]) == 3
    retries = daemon.events("message.retry", message_id=dead["message_id"])
    assert [int(r["receive_count"]) for r in retries] == [1, 2]
    wanted = "integrity_mismatch" if fault == FLIP_BYTE else "fetch_failed"
    assert {r["reason"] for r in retries} <= {wanted, "integrity_mismatch", "fetch_failed"}
    if fault == FLIP_BYTE:
        assert {r["reason"] for r in retries} == {"integrity_mismatch"}
    (message,) = receive_all(emulator.client("sqs"), pipeline.dlq_url, count=1, timeout=30)
    assert attribute(message, "s3sqsd.reason") == "too_many_attempts"
    assert attribute(message, "s3sqsd.receive_count") == "3"
    assert attribute(message, "s3sqsd.source_message_id") == dead["message_id"]
    (record,) = json.loads(message["Body"])["Records"]  # the original body, as S3 sent it
    assert unquote_plus(record["s3"]["object"]["key"]) == bad_key
    assert proxy.faults[("GetObject", fault)] == 3
    assert not final_path(download_folder, bad_key).exists()
    assert visible_files(download_folder) == good
    assert temp_files(download_folder) == []
    assert len(daemon.events("message.dead_lettered")) == 1
    assert daemon.running()
    assert daemon.stop() == 0


# ---- what an orphaned lease leads to -----------------------------------------------------------


def test_unreadable_delete_answers_do_not_stop_receiving(
    emulator: Emulator,
    proxy: FaultProxy,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """Two DeleteMessageBatch answers cut short (the deletes themselves took effect): an
    object uploaded afterwards must still be downloaded."""
    pipeline = emulator.pipeline()
    rule = proxy.add_rule(operation="DeleteMessageBatch", fault=TRUNCATE_BODY, count=2)
    daemon = spawn_daemon(proxied_config(make_config, pipeline, proxy, workers=1))
    s3 = emulator.client("s3")
    for n in (1, 2):
        put_objects(s3, pipeline.bucket, {f"stall/{n}.txt": b"early"})
        daemon.wait_for_event("object.downloaded", key=f"stall/{n}.txt", timeout=30)
    daemon.wait_for(lambda: rule.exhausted, timeout=30, what="both answers cut")
    put_objects(s3, pipeline.bucket, {"stall/3.txt": b"later"})
    daemon.wait_for(
        lambda: visible_files(download_folder).get("stall/3.txt") == b"later",
        timeout=30,
        what="the object uploaded after the two cut-off answers",
    )
    assert daemon.stop(timeout=30) == 0
