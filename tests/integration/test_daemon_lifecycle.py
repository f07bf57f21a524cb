"""Lifecycle of the real daemon: readiness, watchdog, signals, crashes, the command line.

The first tests check the harness itself (notify socket, subprocess reader) without s3sqsd,
so a harness bug cannot pass for a daemon bug.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import s3sqsd
from tests.support.daemon import (
    DaemonProcess,
    TcpForwarder,
    final_path,
    put_objects,
    run_cli,
    temp_files,
    visible_files,
    wait_queue_empty,
    write_config,
)
from tests.support.emulator import Emulator, wait_until
from tests.support.notify import NotifySocket

MiB = 1024 * 1024


def emulator_address(emulator: Emulator) -> tuple[str, int]:
    parts = urlsplit(emulator.endpoint)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


# ---- the harness on its own -------------------------------------------------------------------


def test_notify_socket_records_every_field(tmp_path: Path) -> None:
    """Datagrams sent with a plain sendto are split into fields, timed, and queryable."""
    with NotifySocket(tmp_path) as notify:
        assert len(os.fsencode(notify.path)) <= 100
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"READY=1\nSTATUS=idle, 0 downloaded", notify.env_value)
            sender.sendto(b"WATCHDOG=1", notify.env_value)
            sender.sendto(b"STATUS=3 downloaded\n", notify.env_value)
            sender.sendto(b"WATCHDOG=1", notify.env_value)
        ready_at = notify.wait_for("READY=1", timeout=5)
        wait_until(lambda: len(notify.times("WATCHDOG=1")) == 2, timeout=5, what="2 pings")
        wait_until(lambda: len(notify.values("STATUS")) == 2, timeout=5, what="2 statuses")
        assert notify.values("STATUS") == ["idle, 0 downloaded", "3 downloaded"]
        pings = notify.times("WATCHDOG=1")
        assert ready_at <= pings[0] <= pings[1]
        assert notify.messages()[:2] == ["READY=1", "STATUS=idle, 0 downloaded"]
        assert notify.index("READY=1") == 0
        with pytest.raises(AssertionError, match="STOPPING=1"):
            notify.wait_for("STOPPING=1", timeout=0.2)


def test_notify_socket_path_is_short_even_for_long_directories(tmp_path: Path) -> None:
    """A tmp_path too long for sun_path falls back to a short private directory."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    with NotifySocket(deep) as notify:
        assert len(os.fsencode(notify.path)) <= 100
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"READY=1", notify.env_value)
        notify.wait_for("READY=1", timeout=5)
    assert not notify.path.exists()


FAKE_DAEMON = textwrap.dedent(
    """
    import json, os, signal, socket, sys, time
    # The handler only sets a flag: printing from it could re-enter a print the signal
    # interrupted (RuntimeError: reentrant call), as the real daemon's handlers also avoid.
    stopping = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    print("to stderr", file=sys.stderr, flush=True)
    print("this is not json", flush=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.sendto(b"READY=1", os.environ["NOTIFY_SOCKET"])
    print(json.dumps({"level": "info", "event": "daemon.ready", "message": "up"}), flush=True)
    while not stopping:
        time.sleep(0.05)
    print(json.dumps({"level": "info", "event": "daemon.stopped", "n": 1}), flush=True)
    """
)


def test_harness_reads_a_fake_daemon(
    tmp_path: Path,
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
) -> None:
    """DaemonProcess parses JSON lines, keeps the rest, passes the env and reaps the exit."""
    proc = spawn_daemon(
        {"unused": True}, notify=notify_socket, command=[sys.executable, "-c", FAKE_DAEMON]
    )
    assert proc.wait_for_event("daemon.ready", timeout=10)["message"] == "up"
    notify_socket.wait_for("READY=1", timeout=10)
    wait_until(lambda: proc.non_json, timeout=5, what="the non-JSON line")
    assert proc.non_json == ["this is not json"]
    assert proc.problems() == ["non-JSON stdout: 'this is not json'"]
    assert (tmp_path / "s3sqsd-1.yaml").read_text() == "unused: true\n"
    assert proc.running()
    proc.terminate()
    assert proc.wait_exit(5) == 0
    assert proc.events("daemon.stopped", n=1)
    assert "to stderr" in proc.stderr
    assert proc.env["NOTIFY_SOCKET"] == notify_socket.env_value
    assert "WATCHDOG_PID" not in proc.env
    with pytest.raises(AssertionError, match="exited"):
        proc.wait_for_event("never.logged", timeout=5)


