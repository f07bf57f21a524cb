"""Shared fixtures: one emulator per test session, started on 127.0.0.1 with port 0.

The daemon fixtures start real ``python -m s3sqsd`` processes (``tests/support/daemon.py``)
and always stop them at teardown, printing what each said (pytest shows it for failures).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess
from tests.support.emulator import REGION, AwsLikeSetup, Emulator, Pipeline
from tests.support.mounts import Mounts, mounted_under
from tests.support.notify import NotifySocket


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    emu = Emulator()
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    """A recording stand-in for systemd's ``NOTIFY_SOCKET``."""
    with NotifySocket(tmp_path) as sock:
        yield sock


@pytest.fixture
def download_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def make_config(emulator: AwsLikeSetup, download_folder: Path) -> Callable[..., dict[str, Any]]:
    """``make_config(pipeline, **overrides)``: a fast test config for ``pipeline``.

    ``emulator`` is moto's here; tests/localstack/conftest.py makes it LocalStack there.

    Short polls and backoffs keep the suite quick; an override of None removes the key.
    """

    def make(pipeline: Pipeline, **overrides: Any) -> dict[str, Any]:
        config: dict[str, Any] = {
            "aws_region": REGION,
            "sqs_queue_url": pipeline.queue_url,
            "download_folder": str(download_folder),
            "s3_bucket_name": pipeline.bucket,
            "endpoint_url": emulator.endpoint,
            "workers": 4,
            "wait_time_seconds": 1,
            "visibility_timeout_seconds": 10,
            "shutdown_timeout_seconds": 10,
            "retry": {"max_attempts": 3, "base_delay_seconds": 1, "max_delay_seconds": 2},
            "log_level": "info",
        }
        for key, value in overrides.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        return config

    return make


@pytest.fixture
def spawn_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """``spawn_daemon(config, notify=None, watchdog_usec=None, env=None)`` -> a started daemon.

    Every daemon started through it is stopped (SIGTERM, then SIGKILL) at teardown.
    """
    started: list[DaemonProcess] = []

    def spawn(
        config: dict[str, Any],
        *,
        notify: NotifySocket | None = None,
        watchdog_usec: int | None = None,
        env: dict[str, str | None] | None = None,
        command: list[str] | None = None,
    ) -> DaemonProcess:
        proc = DaemonProcess(
            config,
            workdir=tmp_path,
            notify_socket=notify.env_value if notify is not None else None,
            watchdog_usec=watchdog_usec,
            env=env,
            command=command,
            name=f"s3sqsd-{len(started) + 1}",
        )
        started.append(proc)
        return proc.start()

    yield spawn
    for proc in started:
        proc.cleanup()
        print(proc.describe(last=200))


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Mounts]:
    """tmpfs/bind mounts for one test (root only). Request it before ``spawn_daemon`` so the
    daemons stop before the unmount."""
    with mounted_under(tmp_path) as made:
        yield made
