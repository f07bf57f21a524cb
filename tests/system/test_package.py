"""The built .deb: lintian, what installing it does, and systemd's own checks of the unit."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.system.conftest import UNIT, Host, Machine, cannot_run
from tests.system.machine import SYSTEM_PATH, missing_tools

pytestmark = pytest.mark.system

MAX_EXPOSURE = 2.0
INSTANCE = "s3sqsd@feed.service"  # an instance of the template s3sqsd@.service


def test_lintian_is_clean(host: Host, deb: Path) -> None:
    """No errors and no warnings (overrides, if ever needed, carry a comment saying why)."""
    if missing_tools(["lintian"]):
        cannot_run("lintian is not installed (sudo packaging/build-deps.sh)")
    result = subprocess.run(
        ["lintian", "--fail-on", "error,warning", "--display-info", str(deb)],
        env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "HOME": str(host.workdir)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    tags = [line for line in result.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert not tags, result.stdout
    assert result.returncode == 0, result.stdout + result.stderr


def test_install_creates_user_and_files_but_does_not_start(machine: Machine) -> None:
    """Installed, not enabled, not started; a static system user; secrets file 0640."""
    passwd = machine.run("getent", "passwd", "s3sqsd").stdout.strip().split(":")
    assert passwd[5] == "/var/lib/s3sqsd"
    assert passwd[6] in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")
    assert int(passwd[2]) < 1000, "a system user"
    assert machine.run("getent", "group", "s3sqsd").returncode == 0

    stat = machine.run("stat", "-c", "%a %U %G", "/etc/default/s3sqsd").stdout.split()
    assert stat == ["640", "root", "s3sqsd"]
    conffiles = machine.run("dpkg-query", "-W", "-f=${Conffiles}", "s3sqsd").stdout
    assert "/etc/s3sqsd/config.yaml" in conffiles
    assert "/etc/default/s3sqsd" in conffiles

    assert machine.run("systemctl", "is-enabled", UNIT, check=False).stdout.strip() == "disabled"
    assert machine.prop("ActiveState") == "inactive"
    # The template is installed and nothing of it enabled or started (no instance exists yet).
    assert machine.exists("/lib/systemd/system/s3sqsd@.service")
    instances = machine.run(
        "systemctl", "list-units", "--all", "--plain", "--no-legend", "s3sqsd@*"
    )
    assert instances.stdout.strip() == ""
    assert machine.run("find", "/etc/systemd/system", "-name", "s3sqsd@*").stdout == ""
    assert machine.run("s3sqsd", "--version").stdout.strip().startswith("s3sqsd ")
    assert machine.run("man", "-w", "8", "s3sqsd").returncode == 0
    assert machine.run("man", "-w", "5", "s3sqsd.yaml").returncode == 0


def test_systemd_analyze_verify_prints_nothing(machine: Machine) -> None:
    """The unit, and an instance of the template (a template itself cannot be verified)."""
    for unit in (f"/lib/systemd/system/{UNIT}", INSTANCE):
        result = machine.run("systemd-analyze", "verify", unit, check=False)
        assert result.returncode == 0, (unit, result.stderr)
        assert result.stdout == "", result.stdout
        assert result.stderr == "", result.stderr


def test_systemd_analyze_security_exposure(machine: Machine) -> None:
    for unit in (UNIT, INSTANCE):
        result = machine.run("systemd-analyze", "security", "--no-pager", unit)
        match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
        assert match, result.stdout[-2000:]
        assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
