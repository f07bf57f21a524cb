"""Fixtures for the system tests: the built .deb, a cached Debian 12 root file system, and a
freshly booted container (systemd as PID 1) with the package installed, per test.

Tests marked ``system`` need root, ``systemd-nspawn``, ``mmdebstrap``, the package build tools
(``sudo packaging/build-deps.sh``) and, the first time, the Debian mirror to build the root file
system (cached in /var/cache/s3sqsd-test). When they cannot run they are skipped with the
reason, except under ``CI=true``, where they fail: CI must never pass by not testing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

from tests.support.emulator import REGION, TEST_ENV, Emulator, Pipeline, wait_until
from tests.system.machine import (
    SYSTEM_PATH,
    Container,
    MachineError,
    ensure_rootfs,
    missing_tools,
)

REPO = Path(__file__).resolve().parents[2]
UNIT = "s3sqsd.service"
CONFIG_PATH = "/etc/s3sqsd/config.yaml"
DEFAULTS_PATH = "/etc/default/s3sqsd"
DOWNLOADS = "/var/lib/s3sqsd/downloads"
UPGRADE_VERSION_SUFFIX = "+systest1"
TOOLS = ("systemd-nspawn", "mmdebstrap", "nsenter", "dpkg-buildpackage", "dh", "make")


def cannot_run(reason: str) -> NoReturn:
    """Fail under CI (a system test that does not run must not look green), else skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"system test cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@dataclass(frozen=True)
class Host:
    """Session-wide facts: where logs go and the folder bound read-only at /debs."""

    workdir: Path
    debs: Path

    @property
    def log(self) -> Path:
        return self.workdir / "system-tests.log"


@pytest.fixture(scope="session")
def host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    if os.geteuid() != 0:
        cannot_run("needs root (systemd-nspawn, nsenter)")
    missing = missing_tools(TOOLS)
    if missing:
        cannot_run(
            f"missing tools: {', '.join(missing)} (install with: sudo packaging/build-deps.sh)"
        )
    workdir = tmp_path_factory.mktemp("system")
    debs = workdir / "debs"
    debs.mkdir()
    return Host(workdir=workdir, debs=debs)


