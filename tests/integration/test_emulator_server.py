"""tests/support/emulator_server.py (the benchmark's emulator) keeps connections alive, as AWS
does, without breaking framing.

The benchmark's figures depend on it: with a new TCP connection per request every client, the
delay proxy and the emulator pay connection set-up per file. These tests run the real emulator
process and real boto3 clients, and count the connections it accepted (its ``stats``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.emulator import emulator_client
from tests.support.emulator_server import EmulatorProcess

pytestmark = pytest.mark.integration


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    process = EmulatorProcess()
    try:
        yield process
    finally:
        process.stop()


def _client(emulator: EmulatorProcess, service: str) -> Any:
    # One connection in the pool: every request after the first must reuse it.
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=1)
    return emulator_client(service, endpoint=emulator.endpoint, config=config)


def test_one_client_uses_one_connection_for_many_requests(emulator: EmulatorProcess) -> None:
    s3 = _client(emulator, "s3")
    sqs = _client(emulator, "sqs")
    before = emulator.requests()["connections"]
    s3.create_bucket(Bucket="keepalive")
    for i in range(10):
        s3.put_object(Bucket="keepalive", Key=f"k{i}", Body=b"x" * 4096)
    for i in range(10):
        body = s3.get_object(Bucket="keepalive", Key=f"k{i}")["Body"].read()
        assert body == b"x" * 4096
    url = sqs.create_queue(QueueName="keepalive")["QueueUrl"]
    for _ in range(5):
        sqs.send_message(QueueUrl=url, MessageBody="m")
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert len(received) == 5
    accepted = emulator.requests()["connections"] - before
    # 28 requests from two clients with one pooled connection each.
    assert 1 <= accepted <= 2, accepted


def test_a_body_the_app_did_not_read_does_not_corrupt_the_next_request(
    emulator: EmulatorProcess,
) -> None:
    """An error answered before the body is read (no such bucket): the rest of that body is
    skipped exactly, so the next request on the same connection is parsed as a request."""
    s3 = _client(emulator, "s3")
    s3.create_bucket(Bucket="framing")
    payload = bytes(range(256)) * 1200  # 300 KiB: more than one socket read
    before = emulator.requests()["connections"]
    for _ in range(3):
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket="no-such-bucket-here", Key="k", Body=payload)
        assert caught.value.response["Error"]["Code"] == "NoSuchBucket"
        s3.put_object(Bucket="framing", Key="k", Body=payload)
        assert s3.get_object(Bucket="framing", Key="k")["Body"].read() == payload
        head = s3.head_object(Bucket="framing", Key="k")
        assert head["ContentLength"] == len(payload)
    assert emulator.requests()["connections"] - before <= 1


def test_receives_hand_out_each_visible_message_once_and_counts_stay_right(
    emulator: EmulatorProcess,
) -> None:
    """The receive walks the queue lazily (fix 2): still every message once per visibility
    period, in-flight ones skipped, counts over the whole queue, and a long poll that waits."""
    sqs = _client(emulator, "sqs")
    url = sqs.create_queue(QueueName="lazy")["QueueUrl"]
    for i in range(25):
        sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
    seen: list[str] = []
    for _ in range(3):
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get(
            "Messages", []
        )
        seen += [m["Body"] for m in got]
    assert sorted(seen) == sorted(f"m{i}" for i in range(25))
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "25"
    started = time.monotonic()
    empty = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
    assert empty == []
    assert time.monotonic() - started >= 0.9
    assert emulator.queue_stats(url)["received"] == 25