def test_harness_kill9_reaps(
    spawn_daemon: Callable[..., DaemonProcess], notify_socket: NotifySocket
) -> None:
    """kill9 really kills: the status is -SIGKILL."""
    proc = spawn_daemon({}, notify=notify_socket, command=[sys.executable, "-c", FAKE_DAEMON])
    proc.wait_for_event("daemon.ready", timeout=10)
    assert proc.kill9() == -signal.SIGKILL
    assert not proc.running()


# ---- readiness and watchdog ---------------------------------------------------------------------


@pytest.mark.integration
def test_ready_watchdog_and_status(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
) -> None:
    """READY=1 once running; with WATCHDOG_USEC=2 s, pings never more than 1 s apart while
    idle in 20 s long polls (the default wait); STATUS= lines carry counters."""
    pipeline = emulator.pipeline()
    daemon = spawn_daemon(
        make_config(pipeline, wait_time_seconds=None),  # the default, 20 s long polls
        notify=notify_socket,
        watchdog_usec=2_000_000,
    )
    ready_at = notify_socket.wait_for("READY=1", timeout=30)
    window_end = ready_at + 5.0
    time.sleep(max(0.0, window_end - time.monotonic()))  # measuring a 5 s window
    pings = [t for t in notify_socket.times("WATCHDOG=1") if ready_at <= t <= window_end]
    marks = [ready_at, *pings, window_end]
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(marks)]
    assert daemon.running(), daemon.describe()
    assert len(pings) >= 5, f"only {len(pings)} WATCHDOG=1 in 5 s; gaps {gaps}"
    assert max(gaps) <= 1.0 + 0.25, f"watchdog gaps {gaps}"
    statuses = notify_socket.values("STATUS")
    assert statuses, notify_socket.messages()
    assert all(value.strip() for value in statuses)
    daemon.wait_for_event("daemon.ready", timeout=5)
    assert daemon.stop(timeout=10) == 0
    assert daemon.problems() == []


# ---- signals ------------------------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_while_idle_exits_within_two_seconds(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
    signum: int,
) -> None:
    """Idle in a 20 s long poll, the daemon stops on SIGTERM/SIGINT within 2 s with status 0,
    after telling systemd STOPPING=1."""
    pipeline = emulator.pipeline()
    daemon = spawn_daemon(make_config(pipeline, wait_time_seconds=20), notify=notify_socket)
    notify_socket.wait_for("READY=1", timeout=30)
    daemon.wait_for_event("daemon.ready", timeout=10)
    time.sleep(1.0)  # let the first 20 s long poll start: the bound must hold inside it
    signalled = time.monotonic()
    daemon.signal(signum)
    code = daemon.wait_exit(timeout=10)
    elapsed = time.monotonic() - signalled
    assert code == 0, daemon.describe()
    assert elapsed <= 2.0, f"exit took {elapsed:.2f}s after the signal (bound: 2 s)"
    ready = notify_socket.index("READY=1")
    stopping = notify_socket.index("STOPPING=1")
    assert ready is not None
    assert stopping is not None, notify_socket.messages()
    assert stopping > ready
    # The drain asks systemd for the configured time (shutdown_timeout_seconds 10 + 15 s), so a
    # drain longer than the unit's TimeoutStopSec is not cut short.
    assert notify_socket.values("EXTEND_TIMEOUT_USEC") == ["25000000"]
    names = daemon.event_names()
    assert "daemon.stopping" in names
    assert "daemon.stopped" in names
    assert (
        names.index("daemon.ready") < names.index("daemon.stopping") < names.index("daemon.stopped")
    )
    assert daemon.problems() == []


@pytest.mark.integration
def test_sigterm_during_large_download_finishes_it(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
    download_folder: Path,
) -> None:
    """SIGTERM while a 48 MiB object is downloading: the download completes, the file is
    whole at its final path, the message is deleted, and the daemon exits 0."""
    pipeline = emulator.pipeline()
    key = "large/forty-eight.bin"
    body = os.urandom(48 * MiB)
    put_objects(emulator.client("s3"), pipeline.bucket, {key: body})
    # S3 through a 16 MiB/s relay: about 3 s of download to land the signal in.
    with TcpForwarder(emulator_address(emulator), rate=16 * MiB) as slow_s3:
        daemon = spawn_daemon(
            make_config(
                pipeline,
                s3_endpoint_url=slow_s3.url,
                sqs_endpoint_url=emulator.endpoint,
                visibility_timeout_seconds=30,
                shutdown_timeout_seconds=30,
            ),
            notify=notify_socket,
        )
        wait_until(lambda: temp_files(download_folder), timeout=30, what="a temp file")
        assert not final_path(download_folder, key).exists()
        assert daemon.events("object.downloaded") == []
        daemon.terminate()
        code = daemon.wait_exit(timeout=40)
    assert code == 0, daemon.describe()
    assert final_path(download_folder, key).read_bytes() == body
    assert visible_files(download_folder).keys() == {key}
    assert temp_files(download_folder) == []
    assert emulator.queue_counts(pipeline.queue_url) == (0, 0)
    assert len(daemon.events("object.downloaded", key=key)) == 1
    assert "STOPPING=1" in notify_socket.messages()
    assert daemon.problems() == []


