"""The per-bucket guards (``expected_bucket_owner``, ``request_payer``, ``sse_customer_key_file``)
on every S3 call the daemon, its reconcile pass, ``s3sqsd sync`` and ``s3sqsd check`` make.

moto 5.2.5 enforces none of them: it serves a GET with a wrong ``ExpectedBucketOwner``, a GET
of a Requester Pays bucket without ``RequestPayer`` (it does not even keep the bucket's
payment setting), and an SSE-C object without its key or with a wrong one
(``assert_moto_enforces_no_guard`` keeps that claim honest). LocalStack 4.14 enforces SSE-C on
GET and HEAD (tests/localstack/test_sse_c.py) but neither of the other two on object calls. So
here a recording proxy in front of moto proves each guard's header is on each call that
takes it, with the value of the call's bucket; a key file that cannot be used stops the start.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import (
    DaemonProcess,
    announce,
    put_objects,
    run_cli,
    visible_files,
    wait_queue_empty,
    write_config,
)
from tests.support.emulator import ACCOUNT, Emulator
from tests.support.faultproxy import Event, FaultProxy, proxy_for

pytestmark = pytest.mark.integration

MiB = 1 << 20
SSE_KEY = b"guard-test-sse-c-key-32-bytes-Q7"
assert len(SSE_KEY) == 32
OTHER_OWNER = "111122223333"
OWNER = "x-amz-expected-bucket-owner"
PAYER = "x-amz-request-payer"
SSE_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
SSE_KEY_HEADER = "x-amz-server-side-encryption-customer-key"
SSE_MD5 = "x-amz-server-side-encryption-customer-key-md5"
# The S3 operations whose input has SSECustomerKey (botocore's model): the object reads.
TAKES_SSE_C = {"GetObject", "HeadObject"}


def key_file(folder: Path, content: bytes = SSE_KEY, mode: int = 0o600) -> Path:
    path = folder / "sse-c.key"
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    with proxy_for(emulator, seed=17) as recording:
        yield recording


def bucket_of(event: Event) -> str:
    return event.path.lstrip("/").split("/", 1)[0]


def assert_guarded(events: list[Event], owners: dict[str, str]) -> None:
    """Each S3 call carries its bucket's owner, ``requester``, and on object reads the SSE-C
    key (base64) with its MD5; no call that does not take the key carries it."""
    assert events
    sse_key = base64.b64encode(SSE_KEY).decode()
    sse_md5 = base64.b64encode(hashlib.md5(SSE_KEY, usedforsecurity=False).digest()).decode()
    for event in events:
        shown = f"{event.operation} {event.path}"
        assert event.headers.get(OWNER) == owners[bucket_of(event)], shown
        if event.operation != "HeadBucket":  # HeadBucket has no RequestPayer
            assert event.headers.get(PAYER) == "requester", shown
        if event.operation in TAKES_SSE_C:
            assert event.headers.get(SSE_ALGORITHM) == "AES256", shown
            assert event.headers.get(SSE_KEY_HEADER) == sse_key, shown
            assert event.headers.get(SSE_MD5) == sse_md5, shown
        else:
            assert SSE_KEY_HEADER not in event.headers, shown


def assert_moto_enforces_no_guard(emulator: Emulator) -> None:
    """Why the test records headers rather than watching moto refuse: moto serves a wrong
    owner, a Requester Pays bucket without the header, an SSE-C object without its key. (If a
    moto upgrade starts enforcing one, this fails: then test the refusal itself.)"""
    s3 = emulator.client("s3")
    bucket = emulator.unique("unguarded")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})
    s3.put_object(Bucket=bucket, Key="plain", Body=b"plain")
    s3.put_object(
        Bucket=bucket,
        Key="sse-c",
        Body=b"encrypted",
        SSECustomerAlgorithm="AES256",
        SSECustomerKey=SSE_KEY,
    )
    wrong_owner = s3.get_object(Bucket=bucket, Key="plain", ExpectedBucketOwner=OTHER_OWNER)
    assert wrong_owner["Body"].read() == b"plain"
    assert s3.get_object(Bucket=bucket, Key="sse-c")["Body"].read() == b"encrypted"


def test_every_s3_call_carries_its_bucket_s_guards(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    """The daemon (its reconcile pass at start, event downloads, a large object's HEAD and
    ranged GETs), then ``s3sqsd sync`` into fresh folders, then ``s3sqsd check``: every S3
    call sends the top-level guards, but a route's bucket sends the route's owner."""
    assert_moto_enforces_no_guard(emulator)
    pipeline = emulator.pipeline()
    s3 = emulator.client("s3")
    partner = emulator.unique("partner")
    s3.create_bucket(Bucket=partner)
    put_objects(s3, pipeline.bucket, {"before.txt": b"there before the start"})
    partner_data = b"partner's, before"
    put_objects(s3, partner, {"p/before.txt": partner_data})

    def config_into(root: Path) -> dict[str, Any]:
        return make_config(
            pipeline,
            endpoint_url=proxy.url,
            download_folder=None,
            s3_bucket_name=[pipeline.bucket, partner],
            expected_bucket_owner=ACCOUNT,
            request_payer="requester",
            sse_customer_key_file=str(key_file(tmp_path)),
            reconcile={"min_age_seconds": 0},
            large_objects={"threshold_bytes": MiB, "part_size_bytes": MiB, "concurrency": 2},
            routes=[
                {
                    "bucket": partner,
                    "download_folder": str(root / "partner"),
                    "expected_bucket_owner": OTHER_OWNER,
                },
                {"bucket": pipeline.bucket, "download_folder": str(root / "own")},
            ],
        )

    daemon = spawn_daemon(config_into(tmp_path / "daemon"))
    daemon.wait_for_event("reconcile.finished", timeout=30)
    large = os.urandom(MiB + MiB // 2)
    put_objects(s3, pipeline.bucket, {"large.bin": large})
    announce(emulator.client("sqs"), pipeline.queue_url, partner, "p/before.txt", partner_data)
    daemon.wait_for_event("object.downloaded", key="large.bin", timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert daemon.stop() == 0
    assert visible_files(tmp_path / "daemon" / "own") == {
        "before.txt": b"there before the start",
        "large.bin": large,
    }
    assert visible_files(tmp_path / "daemon" / "partner") == {"p/before.txt": b"partner's, before"}
    assert daemon.problems() == []
    owners = {pipeline.bucket: ACCOUNT, partner: OTHER_OWNER}
    by_daemon = [e for e in proxy.events() if e.service == "s3"]
    assert {"ListObjectsV2", "HeadObject", "GetObject"} <= {e.operation for e in by_daemon}
    assert {bucket_of(e) for e in by_daemon if e.operation == "GetObject"} == set(owners)
    assert len([e for e in by_daemon if e.path.endswith("/large.bin")]) >= 3  # HEAD + ranges
    assert_guarded(by_daemon, owners)

    sync_config = write_config(tmp_path / "sync.yaml", config_into(tmp_path / "sync"))
    done = len(proxy.events())
    result = run_cli(["sync", "--config", str(sync_config)], timeout=120)
    assert result.returncode == 0, result.stderr
    assert visible_files(tmp_path / "sync" / "partner") == {"p/before.txt": b"partner's, before"}
    by_sync = [e for e in proxy.events()[done:] if e.service == "s3"]
    assert {"ListObjectsV2", "GetObject"} <= {e.operation for e in by_sync}
    assert_guarded(by_sync, owners)

    done = len(proxy.events())
    result = run_cli(["check", "--config", str(sync_config)], timeout=60)
    by_check = [e for e in proxy.events()[done:] if e.service == "s3"]
    assert {"HeadBucket", "ListObjectsV2"} <= {e.operation for e in by_check}, result.stdout
    assert_guarded(by_check, owners)


@pytest.mark.parametrize("problem", ["group-readable", "wrong-length", "missing", "directory"])
def test_an_unusable_key_file_stops_the_start(
    problem: str,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    """Exit 78 with a message naming ``sse_customer_key_file`` and the file, never a byte of
    it (raw, base64 or hex): a file others may read (checked on its mode, so even a root test
    run sees it), a key of the wrong length, no file, a directory. ``s3sqsd check`` says the
    same and exits 78."""
    content = SSE_KEY
    if problem == "wrong-length":
        content = base64.b64encode(SSE_KEY[:24]) + b"\n"  # a 192-bit key
    path = key_file(tmp_path, content, 0o644 if problem == "group-readable" else 0o600)
    if problem == "missing":
        path.unlink()
    elif problem == "directory":
        path.unlink()
        path.mkdir(mode=0o700)
    config = make_config(emulator.pipeline(), sse_customer_key_file=str(path))
    daemon = spawn_daemon(config)
    assert daemon.wait_exit(timeout=30) == 78
    (invalid,) = daemon.events("config.invalid")
    expected = {
        "group-readable": "must be readable by the service only, is mode 0644",
        "wrong-length": "must hold a 256-bit key",
        "missing": "cannot be read",
        "directory": "is not a regular file",
    }[problem]
    assert f"sse_customer_key_file: {path}: {expected}" in invalid["message"]
    checked = run_cli(
        ["check", "--config", str(write_config(tmp_path / "check.yaml", config))], timeout=60
    )
    assert checked.returncode == 78
    assert "sse_customer_key_file" in checked.stdout + checked.stderr
    said = "\n".join([daemon.stderr, *map(str, daemon.events()), checked.stdout, checked.stderr])
    for form in (SSE_KEY, base64.b64encode(SSE_KEY), SSE_KEY.hex().encode(), SSE_KEY[:16]):
        assert form.decode() not in said
