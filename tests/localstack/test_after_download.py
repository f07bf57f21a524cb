"""after_download: delete against LocalStack, a store without conditional deletes on general
purpose buckets (LocalStack 4.14 answers If-Match on DeleteObject with 501 NotImplemented).

Versioned buckets need no condition (the delete names the version), so their sources go;
in an unversioned bucket s3sqsd never falls back to an unconditional delete, which could
remove a newer upload: the source is kept with a warning that says so, and the message is
deleted (the file is delivered). moto, which enforces If-Match, runs the 412 case
(tests/integration/test_after_download.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess, put_objects, wait_queue_empty
from tests.support.localstack import LocalStack

pytestmark = pytest.mark.localstack


@pytest.mark.parametrize("versioned", [True, False], ids=["versioned", "unversioned"])
def test_sources_go_by_version_and_are_never_deleted_unconditionally(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    versioned: bool,
) -> None:
    pipeline = localstack.pipeline(via="direct", versioned=versioned)
    s3 = localstack.client("s3")
    daemon = spawn_daemon(make_config(pipeline, after_download="delete"))
    daemon.wait_for_event("daemon.ready", timeout=30)
    put_objects(s3, pipeline.bucket, {"in/a.txt": b"inbox item\n"})
    daemon.wait_for_event("object.downloaded", timeout=40)
    wait_queue_empty(localstack, pipeline.queue_url)

    assert (download_folder / "in/a.txt").read_bytes() == b"inbox item\n"
    left = s3.list_objects_v2(Bucket=pipeline.bucket).get("Contents", [])
    if versioned:
        assert left == []
        assert s3.list_object_versions(Bucket=pipeline.bucket).get("Versions", []) == []
        assert daemon.events("source.deleted", key="in/a.txt")
        assert not daemon.events("source.kept")
    else:
        assert [o["Key"] for o in left] == ["in/a.txt"]
        [kept] = daemon.events("source.kept", key="in/a.txt")
        assert (kept["reason"], kept["level"]) == ("unconditional_only", "warning")
        assert "NotImplemented" in kept["error"]
        assert not daemon.events("source.deleted")
    assert daemon.stop() == 0
