"""The endpoint goes away for 30 seconds in the middle of a run, then comes back.

The daemon's only endpoint (S3 and SQS) is a proxy in front of the session emulator. The
proxy stops listening (new connections refused, open ones reset: the long poll in progress
breaks) for 30 s and then listens again on the same port. The emulator itself keeps running,
and S3 keeps announcing uploads into the queue meanwhile, as AWS would while this host's
network is down.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import (
    DaemonProcess,
    put_objects,
    temp_files,
    via_port,
    visible_files,
    wait_queue_empty,
)
from tests.support.emulator import Emulator
from tests.support.faultproxy import FaultProxy, proxy_for
from tests.support.notify import NotifySocket

pytestmark = pytest.mark.integration

OUTAGE_SECONDS = 30.0
WATCHDOG_USEC = 10_000_000
# systemd kills a unit whose pings stop for WatchdogSec; s3sqsd pings every quarter of it, so
# a gap above half the interval (plus scheduling slack on a busy 2-core machine) is a failure.
MAX_PING_GAP = WATCHDOG_USEC / 1e6 / 2 + 1.0


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    with proxy_for(emulator, seed=3) as fault_proxy:
        yield fault_proxy


def batch(tag: str) -> dict[str, bytes]:
    return {
        f"{tag}/empty": b"",
        f"{tag}/small.txt": f"{tag}\n".encode(),
        f"{tag}/spaced name+plus.bin": os.urandom(10_000),
        f"{tag}/large.bin": os.urandom(1_500_000),
    }


def test_thirty_second_outage_is_survived_without_a_restart(
    emulator: Emulator,
    proxy: FaultProxy,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
    download_folder: Path,
) -> None:
    """Under WATCHDOG_USEC=10 s: the daemon stays up through a 30 s outage, WATCHDOG=1 keeps
    coming (no gap above half the interval), sqs.receive.failed is logged once and
    sqs.receive.recovered once, and objects uploaded before, during and after the outage all
    arrive in the same process, with the queue empty at the end."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    config = make_config(
        pipeline,
        endpoint_url=proxy.url,
        sqs_queue_url=via_port(pipeline.queue_url, proxy.port),
        dead_letter_queue_url=via_port(pipeline.dlq_url, proxy.port),
    )
    s3 = emulator.client("s3")
    daemon = spawn_daemon(config, notify=notify_socket, watchdog_usec=WATCHDOG_USEC)
    ready_at = notify_socket.wait_for("READY=1", timeout=30)
    pid = daemon.pid

    before = batch("before")
    put_objects(s3, pipeline.bucket, before)
    daemon.wait_for_event("object.downloaded", count=len(before), timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)

    proxy.stop_listening()
    outage_started = time.monotonic()
    during = batch("during")
    put_objects(s3, pipeline.bucket, during)  # announced while the host cannot reach SQS
    failed = daemon.wait_for_event("sqs.receive.failed", timeout=OUTAGE_SECONDS)
    assert failed["level"] in ("warning", "error")
    time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
    assert daemon.running(), daemon.describe()
    assert daemon.events("sqs.receive.recovered") == []
    assert len(daemon.events("sqs.receive.failed")) == 1, [
        (e.get("code"), e.get("error")) for e in daemon.events("sqs.receive.failed")
    ]
    outage_ended = time.monotonic()
    proxy.start_listening()

    after = batch("after")
    put_objects(s3, pipeline.bucket, after)
    recovered = daemon.wait_for_event("sqs.receive.recovered", timeout=60)
    assert recovered["level"] in ("info", "warning")
    everything = before | during | after
    daemon.wait_for(
        lambda: visible_files(download_folder) == everything,
        timeout=60,
        what="every object from before, during and after the outage",
    )
    wait_queue_empty(emulator, pipeline.queue_url, timeout=30)
    checked_until = time.monotonic()

    assert visible_files(download_folder) == everything
    assert temp_files(download_folder) == []
    assert len(daemon.events("sqs.receive.failed")) == 1
    assert len(daemon.events("sqs.receive.recovered")) == 1
    assert recovered["_t"] >= outage_ended
    assert daemon.pid == pid
    assert daemon.running()
    assert len(daemon.events("daemon.starting")) == 1  # no restart
    assert notify_socket.messages().count("READY=1") == 1
    assert daemon.events("message.dead_lettered") == []
    assert emulator.queue_counts(pipeline.dlq_url) == (0, 0)

    pings = [t for t in notify_socket.times("WATCHDOG=1") if ready_at <= t <= checked_until]
    gaps = [b - a for a, b in zip([ready_at, *pings], pings, strict=False)]
    gaps.append(checked_until - pings[-1])
    widest = max(range(len(gaps)), key=gaps.__getitem__)
    start = ([ready_at, *pings])[widest]
    said = [
        f"{r['_t'] - start:+.2f} {r.get('event')} {r.get('code', '')}"
        for r in daemon.events()
        if start - 1 <= r["_t"] <= start + gaps[widest] + 1
    ]
    assert gaps[widest] <= MAX_PING_GAP, (
        f"watchdog gap of {gaps[widest]:.2f} s starting {start - outage_started:+.1f} s after "
        f"the outage began (it lasted {outage_ended - outage_started:.1f} s); around it: {said}"
    )
    during_outage = [t for t in pings if outage_started <= t <= outage_ended]
    assert len(during_outage) >= OUTAGE_SECONDS / MAX_PING_GAP

    assert daemon.stop() == 0
    assert [p for p in daemon.problems() if "sqs.receive.failed" not in p] == []
