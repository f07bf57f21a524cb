"""Operating features where the unit's sandbox matters: metrics and on_download commands."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from tests.support.emulator import Pipeline, wait_until
from tests.system.conftest import UNIT, Machine, free_port, message_text, scrape

pytestmark = pytest.mark.system

Upload = Callable[[Pipeline, dict[str, bytes]], dict[str, bytes]]


def test_metrics_are_reachable_from_the_host(
    machine: Machine, pipeline: Pipeline, upload: Upload
) -> None:
    """The hardened unit may listen on loopback; the scrape shows the download."""
    port = free_port()
    machine.configure(pipeline, metrics={"listen": f"127.0.0.1:{port}"})
    machine.run("systemctl", "enable", "--now", UNIT)
    machine.wait_downloaded(upload(pipeline, {"m.txt": b"metrics\n"}))

    text = wait_until(
        lambda: (t := scrape(port)) and "s3sqsd_objects_downloaded_total 1.0" in t and t,
        timeout=20,
        what="a scrape showing the download",
    )
    assert "s3sqsd_build_info" in text


def test_on_download_runs_inside_the_sandbox(
    machine: Machine, pipeline: Pipeline, upload: Upload
) -> None:
    """The command runs as s3sqsd under the unit's hardening, can write the downloads folder,
    and its output reaches the journal tagged with the object."""
    machine.write(
        "/usr/local/lib/s3sqsd-mark",
        "#!/bin/sh\n"
        'printf "%s %s\\n" "$(id -un)" "$S3SQSD_SIZE" > "$S3SQSD_PATH.done"\n'
        'echo "marked $S3SQSD_KEY"\n',
        mode="0755",
    )
    machine.configure(
        pipeline, on_download={"command": ["/usr/local/lib/s3sqsd-mark"], "timeout_seconds": 30}
    )
    machine.run("systemctl", "enable", "--now", UNIT)
    machine.wait_downloaded(upload(pipeline, {"in/box.bin": b"12345"}))
    done = "/var/lib/s3sqsd/downloads/in/box.bin.done"
    wait_until(lambda: machine.exists(done), timeout=20, what="the command's marker")
    assert machine.container.read(done) == b"s3sqsd 5\n"
    records = [
        json.loads(message_text(e)) for e in machine.journal() if e.get("_TRANSPORT") == "stdout"
    ]
    assert any(
        r.get("event") == "command.output"
        and r.get("key") == "in/box.bin"
        and r.get("message") == "marked in/box.bin"
        for r in records
    ), records[-10:]