@pytest.mark.integration
def test_second_signal_exits_at_once_and_restart_recovers(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """A second SIGTERM during the drain exits at once without deleting the message or
    leaving a partial final file; the next start sweeps temp files and finishes the job."""
    pipeline = emulator.pipeline()
    key = "large/interrupted.bin"
    body = os.urandom(32 * MiB)
    put_objects(emulator.client("s3"), pipeline.bucket, {key: body})
    with TcpForwarder(emulator_address(emulator), rate=8 * MiB) as slow_s3:
        config = make_config(
            pipeline,
            s3_endpoint_url=slow_s3.url,
            sqs_endpoint_url=emulator.endpoint,
            visibility_timeout_seconds=5,
            shutdown_timeout_seconds=30,
        )
        first = spawn_daemon(config)
        wait_until(lambda: temp_files(download_folder), timeout=30, what="a temp file")
        first.terminate()
        first.wait_for_event("daemon.stopping", timeout=5)
        second_at = time.monotonic()
        first.terminate()
        code = first.wait_exit(timeout=10)
        elapsed = time.monotonic() - second_at
    assert elapsed <= 1.5, f"second signal: exit took {elapsed:.2f}s\n{first.describe()}"
    assert code != 0, "a forced exit is not a clean stop"
    assert first.events("daemon.forced_exit"), first.describe()
    assert first.events("object.downloaded") == []
    # Not durable, so not deleted; and no partial file where consumers look.
    visible, in_flight = emulator.queue_counts(pipeline.queue_url)
    assert visible + in_flight == 1
    assert visible_files(download_folder) == {}
    leftovers = temp_files(download_folder)

    second = spawn_daemon(make_config(pipeline, visibility_timeout_seconds=5))
    swept = second.wait_for_event("temp.swept", timeout=20)
    assert int(swept["count"]) == len(leftovers), (swept, leftovers)
    second.wait_for_event("object.downloaded", key=key, timeout=40)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert final_path(download_folder, key).read_bytes() == body
    assert temp_files(download_folder) == []
    assert second.stop() == 0


@pytest.mark.integration
def test_kill9_mid_burst_then_restart_loses_nothing(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """kill -9 in the middle of 30 downloads, then restart: every object ends on disk with the
    right bytes, nothing partial is ever at a final path, temp files are swept, queue drained."""
    pipeline = emulator.pipeline()
    objects = {
        f"burst/{i % 4}/object-{i:02d}.bin": os.urandom(200_000 + 7_919 * i) for i in range(30)
    }
    put_objects(emulator.client("s3"), pipeline.bucket, objects)
    with TcpForwarder(emulator_address(emulator), rate=2 * MiB) as slow_s3:
        first = spawn_daemon(
            make_config(
                pipeline,
                s3_endpoint_url=slow_s3.url,
                sqs_endpoint_url=emulator.endpoint,
                visibility_timeout_seconds=5,
                workers=4,
            )
        )
        first.wait_for_event("object.downloaded", count=3, timeout=30)
        first.kill9()
    done_before = {e["key"] for e in first.events("object.downloaded")}
    assert len(done_before) < len(objects), "the burst finished before the kill"
    on_disk = visible_files(download_folder)
    assert set(on_disk) <= set(objects), sorted(set(on_disk) - set(objects))
    partial = [k for k, data in on_disk.items() if data != objects[k]]
    assert partial == [], f"partial files at final paths after kill -9: {partial}"
    leftovers = temp_files(download_folder)

    second = spawn_daemon(make_config(pipeline, visibility_timeout_seconds=5, workers=4))
    # Throttled downloads were in progress, so the kill left temp files for the sweep.
    assert leftovers, "kill -9 left no temp files: the sweep was not exercised"
    swept = second.wait_for_event("temp.swept", timeout=20)
    assert int(swept["count"]) == len(leftovers), (swept, leftovers)
    second.wait_for(
        lambda: visible_files(download_folder) == objects,
        timeout=60,
        what="all 30 objects on disk with the right bytes",
    )
    wait_queue_empty(emulator, pipeline.queue_url, timeout=30)
    assert temp_files(download_folder) == []
    done_after = {e["key"] for e in second.events("object.downloaded")}
    # A file renamed into place just before the kill, its log line not yet written, comes back
    # with its message and is found already there: a duplicate, not a second download.
    in_place = {e["key"] for e in second.events("object.duplicate")}
    assert done_before | done_after | in_place == set(objects)
    assert second.stop() == 0
    assert second.problems() == []


# ---- the original four-key config --------------------------------------------------------------


@pytest.mark.integration
def test_original_four_key_config_with_endpoint_from_environment(
    emulator: Emulator,
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """The legacy config (aws_region, sqs_queue_url, download_folder, s3_bucket_name) works
    unchanged, with the endpoint given by AWS_ENDPOINT_URL."""
    pipeline = emulator.pipeline()
    config = {
        "aws_region": "us-east-1",
        "sqs_queue_url": pipeline.queue_url,
        "download_folder": str(download_folder),
        "s3_bucket_name": pipeline.bucket,
    }
    daemon = spawn_daemon(config, env={"AWS_ENDPOINT_URL": emulator.endpoint})
    daemon.wait_for_event("daemon.ready", timeout=30)
    key = "legacy/report 2024+final.csv"
    body = b"id,value\n1,2\n"
    put_objects(emulator.client("s3"), pipeline.bucket, {key: body})
    daemon.wait_for_event("object.downloaded", key=key, timeout=40)
    assert final_path(download_folder, key).read_bytes() == body
    wait_queue_empty(emulator, pipeline.queue_url)
    assert daemon.stop(timeout=5) == 0
    assert daemon.problems() == []


# ---- the command line ---------------------------------------------------------------------------


def _good_config(emulator: Emulator, folder: Path) -> dict[str, Any]:
    return {
        "aws_region": "us-east-1",
        "sqs_queue_url": f"{emulator.endpoint}/123456789012/check-config",
        "download_folder": str(folder),
        "s3_bucket_name": ["bucket-a", "bucket-b"],
        "endpoint_url": emulator.endpoint,
        "wait_time_seconds": 10,
        "retry": {"max_attempts": 4},
        "key_decoding": {"notifications": "url", "eventbridge": "none"},
        "log_level": "debug",
    }


@pytest.mark.integration
def test_check_config_accepts_a_good_file(
    emulator: Emulator, tmp_path: Path, download_folder: Path
) -> None:
    """check-config exits 0 on a valid file, via --config and via $S3SQSD_CONFIG."""
    path = write_config(tmp_path / "good.yaml", _good_config(emulator, download_folder))
    result = run_cli(["check-config", "--config", str(path)])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli(["check-config"], env={"S3SQSD_CONFIG": str(path)})
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"wait_time_second": 5}, ["wait_time_second", "wait_time_seconds"]),
        ({"wait_time_seconds": 25}, ["wait_time_seconds"]),
        (
            {"visibility_timeout_seconds": 1, "workers": 0},
            ["visibility_timeout_seconds", "workers"],
        ),
        ({"sqs_queue_url": None}, ["sqs_queue_url"]),
        ({"retry": {"max_attempt": 3}}, ["max_attempt"]),
        ({"key_decoding": {"eventbridge": "base64"}}, ["eventbridge"]),
    ],
    ids=[
        "unknown-key",
        "out-of-range",
        "two-problems",
        "missing-required",
        "nested-unknown",
        "bad-enum",
    ],
)
def test_check_config_rejects_a_bad_file(
    emulator: Emulator,
    tmp_path: Path,
    download_folder: Path,
    change: dict[str, Any],
    expected: list[str],
) -> None:
    """A bad file: exit 78, each problem on stderr naming its key, no traceback; the daemon
    itself refuses it the same way."""
    config = _good_config(emulator, download_folder)
    for key, value in change.items():
        if value is None:
            config.pop(key)
        else:
            config[key] = value
    path = write_config(tmp_path / "bad.yaml", config)
    checked = run_cli(["check-config", "--config", str(path)], timeout=30)
    assert checked.returncode == 78, (checked.stdout, checked.stderr)
    assert "Traceback" not in checked.stderr + checked.stdout
    for word in expected:
        assert word in checked.stderr, (word, checked.stderr)
    problem_lines = [line for line in checked.stderr.splitlines() if line.strip()]
    assert len(problem_lines) >= len(change), checked.stderr
    # The daemon refuses the same file with the same status; it reports each problem as a
    # JSON log line (event config.invalid) on stdout, for the journal, plus a summary on stderr.
    run = run_cli(["--config", str(path)], timeout=30)
    assert run.returncode == 78, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout
    reported = run.stderr + "".join(
        line for line in run.stdout.splitlines() if '"config.invalid"' in line
    )
    for word in expected:
        assert word in reported, (word, run.stdout, run.stderr)