def _build_deb(host: Host, *, version: str | None = None) -> Path:
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": os.environ.get("HOME", "/root")}
    env["S3SQSD_DEB_OUTDIR"] = str(host.debs)
    if version is not None:
        env["S3SQSD_DEB_VERSION"] = version
        env["DEB_BUILD_OPTIONS"] = "nocheck"  # same tree as the first build, tested there
    before = set(host.debs.glob("*.deb"))
    with host.log.open("ab") as out:
        result = subprocess.run(
            ["make", "--no-print-directory", "deb"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=600,
            check=False,
        )
    if result.returncode != 0:
        pytest.fail(f"`make deb` failed with status {result.returncode}; see {host.log}")
    built = sorted(set(host.debs.glob("*.deb")) - before)
    if len(built) != 1:
        pytest.fail(f"`make deb` made {len(built)} new .deb files in {host.debs}, expected 1")
    return built[0]


@pytest.fixture(scope="session")
def deb(host: Host) -> Path:
    """The package, built once per session with ``make deb`` from this checkout."""
    return _build_deb(host)


@pytest.fixture(scope="session")
def upgrade_deb(host: Host, deb: Path) -> Path:
    """The same tree built as a newer Debian version, to test upgrades."""
    version = deb.name.split("_")[1] + UPGRADE_VERSION_SUFFIX
    return _build_deb(host, version=version)


@pytest.fixture(scope="session")
def rootfs(host: Host) -> Path:
    try:
        return ensure_rootfs(log=host.log)
    except (MachineError, OSError, subprocess.TimeoutExpired) as exc:
        cannot_run(f"cannot build the test root file system: {exc}")


class Machine:
    """A booted container with helpers for the s3sqsd service."""

    def __init__(self, container: Container, emulator: Emulator) -> None:
        self.container = container
        self.emulator = emulator
        self.run = container.run
        self.sh = container.sh
        self.write = container.write
        self.exists = container.exists

    # ---- package and configuration -----------------------------------------------------------

    def install(self, deb: Path) -> None:
        """``apt install ./x.deb``, as an operator would (all dependencies are in the image)."""
        self.run(
            "apt-get", "install", "-y", "-q", f"/debs/{deb.name}",
            env={"DEBIAN_FRONTEND": "noninteractive"},
        )  # fmt: skip

    def configure(
        self, pipeline: Pipeline, *, path: str = CONFIG_PATH, **overrides: Any
    ) -> dict[str, Any]:
        """Point the service (or the instance reading ``path``) at ``pipeline`` on the
        emulator; returns the config written."""
        config: dict[str, Any] = {
            "sqs_queue_url": pipeline.queue_url,
            "aws_region": REGION,
            "endpoint_url": self.emulator.endpoint,
            "wait_time_seconds": 2,
            "visibility_timeout_seconds": 20,
            "shutdown_timeout_seconds": 10,
            "workers": 4,
            "log_level": "info",
        }
        config.update(overrides)
        self.write_config(config, path=path)
        credentials = {**TEST_ENV, "AWS_EC2_METADATA_DISABLED": "true"}
        self.write(DEFAULTS_PATH, "".join(f"{k}={v}\n" for k, v in credentials.items()))
        return config

    def write_config(self, config: dict[str, Any] | str, *, path: str = CONFIG_PATH) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        self.write(path, text)

    def drop_in(self, name: str, text: str) -> None:
        self.write(f"/etc/systemd/system/{UNIT}.d/{name}.conf", text)
        self.run("systemctl", "daemon-reload")

    # ---- service state -----------------------------------------------------------------------

    def show(self, *properties: str, unit: str = UNIT) -> dict[str, str]:
        return self.container.show(unit, *properties)

    def prop(self, name: str, *, unit: str = UNIT) -> str:
        return self.show(name, unit=unit)[name]

    def journal(self, *args: str, unit: str = UNIT) -> list[dict[str, Any]]:
        """``journalctl -u UNIT -o json ARGS`` as a list of entries."""
        out = self.run("journalctl", "-u", unit, "-o", "json", "--no-pager", *args).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def daemon_records(self, *args: str, unit: str = UNIT) -> list[dict[str, Any]]:
        """The daemon's own log lines (not systemd's about it), parsed as JSON objects."""
        records = []
        for entry in self.journal(*args, unit=unit):
            if entry.get("_TRANSPORT") != "stdout":
                continue
            record = json.loads(message_text(entry))
            record["_PRIORITY"] = entry.get("PRIORITY")
            records.append(record)
        return records

    def wait_for_event(
        self, event: str, *, timeout: float = 30.0, since: str = "", unit: str = UNIT
    ) -> dict[str, Any]:
        args = ("--since", since) if since else ()

        def find() -> dict[str, Any] | None:
            records = self.daemon_records(*args, unit=unit)
            return next((r for r in records if r.get("event") == event), None)

        found: dict[str, Any] = wait_until(
            find, timeout=timeout, interval=0.3, what=f"log event {event!r}"
        )
        return found

    def wait_active(self, *, timeout: float = 30.0, unit: str = UNIT) -> dict[str, str]:
        def running() -> dict[str, str] | None:
            props = self.show("ActiveState", "SubState", "MainPID", "NRestarts", unit=unit)
            ok = props["ActiveState"] == "active" and props["SubState"] == "running"
            return props if ok else None

        props: dict[str, str] = wait_until(
            running, timeout=timeout, interval=0.2, what=f"{unit} active (running)"
        )
        return props

    def now(self) -> str:
        """The container's clock, for ``journalctl --since``."""
        return self.run("date", "+%Y-%m-%d %H:%M:%S").stdout.strip()

    # ---- downloads ---------------------------------------------------------------------------

    def downloaded(self, key: str, *, folder: str = DOWNLOADS) -> bytes | None:
        try:
            return self.container.read(f"{folder}/{key}")
        except FileNotFoundError:
            return None

    def wait_downloaded(
        self, objects: dict[str, bytes], *, timeout: float = 60.0, folder: str = DOWNLOADS
    ) -> None:
        def all_there() -> bool:
            return all(self.downloaded(k, folder=folder) == body for k, body in objects.items())

        wait_until(all_there, timeout=timeout, interval=0.3, what=f"{len(objects)} downloads")

    def temp_files(self) -> list[str]:
        """What the temp folder holds but the per-path lock file (there for good)."""
        out = self.run(
            "find",
            DOWNLOADS,
            "-path",
            f"{DOWNLOADS}/.s3sqsd-tmp/*",
            "!",
            "-path",
            f"{DOWNLOADS}/.s3sqsd-tmp/paths.lock",
            check=False,
        )
        return out.stdout.split()

    def diagnostics(self) -> str:
        """The status and journal of s3sqsd.service and of every instance of s3sqsd@.service."""
        units = "s3sqsd*"
        status = self.run("systemctl", "status", "--no-pager", "-l", units, check=False)
        journal = self.run(
            "journalctl", "-u", units, "--no-pager", "-n", "80", "-o", "cat", check=False
        )
        return f"{status.stdout}\n--- journal ---\n{journal.stdout}"


def free_port() -> int:
    """A TCP port free on the host now (the containers share the host's network)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int) -> str:
    """The metrics page at 127.0.0.1:``port``, or "" while nothing answers there."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as response:
            return str(response.read().decode())
    except OSError:
        return ""


def message_text(entry: dict[str, Any]) -> str:
    """MESSAGE as text; journalctl -o json gives a list of bytes for non-printable data."""
    message = entry.get("MESSAGE", "")
    if isinstance(message, list):
        return bytes(message).decode("utf-8", errors="replace")
    return str(message)


@pytest.fixture
def machine(
    host: Host, rootfs: Path, deb: Path, emulator: Emulator, request: pytest.FixtureRequest
) -> Iterator[Machine]:
    """A fresh container with the package installed (not configured, not started)."""
    name = f"s3sqsd-test-{uuid.uuid4().hex[:8]}"
    container = Container(rootfs, name=name, binds_ro={host.debs: "/debs"}, log=host.log)
    try:
        container.start()
    except MachineError as exc:
        cannot_run(f"cannot boot a container: {exc}")
    box = Machine(container, emulator)
    try:
        box.install(deb)
        yield box
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            with_diagnostics = box.diagnostics() if container.leader else "(container gone)"
            print(f"--- {UNIT} in {name} ---\n{with_diagnostics}")
        container.stop()


@pytest.fixture
def pipeline(emulator: Emulator) -> Pipeline:
    """Bucket -> queue, no redrive policy (so the daemon warns ``queue.no_redrive``)."""
    return emulator.pipeline(via="direct", redrive=False)


@pytest.fixture
def upload(emulator: Emulator) -> Callable[..., dict[str, bytes]]:
    """``upload(pipeline, {key: body})`` puts objects into the pipeline's bucket."""

    def put(pipeline: Pipeline, objects: dict[str, bytes]) -> dict[str, bytes]:
        s3 = emulator.client("s3")
        for key, body in objects.items():
            s3.put_object(Bucket=pipeline.bucket, Key=key, Body=body)
        return objects

    return put


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keep each phase's report on the item so fixtures can print diagnostics on failure."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
