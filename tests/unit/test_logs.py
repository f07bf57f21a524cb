"""JSON log lines, the journal priority prefix, and the AWS libraries kept quiet."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from s3sqsd.logs import add_secrets, configure_logging, set_level, stdout_is_journal


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_one_json_object_per_line_with_stable_fields() -> None:
    out = io.StringIO()
    configure_logging(level="info", stream=out, journal=False)
    log = logging.getLogger("s3sqsd.test")
    log.info(
        "downloaded %s",
        "a b.txt",
        extra={"event": "object.downloaded", "bucket": "b", "key": "a b.txt", "size": 3},
    )
    log.warning("plain")
    first, second = (json.loads(line) for line in lines(out))
    assert first["message"] == "downloaded a b.txt"
    assert first["level"] == "info"
    assert first["event"] == "object.downloaded"
    assert (first["bucket"], first["key"], first["size"]) == ("b", "a b.txt", 3)
    assert first["time"].endswith("Z")
    assert second["level"] == "warning"
    assert second["event"] == "log"  # every line has an event name


def test_journal_prefix_carries_the_priority() -> None:
    out = io.StringIO()
    configure_logging(level="debug", stream=out, journal=True)
    log = logging.getLogger("s3sqsd.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    prefixes = [line[:3] for line in lines(out)]
    assert prefixes == ["<7>", "<6>", "<4>", "<3>"]
    assert all(json.loads(line[3:]) for line in lines(out))


def test_unicode_keys_stay_readable() -> None:
    out = io.StringIO()
    configure_logging(level="info", stream=out, journal=False)
    logging.getLogger("s3sqsd.test").info("x", extra={"key": "café"})
    assert "café" in out.getvalue()


def test_level_filters_and_aws_libraries_stay_quiet() -> None:
    out = io.StringIO()
    configure_logging(level="debug", stream=out, journal=False)
    logging.getLogger("botocore.endpoint").debug("Authorization: AWS4-HMAC-SHA256 secret")
    logging.getLogger("urllib3.connectionpool").debug("header dump")
    logging.getLogger("s3sqsd.test").debug("ours")
    text = out.getvalue()
    assert "secret" not in text
    assert "header dump" not in text
    assert "ours" in text
    set_level("warning")
    logging.getLogger("s3sqsd.test").info("hidden")
    assert "hidden" not in out.getvalue()


def test_stdout_is_journal_matches_device_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "stream"
    with path.open("w") as stream:
        st = os.fstat(stream.fileno())
        assert stdout_is_journal(stream, environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        assert not stdout_is_journal(stream, environ={"JOURNAL_STREAM": f"{st.st_dev}:1"})
        assert not stdout_is_journal(stream, environ={"JOURNAL_STREAM": "garbage"})
        assert not stdout_is_journal(stream, environ={})


def test_a_secret_or_signature_in_any_one_field_is_redacted_and_the_others_kept() -> None:
    """The formatter decides with one scan over all string fields; a hit in any one field
    still redacts that field, and the clean fields come out unchanged."""
    out = io.StringIO()
    configure_logging(level="info", stream=out, journal=False)
    add_secrets("s3cr3t-value-1234")
    log = logging.getLogger("s3sqsd.test")
    clean = {"event": "x.y", "bucket": "b", "key": "k/1.txt", "path": "/srv/k/1.txt"}
    log.info("plain", extra={**clean, "error": "token s3cr3t-value-1234 leaked"})
    log.info("plain", extra={**clean, "error": "Credential=AKIAABCDEFGHIJKLMNOP/2024/x"})
    log.info("clean", extra=clean)
    first, second, third = (json.loads(line) for line in lines(out))
    assert first["error"] == "token *** leaked"
    assert "AKIAABCDEFGHIJKLMNOP" not in second["error"]
    for record in (first, second, third):
        assert {k: record[k] for k in clean} == clean