@pytest.mark.integration
def test_check_config_missing_file(tmp_path: Path) -> None:
    """A missing file is a config problem (78) naming the path, via --config or the env var."""
    missing = tmp_path / "nowhere" / "config.yaml"
    for args, env in (
        (["check-config", "--config", str(missing)], None),
        (["check-config"], {"S3SQSD_CONFIG": str(missing)}),
    ):
        result = run_cli(args, env=env)
        assert result.returncode == 78, (args, result.stderr)
        assert str(missing) in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_the_daemon_refuses_a_bad_instance_name_as_a_config_error() -> None:
    """`systemctl start 's3sqsd@a b'` runs `s3sqsd --instance 'a\\x20b'`: 78 (no restart
    loop) and one JSON config.invalid line for the journal, not argparse's usage (status 2)."""
    run = run_cli(["--instance", "a\\x20b"], timeout=30)
    assert run.returncode == 78, (run.stdout, run.stderr)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    assert [line["event"] for line in lines] == ["config.invalid"], run.stdout
    assert "is not an instance name" in lines[0]["message"]
    assert "Traceback" not in run.stderr


@pytest.mark.integration
def test_check_config_rejects_unparseable_yaml(tmp_path: Path) -> None:
    """YAML that does not parse, or is not a mapping: 78, no traceback."""
    for name, text in (("broken.yaml", "sqs_queue_url: [unclosed\n"), ("list.yaml", "- a\n- b\n")):
        path = tmp_path / name
        path.write_text(text)
        result = run_cli(["check-config", "--config", str(path)])
        assert result.returncode == 78, (name, result.stderr)
        assert result.stderr.strip(), name
        assert "Traceback" not in result.stderr


