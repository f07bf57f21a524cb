"""sd_notify through a real AF_UNIX datagram socket (path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator

import pytest

from s3sqsd.notify import Notifier


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    directory = tempfile.mkdtemp(prefix="n")  # short: AF_UNIX paths are limited to 108 bytes
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)
        os.rmdir(directory)


def notifier_for(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> Notifier:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return Notifier()


def test_ready_status_watchdog_stopping(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    notifier = notifier_for(monkeypatch, {"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready("idle")
    assert sock.recv(4096) == b"READY=1\nSTATUS=idle"
    notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    notifier.status("in flight 1")
    notifier.status("in flight 1")  # unchanged: not sent again
    notifier.status("in flight 2")
    assert sock.recv(4096) == b"STATUS=in flight 1"
    assert sock.recv(4096) == b"STATUS=in flight 2"
    notifier.reloading()
    fields = sock.recv(4096).decode().split("\n")
    assert fields[0] == "RELOADING=1"
    assert fields[1].startswith("MONOTONIC_USEC=")
    assert int(fields[1].split("=")[1]) > 0
    notifier.stopping("draining")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=draining"


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"s3sqsd-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    try:
        notifier_for(monkeypatch, {"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_outside_systemd_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    notifier = notifier_for(monkeypatch, {})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    notifier.ready()
    notifier.watchdog()


def test_broken_socket_is_reported_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = notifier_for(monkeypatch, {"NOTIFY_SOCKET": "/nonexistent/notify"})
    notifier.ready()
    notifier.watchdog()
    failures = [r for r in caplog.records if getattr(r, "event", "") == "notify.failed"]
    assert len(failures) == 1


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "junk"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(
    environ: dict[str, str], expected: float | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert notifier_for(monkeypatch, environ).watchdog_interval == expected
