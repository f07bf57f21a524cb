"""Credentials from /etc/default/s3sqsd never reach the journal, with every field journald
keeps (not only MESSAGE), at log_level debug, through a download, a dead letter, a reload and
a stop. tests/integration/test_secrets.py covers the daemon's own output on more error paths.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.integration.test_secrets import CREDENTIALS, NEEDLES
from tests.support.emulator import Emulator, Pipeline, wait_until
from tests.system.conftest import DEFAULTS_PATH, UNIT, Machine

pytestmark = pytest.mark.system

Upload = Callable[[Pipeline, dict[str, bytes]], dict[str, bytes]]


def test_credentials_stay_out_of_the_journal(
    machine: Machine, pipeline: Pipeline, upload: Upload, emulator: Emulator
) -> None:
    dlq_url, _ = emulator.create_queue(emulator.unique("journal-dlq"))
    machine.configure(pipeline, log_level="debug", dead_letter_queue_url=dlq_url)
    environment = {**CREDENTIALS, "AWS_EC2_METADATA_DISABLED": "true"}
    machine.write(DEFAULTS_PATH, "".join(f"{k}={v}\n" for k, v in environment.items()))

    machine.run("systemctl", "start", UNIT)
    machine.wait_active()
    machine.wait_for_event("daemon.ready")
    objects = upload(pipeline, {"journal/one.txt": b"one"})
    emulator.client("sqs").send_message(QueueUrl=pipeline.queue_url, MessageBody="not json {")
    machine.wait_downloaded(objects)
    machine.wait_for_event("message.dead_lettered")
    machine.run("systemctl", "reload", UNIT)
    machine.wait_for_event("config.reloaded")
    machine.run("systemctl", "stop", UNIT)
    wait_until(
        lambda: machine.prop("ActiveState") == "inactive", timeout=30, what=f"{UNIT} stopped"
    )
    time.sleep(0.5)  # let journald take the last lines

    # The whole journal of the machine, every field of every entry (systemd's lines about the
    # unit, the daemon's stdout, anything else), and the unit's status text.
    out = machine.run("journalctl", "--no-pager", "-o", "json", "--all").stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert any(e.get("_TRANSPORT") == "stdout" and "daemon.ready" in str(e) for e in entries)
    debug = [e for e in entries if e.get("_TRANSPORT") == "stdout" and e.get("PRIORITY") == "7"]
    assert debug, "no debug line reached the journal"
    status = machine.run("systemctl", "status", "--no-pager", "-l", UNIT, check=False).stdout
    texts = [json.dumps(e, ensure_ascii=False) for e in entries] + [status]
    found = [t[:300] for t in texts if any(needle in t for needle in NEEDLES)]
    assert found == []
