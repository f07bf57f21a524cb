"""Several feeds on one host: instances of s3sqsd@.service side by side under a real systemd,
installed from the .deb, each against its own queue on the emulator.

One booted machine carries the whole story (a boot costs more than the checks): two instances
enabled with their default folders, their journals, their metrics, a reload of one, a stop of
one while the other keeps downloading, a third pointed at a folder in use, then remove and
purge with instances running and enabled.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.support.emulator import Emulator, Pipeline, wait_until
from tests.system.conftest import Machine, free_port, message_text, scrape

pytestmark = pytest.mark.system

Upload = Callable[[Pipeline, dict[str, bytes]], dict[str, bytes]]


def unit(name: str) -> str:
    return f"s3sqsd@{name}.service"


def folder(name: str) -> str:
    """The instance's default download folder: in its StateDirectory=s3sqsd-%i."""
    return f"/var/lib/s3sqsd-{name}/downloads"


def config_path(name: str) -> str:
    return f"/etc/s3sqsd/{name}.yaml"


def stdout_entries(machine: Machine, name: str) -> list[dict[str, object]]:
    """What `journalctl -u s3sqsd@NAME` shows of the daemon's own output."""
    return [e for e in machine.journal(unit=unit(name)) if e.get("_TRANSPORT") == "stdout"]


def test_two_instances_side_by_side(machine: Machine, emulator: Emulator, upload: Upload) -> None:
    feeds = {name: emulator.pipeline(via="direct", redrive=False) for name in ("a", "b")}
    ports = {name: free_port() for name in feeds}
    configs = {
        name: machine.configure(
            feed, path=config_path(name), metrics={"listen": f"127.0.0.1:{ports[name]}"}
        )
        for name, feed in feeds.items()
    }
    # Written without download_folder: each instance takes the default of its own.
    assert all("download_folder" not in config for config in configs.values())

    machine.run("systemctl", "enable", "--now", unit("a"), unit("b"))
    pids = {name: machine.wait_active(unit=unit(name))["MainPID"] for name in feeds}
    for name in feeds:
        assert machine.run("systemctl", "is-enabled", unit(name)).stdout.strip() == "enabled"
        owner = machine.run("stat", "-c", "%U %G %a", f"/var/lib/s3sqsd-{name}").stdout.split()
        assert owner == ["s3sqsd", "s3sqsd", "750"], (name, owner)

    # Each feed lands in its own folder, and only there.
    objects = {
        name: upload(feed, {f"{name}/one.txt": f"from {name}\n".encode()})
        for name, feed in feeds.items()
    }
    for name in feeds:
        machine.wait_downloaded(objects[name], folder=folder(name))
    assert machine.downloaded("b/one.txt", folder=folder("a")) is None
    assert machine.downloaded("a/one.txt", folder=folder("b")) is None
    assert not machine.exists("/var/lib/s3sqsd/downloads"), "the plain unit's folder was used"

    # `journalctl -u s3sqsd@a` is a's lines only, under a's own syslog identifier.
    for name, other in (("a", "b"), ("b", "a")):
        entries = stdout_entries(machine, name)
        records = [json.loads(message_text(e)) for e in entries]
        assert {e.get("SYSLOG_IDENTIFIER") for e in entries} == {f"s3sqsd@{name}"}
        [starting] = [r for r in records if r.get("event") == "daemon.starting"]
        assert starting["queue_url"] == feeds[name].queue_url
        assert starting["path"] == folder(name)
        downloaded = [r["key"] for r in records if r.get("event") == "object.downloaded"]
        assert downloaded == [f"{name}/one.txt"]
        text = json.dumps(entries)
        for foreign in (feeds[other].queue_url, feeds[other].bucket, f"{other}/one.txt"):
            assert foreign not in text, (name, foreign)

    # Metrics: each instance on its own port, each counting its own download.
    for port in ports.values():
        wait_until(
            lambda port=port: "s3sqsd_objects_downloaded_total 1.0" in scrape(port),
            timeout=20,
            what=f"the metrics on port {port}",
        )

    # `systemctl reload s3sqsd@a`: a rereads a.yaml, keeps its default folder (no restart
    # asked for), and b hears nothing of it.
    since = machine.now()
    machine.write_config({**configs["a"], "log_level": "debug"}, path=config_path("a"))
    machine.run("systemctl", "reload", unit("a"))
    reloaded = machine.wait_for_event("config.reloaded", since=since, unit=unit("a"))
    assert reloaded["keys"] == ["log_level"], reloaded
    events = {r.get("event") for r in machine.daemon_records("--since", since, unit=unit("a"))}
    assert "config.restart_required" not in events
    events_b = {r.get("event") for r in machine.daemon_records("--since", since, unit=unit("b"))}
    assert not events_b & {"config.reloaded", "config.reload_failed"}
    assert machine.show("MainPID", unit=unit("a"))["MainPID"] == pids["a"]

    # Stopping a leaves b running, and downloading; a's messages wait in a's queue.
    machine.run("systemctl", "stop", unit("a"))
    stopped = machine.show("ActiveState", "Result", "ExecMainStatus", unit=unit("a"))
    assert stopped == {"ActiveState": "inactive", "Result": "success", "ExecMainStatus": "0"}
    assert machine.wait_active(unit=unit("b"))["MainPID"] == pids["b"]
    upload(feeds["a"], {"a/while-stopped.txt": b"waits\n"})
    machine.wait_downloaded(
        upload(feeds["b"], {"b/after-a-stopped.txt": b"b goes on\n"}), folder=folder("b")
    )
    assert machine.downloaded("a/while-stopped.txt", folder=folder("a")) is None
    wait_until(
        lambda: emulator.queue_counts(feeds["a"].queue_url) == (1, 0),
        timeout=20,
        what="a's message to wait in a's queue",
    )

    _same_folder_as_a_running_instance(machine, emulator, occupied="b")
    _remove_and_purge_with_instances(machine, running=("b",), enabled=("a", "b"))


