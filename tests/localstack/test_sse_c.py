"""SSE-C (``sse_customer_key_file``) against LocalStack, which enforces it as S3 does: a GET or
HEAD of an object stored with a customer key needs that key (none: 400 InvalidRequest, another:
403 AccessDenied). moto serves such an object to anyone (tests/integration/test_guards.py), so
the refusal and the download with the right key are proven here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.daemon import (
    DaemonProcess,
    announce,
    attribute,
    receive_all,
    visible_files,
    wait_queue_empty,
)
from tests.support.localstack import LocalStack

pytestmark = pytest.mark.localstack

KEY = os.urandom(32)
WRONG_KEY = os.urandom(32)


def key_file(path: Path, key: bytes) -> Path:
    path.write_bytes(key)
    path.chmod(0o400)
    return path


def put_sse_c(s3: Any, bucket: str, key: str, data: bytes) -> None:
    s3.put_object(
        Bucket=bucket, Key=key, Body=data, SSECustomerAlgorithm="AES256", SSECustomerKey=KEY
    )


def assert_localstack_refuses_sse_c_without_its_key(localstack: LocalStack) -> None:
    """The premise of the test: without the key, or with another, the GET is refused."""
    s3 = localstack.client("s3")
    bucket = localstack.unique("ssec-probe")
    s3.create_bucket(Bucket=bucket)
    put_sse_c(s3, bucket, "k", b"data")
    for extra in ({}, {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": WRONG_KEY}):
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket=bucket, Key="k", **extra)
        assert refused.value.response["Error"]["Code"] in ("InvalidRequest", "AccessDenied")


def test_the_key_file_s_key_downloads_and_another_is_refused(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    tmp_path: Path,
) -> None:
    """With the right key an SSE-C object lands byte for byte and verified (by its checksum:
    an SSE-C ETag is no MD5 of the bytes). With a wrong key (a route's, for its bucket) the
    GET is refused: one clear line naming the bucket, the message dead-lettered as
    ``object_inaccessible``, and the daemon goes on with another bucket's object."""
    assert_localstack_refuses_sse_c_without_its_key(localstack)
    pipeline = localstack.pipeline()
    assert pipeline.dlq_url is not None
    s3 = localstack.client("s3")
    first = os.urandom(200_000)
    put_sse_c(s3, pipeline.bucket, "secret/first.bin", first)
    right = key_file(tmp_path / "right.key", KEY)
    daemon = spawn_daemon(make_config(pipeline, sse_customer_key_file=str(right)))
    done = daemon.wait_for_event("object.downloaded", key="secret/first.bin", timeout=40)
    wait_queue_empty(localstack, pipeline.queue_url)
    assert daemon.stop() == 0
    assert visible_files(download_folder) == {"secret/first.bin": first}
    assert done["verified_by"] != "length", done
    assert daemon.problems() == []

    other = localstack.unique("plain")
    s3.create_bucket(Bucket=other)
    wrong = key_file(tmp_path / "wrong.key", WRONG_KEY)
    second_folder = tmp_path / "second"
    config = make_config(
        pipeline,
        download_folder=None,
        dead_letter_queue_url=pipeline.dlq_url,
        s3_bucket_name=[pipeline.bucket, other],
        routes=[
            {
                "bucket": pipeline.bucket,
                "download_folder": str(second_folder / "own"),
                "sse_customer_key_file": str(wrong),
            },
            {"bucket": other, "download_folder": str(second_folder / "other")},
        ],
    )
    daemon = spawn_daemon(config)
    daemon.wait_for_event("daemon.ready", timeout=30)
    put_sse_c(s3, pipeline.bucket, "secret/second.bin", b"not for this key")
    dead = daemon.wait_for_event("message.dead_lettered", timeout=40)
    assert dead["reason"] == "object_inaccessible"
    plain = b"a plain object of another bucket"
    s3.put_object(Bucket=other, Key="after.txt", Body=plain)
    announce(localstack.client("sqs"), pipeline.queue_url, other, "after.txt", plain)
    daemon.wait_for_event("object.downloaded", key="after.txt", timeout=40)
    wait_queue_empty(localstack, pipeline.queue_url)
    assert daemon.running
    assert daemon.stop() == 0
    assert visible_files(second_folder / "other") == {"after.txt": plain}
    assert not (second_folder / "own" / "secret" / "second.bin").exists()
    failures = [r for r in daemon.events() if "secret/second.bin" in str(r.get("message"))]
    refused = [r for r in failures if r.get("level") in ("warning", "error")]
    assert len(refused) == 1, failures
    assert pipeline.bucket in refused[0]["message"]
    (message,) = receive_all(localstack.client("sqs"), pipeline.dlq_url, count=1, timeout=30)
    assert attribute(message, "s3sqsd.reason") == "object_inaccessible"
    said = "\n".join(str(r) for r in daemon.events()) + daemon.stderr
    said += str(message.get("MessageAttributes"))
    for form in (WRONG_KEY.hex(), WRONG_KEY.hex().upper()):
        assert form not in said
    assert WRONG_KEY.decode("latin-1") not in said
