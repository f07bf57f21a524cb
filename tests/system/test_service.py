"""s3sqsd.service under a real systemd, installed from the .deb, against the emulator.

Each test gets a freshly booted container with the package installed (see conftest.py); the
emulator runs in this process on 127.0.0.1, which the container shares.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.emulator import Emulator, Pipeline, wait_until
from tests.system.conftest import CONFIG_PATH, UNIT, Machine, message_text

pytestmark = pytest.mark.system

Upload = Callable[[Pipeline, dict[str, bytes]], dict[str, bytes]]

# systemd's ExecMainCode: CLD_EXITED (the process called exit) vs CLD_KILLED (by a signal).
CLD_EXITED = "1"
INSTANCE = "s3sqsd@feed.service"


def blobs(prefix: str, count: int, size: int) -> dict[str, bytes]:
    return {f"{prefix}/{i:04d}.bin": os.urandom(size) for i in range(count)}


def test_enable_now_downloads_and_logs_json(
    machine: Machine, pipeline: Pipeline, upload: Upload
) -> None:
    """Checks 1-3: READY before `enable --now` returns; a file lands owned by s3sqsd; JSON logs."""
    machine.configure(pipeline)

    machine.run("systemctl", "enable", "--now", UNIT)
    # Type=notify: the start job (and so systemctl) completes only once the daemon sent READY=1.
    props = machine.show("ActiveState", "SubState", "UnitFileState", "StatusText")
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), props
    assert props["UnitFileState"] == "enabled"
    assert "Active: active (running)" in machine.run("systemctl", "status", UNIT).stdout

    objects = upload(
        pipeline, {"incoming/report one.csv": b"a,b\n1,2\n", "x/y/z.bin": b"\0" * 4096}
    )
    machine.wait_downloaded(objects)
    for key in objects:
        path = f"/var/lib/s3sqsd/downloads/{key}"
        owner = machine.run("stat", "-c", "%U %G %a", path).stdout.split()
        assert owner == ["s3sqsd", "s3sqsd", "640"], (key, owner)
    assert machine.temp_files() == []

    # Every line the daemon wrote is a JSON object, and journald took its priority from the
    # <N> prefix (so PRIORITY is the record's level, not the default 6 for everything).
    entries = [e for e in machine.journal() if e.get("_TRANSPORT") == "stdout"]
    assert entries, "the daemon logged nothing"
    levels = {"debug": "7", "info": "6", "warning": "4", "error": "3", "critical": "2"}
    for entry in entries:
        record = json.loads(message_text(entry))
        assert isinstance(record, dict), entry
        assert "PRIORITY" in entry
        if "level" in record:
            assert entry["PRIORITY"] == levels[record["level"]], record
    warnings = machine.journal("-p", "warning")
    assert any("queue.no_redrive" in message_text(e) for e in warnings), warnings


def test_reload_applies_changes_and_refuses_a_broken_file(
    machine: Machine, pipeline: Pipeline, upload: Upload
) -> None:
    """Check 4: `systemctl reload` applies log_level; a broken file is refused, service stays."""
    config = machine.configure(pipeline, log_level="info")
    machine.run("systemctl", "start", UNIT)
    main_pid = machine.wait_active()["MainPID"]
    machine.wait_for_event("daemon.ready")

    since = machine.now()
    machine.write_config({**config, "log_level": "debug"})
    machine.run("systemctl", "reload", UNIT)
    machine.wait_for_event("config.reloaded", since=since)
    machine.wait_downloaded(upload(pipeline, {"after-reload.txt": b"debug on\n"}))
    wait_until(
        lambda: any(r["_PRIORITY"] == "7" for r in machine.daemon_records("--since", since)),
        timeout=20,
        what="a debug line after reloading with log_level: debug",
    )

    since = machine.now()
    machine.write_config({**config, "workers": 0, "log_level": "debug"})
    machine.run("systemctl", "reload", UNIT)
    failed = machine.wait_for_event("config.reload_failed", since=since)
    assert "workers" in str(failed), failed
    props = machine.wait_active()
    assert props["MainPID"] == main_pid, "a refused reload must not restart the daemon"
    assert props["NRestarts"] == "0"
    check = machine.run("s3sqsd", "check-config", "--config", CONFIG_PATH, check=False)
    assert check.returncode == 78, check.stderr
    # Still working, on the old configuration.
    machine.wait_downloaded(upload(pipeline, {"after-refused-reload.txt": b"still here\n"}))


def test_stop_during_a_burst_drains_then_start_finishes(
    machine: Machine, pipeline: Pipeline, upload: Upload, emulator: Emulator
) -> None:
    """Check 5: stop mid-burst exits 0 within TimeoutStopSec, nothing partial; start finishes."""
    machine.configure(pipeline, workers=2, shutdown_timeout_seconds=10)
    objects = upload(pipeline, blobs("burst", 150, 256 * 1024))
    digests = {key: hashlib.sha256(body).hexdigest() for key, body in objects.items()}

    # Enabled, so systemd keeps the unit loaded after the stop and ExecMain* stay readable.
    machine.run("systemctl", "enable", "--now", UNIT)
    wait_until(
        lambda: sum(machine.downloaded(k) is not None for k in list(objects)[:40]) >= 5,
        timeout=60,
        interval=0.1,
        what="the burst to be under way",
    )
    limit = _timeout_stop_seconds(machine)
    started = time.monotonic()
    machine.run("systemctl", "stop", UNIT, timeout=limit + 30)
    took = time.monotonic() - started
    props = machine.show("ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    assert took < limit, f"stop took {took:.1f}s, TimeoutStopSec is {limit}s"
    assert props["ActiveState"] == "inactive"
    assert props["Result"] == "success", props
    assert (props["ExecMainCode"], props["ExecMainStatus"]) == (CLD_EXITED, "0"), props

    present = {k for k in objects if machine.downloaded(k) is not None}
    for key in present:
        got = machine.downloaded(key)
        assert got is not None, key
        assert hashlib.sha256(got).hexdigest() == digests[key], f"{key} is not the object"

    assert machine.temp_files() == [], "a clean drain leaves no temporary files"
    assert len(present) < len(objects), "the burst finished before the stop; make it bigger"

    machine.run("systemctl", "start", UNIT)
    machine.wait_downloaded(objects, timeout=120)
    wait_until(
        lambda: emulator.queue_counts(pipeline.queue_url) == (0, 0),
        timeout=30,
        what="the queue to be empty",
    )


def _timeout_stop_seconds(machine: Machine) -> float:
    """TimeoutStopUSec as systemd reports it (``1min``, ``45s``, ``1min 30s``)."""
    from tests.system.test_static import seconds

    return seconds(machine.prop("TimeoutStopUSec"))


def test_watchdog_restarts_a_hung_loop(
    machine: Machine, pipeline: Pipeline, upload: Upload
) -> None:
    """Check 6: SIGSTOP on the main process trips the watchdog; systemd restarts the daemon."""
    machine.configure(pipeline)
    machine.drop_in("50-test-watchdog", "[Service]\nWatchdogSec=4s\nRestartSec=1s\n")
    machine.run("systemctl", "start", UNIT)
    before = machine.wait_active()
    assert before["NRestarts"] == "0"
    time.sleep(5)  # longer than WatchdogSec: a live loop keeps pinging
    assert machine.show("MainPID", "NRestarts") == {
        "MainPID": before["MainPID"],
        "NRestarts": "0",
    }, "the watchdog fired although the loop was alive"

    machine.run("kill", "-STOP", before["MainPID"])
    wait_until(
        lambda: machine.prop("NRestarts") != "0",
        timeout=30,
        interval=0.2,
        what="a watchdog restart",
    )
    after = machine.wait_active()
    assert after["MainPID"] != before["MainPID"]
    systemd_lines = " ".join(message_text(e) for e in machine.journal() if e.get("_PID") == "1")
    assert "Watchdog timeout" in systemd_lines
    machine.wait_downloaded(upload(pipeline, {"after-watchdog.txt": b"alive\n"}))


def test_config_error_fails_once_and_names_the_key(machine: Machine, pipeline: Pipeline) -> None:
    """Check 7: a bad config fails the unit with 78, no restart loop, the key in the journal."""
    config = machine.configure(pipeline)
    machine.write_config({**config, "workers": 0, "bogus_key": 1})
    machine.drop_in("50-test-restart", "[Service]\nRestartSec=1s\n")

    start = machine.run("systemctl", "start", UNIT, check=False)
    assert start.returncode != 0
    time.sleep(3)  # three RestartSec periods: a restart would have happened by now
    props = machine.show("ActiveState", "Result", "NRestarts", "ExecMainStatus")
    assert props["ActiveState"] == "failed", props
    assert props["NRestarts"] == "0", props
    assert props["ExecMainStatus"] == "78", props
    text = " ".join(message_text(e) for e in machine.journal())
    assert "bogus_key" in text, text[-3000:]
    assert "workers" in text, text[-3000:]


def test_folder_outside_the_sandbox_is_one_clear_error(
    machine: Machine, pipeline: Pipeline
) -> None:
    """A download folder the unit cannot write: one line saying to add ReadWritePaths=."""
    config = machine.configure(pipeline)
    machine.run("mkdir", "-p", "/srv/incoming")
    machine.run("chown", "s3sqsd:s3sqsd", "/srv/incoming")
    machine.write_config({**config, "download_folder": "/srv/incoming"})
    machine.drop_in("50-test-restart", "[Service]\nRestartSec=1s\n")

    start = machine.run("systemctl", "start", UNIT, check=False)
    assert start.returncode != 0
    time.sleep(3)
    props = machine.show("ActiveState", "NRestarts", "ExecMainStatus")
    assert props["ActiveState"] == "failed", props
    assert props["NRestarts"] == "0", props
    assert props["ExecMainStatus"] == "78", props
    errors = [
        json.loads(message_text(e))
        for e in machine.journal("-p", "err")
        if e.get("_TRANSPORT") == "stdout"
    ]
    assert len(errors) == 1, errors
    assert "/srv/incoming" in errors[0]["message"]
    assert "ReadWritePaths=" in errors[0]["message"]

    # The fix the message names works: a drop-in granting the folder.
    machine.drop_in("60-folder", "[Service]\nReadWritePaths=/srv/incoming\n")
    machine.run("systemctl", "reset-failed", UNIT)
    machine.run("systemctl", "start", UNIT)
    assert machine.show("ActiveState")["ActiveState"] == "active"


def test_upgrade_keeps_config_and_purge_keeps_downloads(
    machine: Machine, pipeline: Pipeline, upload: Upload, upgrade_deb: Path, emulator: Emulator
) -> None:
    """Check 8: an upgrade keeps the edited config and restarts; purge keeps the downloads."""
    machine.configure(pipeline)
    edited = machine.container.read(CONFIG_PATH)
    machine.run("systemctl", "enable", "--now", UNIT)
    objects = upload(pipeline, {"kept/forever.txt": b"survives purge\n"})
    machine.wait_downloaded(objects)
    old_pid = machine.wait_active()["MainPID"]
    # An instance of s3sqsd@.service runs too: dh_installsystemd restarts only the plain unit,
    # debian/postinst the instances; a stopped instance stays stopped.
    machine.configure(emulator.pipeline(redrive=False), path="/etc/s3sqsd/feed.yaml")
    machine.configure(emulator.pipeline(redrive=False), path="/etc/s3sqsd/idle.yaml")
    machine.run("systemctl", "start", INSTANCE, "s3sqsd@idle.service")
    machine.run("systemctl", "stop", "s3sqsd@idle.service")
    old_instance_pid = machine.wait_active(unit=INSTANCE)["MainPID"]

    machine.install(upgrade_deb)
    version = machine.run("dpkg-query", "-W", "-f=${Version}", "s3sqsd").stdout
    assert version == upgrade_deb.name.split("_")[1]
    assert machine.container.read(CONFIG_PATH) == edited, "the upgrade replaced an edited conffile"
    assert not machine.exists(f"{CONFIG_PATH}.dpkg-dist")
    after = machine.wait_active()
    assert after["MainPID"] != old_pid, "an upgrade restarts a running service"
    instance = machine.wait_active(unit=INSTANCE)
    assert instance["MainPID"] != old_instance_pid, "an upgrade restarts a running instance"
    assert machine.prop("ActiveState", unit="s3sqsd@idle.service") == "inactive"
    assert machine.run("systemctl", "is-enabled", UNIT).stdout.strip() == "enabled"

    machine.run("apt-get", "purge", "-y", "-q", "s3sqsd", env={"DEBIAN_FRONTEND": "noninteractive"})
    assert machine.show("LoadState", "ActiveState") in (
        {"LoadState": "not-found", "ActiveState": "inactive"},
        {"LoadState": "not-found", "ActiveState": "failed"},
    )
    assert machine.run("pgrep", "-f", "/usr/bin/s3sqsd", check=False).returncode == 1
    assert machine.exists("/etc/s3sqsd/feed.yaml"), "an instance's file is the operator's"
    assert not machine.exists(CONFIG_PATH)
    assert not machine.exists("/etc/default/s3sqsd")
    assert machine.run("getent", "passwd", "s3sqsd", check=False).returncode != 0
    assert machine.downloaded("kept/forever.txt") == b"survives purge\n"