@pytest.mark.integration
def test_version() -> None:
    """--version prints the package version and exits 0."""
    result = run_cli(["--version"])
    assert result.returncode == 0, result.stderr
    assert s3sqsd.__version__ in result.stdout + result.stderr


def test_reload_to_a_longer_long_poll_does_not_time_out(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """A reload raises wait_time_seconds from 1 to 20: the receive client, built at start,
    must outlast a 20 s long poll (it once timed out after 1 + 10 s and logged
    sqs.receive.failed), and objects still arrive."""
    pipeline = emulator.pipeline()
    config = make_config(pipeline)
    assert config["wait_time_seconds"] == 1
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready", timeout=30)
    write_config(daemon.config_path, {**config, "wait_time_seconds": 20})
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_event("config.reloaded", timeout=30)
    time.sleep(15)  # a 20 s poll is open now, past the 11 s the old client allowed
    assert daemon.events("sqs.receive.failed") == []
    put_objects(emulator.client("s3"), pipeline.bucket, {"after-reload.txt": b"long poll"})
    daemon.wait_for_event("object.downloaded", key="after-reload.txt", timeout=30)
    assert daemon.events("sqs.receive.failed") == []
    assert visible_files(download_folder) == {"after-reload.txt": b"long poll"}
    assert daemon.stop() == 0


def test_a_reload_moves_the_free_space_floor_and_keeps_the_bandwidth_limit(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """min_free_bytes of 1 PiB: no disk has that much, so the object waits, in hand. A reload
    lowering it to 0 lets it through at once, without a restart; the bandwidth limit changed
    in the same file is restart-only and says so."""
    pipeline = emulator.pipeline()
    config = make_config(pipeline, min_free_bytes=1 << 50, max_bandwidth_bytes_per_second=1 << 30)
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready", timeout=30)
    put_objects(emulator.client("s3"), pipeline.bucket, {"waits.txt": b"for space"})
    daemon.wait_for_event("disk.low_space", timeout=30)
    assert daemon.events("object.downloaded") == []
    write_config(
        daemon.config_path,
        {**config, "min_free_bytes": 0, "max_bandwidth_bytes_per_second": 1 << 20},
    )
    daemon.signal(signal.SIGHUP)
    reloaded = daemon.wait_for_event("config.reloaded", timeout=30)
    assert reloaded["keys"] == ["min_free_bytes"]
    (restart,) = daemon.events("config.restart_required")
    assert restart["keys"] == ["max_bandwidth_bytes_per_second"]
    daemon.wait_for_event("object.downloaded", key="waits.txt", timeout=30)
    daemon.wait_for_event("disk.space_recovered", timeout=10)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert visible_files(download_folder) == {"waits.txt": b"for space"}
    assert daemon.stop() == 0