def _same_folder_as_a_running_instance(
    machine: Machine, emulator: Emulator, *, occupied: str
) -> None:
    """An instance configured to another instance's folder (and allowed to write it): one
    clear line from the second, status 78, no restart loop; the first is not disturbed."""
    before = machine.show("MainPID", "NRestarts", unit=unit(occupied))
    machine.configure(
        emulator.pipeline(via="direct", redrive=False),
        path=config_path("c"),
        download_folder=folder(occupied),
    )
    machine.write(
        f"/etc/systemd/system/{unit('c')}.d/50-folder.conf",
        f"[Service]\nReadWritePaths={folder(occupied)}\nRestartSec=1s\n",
    )
    machine.run("systemctl", "daemon-reload")
    assert machine.run("systemctl", "start", unit("c"), check=False).returncode != 0
    time.sleep(3)  # three RestartSec periods: a restart would have happened by now
    props = machine.show("ActiveState", "NRestarts", "ExecMainStatus", unit=unit("c"))
    assert props == {"ActiveState": "failed", "NRestarts": "0", "ExecMainStatus": "78"}, props
    errors = [
        json.loads(message_text(e))
        for e in machine.journal("-p", "err", unit=unit("c"))
        if e.get("_TRANSPORT") == "stdout"
    ]
    assert [e["event"] for e in errors] == ["daemon.folder_unusable"], errors
    assert f"download_folder {folder(occupied)} is in use by another s3sqsd" in errors[0]["message"]
    assert machine.show("MainPID", "NRestarts", unit=unit(occupied)) == before


def _remove_and_purge_with_instances(
    machine: Machine, *, running: tuple[str, ...], enabled: tuple[str, ...]
) -> None:
    """`apt remove` stops every running instance; `apt purge` drops the instances' enablement
    and keeps the operator's NAME.yaml files and the downloads."""
    apt = {"DEBIAN_FRONTEND": "noninteractive"}
    machine.run("apt-get", "remove", "-y", "-q", "s3sqsd", env=apt)
    for name in running:
        assert machine.show("ActiveState", unit=unit(name))["ActiveState"] in (
            "inactive",
            "failed",
        )
    assert machine.run("pgrep", "-f", "/usr/bin/s3sqsd", check=False).returncode == 1
    links = [f"/etc/systemd/system/multi-user.target.wants/{unit(name)}" for name in enabled]
    for link in links:  # remove keeps what the operator enabled (dangling until reinstalled)
        assert machine.run("test", "-L", link, check=False).returncode == 0, link

    machine.run("apt-get", "purge", "-y", "-q", "s3sqsd", env=apt)
    for link in links:
        assert machine.run("test", "-L", link, check=False).returncode != 0, link
    for name in enabled:
        assert machine.exists(config_path(name)), "an instance's file is the operator's"
        assert machine.downloaded(f"{name}/one.txt", folder=folder(name)) is not None
