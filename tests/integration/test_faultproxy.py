"""The fault-injecting proxy on its own, with plain boto3 clients against the emulator.

These prove the proxy does what the daemon tests rely on: it names each AWS operation in both
SQS protocols (JSON on current botocore, query on bookworm's 1.29), relays bytes unchanged when
no rule fires, keeps client connections alive, and each fault class reaches the client as the
fault it claims to be.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tests.support.emulator import REGION, TEST_ENV, Emulator, Pipeline
from tests.support.faultproxy import (
    FLIP_BYTE,
    INTERNAL_ERROR,
    LATENCY,
    RESET_BEFORE_REQUEST,
    RESET_BEFORE_RESPONSE,
    RESET_MID_BODY,
    SLOW_DOWN,
    TRUNCATE_BODY,
    FaultProxy,
)

pytestmark = pytest.mark.integration

JSON_SQS = tuple(int(x) for x in botocore.__version__.split(".")[:2]) >= (1, 31)


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    with FaultProxy(address(emulator.endpoint), seed=7) as fault_proxy:
        yield fault_proxy


def client(proxy: FaultProxy, service: str, *, retries: int | None = 0) -> Any:
    """A boto3 client through the proxy; ``retries=0``: botocore makes exactly one attempt."""
    options: dict[str, Any] = {"connect_timeout": 3, "read_timeout": 10}
    if retries is not None:
        options["retries"] = {"mode": "standard", "total_max_attempts": retries + 1}
    if service == "s3":
        options["s3"] = {"addressing_style": "path"}
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=proxy.url,
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        config=Config(**options),
    )


@pytest.fixture
def stocked(emulator: Emulator) -> tuple[Pipeline, dict[str, bytes]]:
    pipeline = emulator.pipeline(redrive=False)
    objects = {
        "plain.bin": os.urandom(300_000),
        "dir/with space+plus.txt": b"hello proxy\n" * 10,
        "empty": b"",
    }
    s3 = emulator.client("s3")
    for key, body in objects.items():
        s3.put_object(Bucket=pipeline.bucket, Key=key, Body=body)
    emulator.drain(pipeline.queue_url)
    return pipeline, objects


def test_relays_unchanged_and_names_every_operation(
    proxy: FaultProxy, stocked: tuple[Pipeline, dict[str, bytes]]
) -> None:
    """No rules: S3 and SQS calls succeed byte for byte; each is counted under its AWS
    operation name whichever SQS protocol this botocore speaks; connections are reused."""
    pipeline, objects = stocked
    s3 = client(proxy, "s3")
    sqs = client(proxy, "sqs")
    for key, body in objects.items():
        assert s3.get_object(Bucket=pipeline.bucket, Key=key)["Body"].read() == body
    assert s3.head_object(Bucket=pipeline.bucket, Key="plain.bin")["ContentLength"] == 300_000
    listed = s3.list_objects_v2(Bucket=pipeline.bucket)["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(objects)
    s3.put_object(Bucket=pipeline.bucket, Key="via-proxy.txt", Body=b"x" * 5000)
    assert s3.get_object(Bucket=pipeline.bucket, Key="via-proxy.txt")["Body"].read() == (
        b"x" * 5000
    )
    for n in range(3):
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=f"body {n} \u00e9")
    got = []
    while len(got) < 4:  # the put above notified the queue too
        got += sqs.receive_message(
            QueueUrl=pipeline.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
    entries = [{"Id": f"m{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
    changed = sqs.change_message_visibility_batch(
        QueueUrl=pipeline.queue_url,
        Entries=[{**entry, "VisibilityTimeout": 30} for entry in entries],
    )
    assert len(changed["Successful"]) == 4
    deleted = sqs.delete_message_batch(QueueUrl=pipeline.queue_url, Entries=entries)
    assert len(deleted["Successful"]) == 4
    assert {m["Body"] for m in got} >= {f"body {n} \u00e9" for n in range(3)}

    counts = proxy.counts
    assert counts["GetObject"] == 4
    assert counts["HeadObject"] == 1
    assert counts["ListObjectsV2"] == 1
    assert counts["PutObject"] == 1
    assert counts["SendMessage"] == 3
    assert counts["ReceiveMessage"] >= 1
    assert counts["ChangeMessageVisibilityBatch"] == 1
    assert counts["DeleteMessageBatch"] == 1
    assert proxy.faults == {}
    assert proxy.connections < sum(counts.values()), "client connections were not reused"


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [(INTERNAL_ERROR, 500, "InternalError"), (SLOW_DOWN, 503, "SlowDown")],
)
def test_s3_error_faults_are_aws_shaped(
    proxy: FaultProxy,
    stocked: tuple[Pipeline, dict[str, bytes]],
    fault: str,
    status: int,
    code: str,
) -> None:
    """A 500/503 fault on GetObject is an S3 XML error botocore parses into its code; the
    request is not forwarded; the next request passes."""
    pipeline, objects = stocked
    proxy.add_rule(operation="GetObject", fault=fault, count=1)
    s3 = client(proxy, "s3")
    with pytest.raises(ClientError) as caught:
        s3.get_object(Bucket=pipeline.bucket, Key="plain.bin")
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert proxy.events()[-1].status == status
    assert (
        s3.get_object(Bucket=pipeline.bucket, Key="plain.bin")["Body"].read()
        == (objects["plain.bin"])
    )
    assert proxy.faults == {("GetObject", fault): 1}


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [(INTERNAL_ERROR, 500, "InternalError"), (SLOW_DOWN, 503, "ServiceUnavailable")],
)
def test_sqs_error_faults_speak_the_clients_protocol(
    proxy: FaultProxy,
    stocked: tuple[Pipeline, dict[str, bytes]],
    fault: str,
    status: int,
    code: str,
) -> None:
    """The same faults on ReceiveMessage come back in JSON (X-Amz-Target clients) or query
    XML (Action= clients), and botocore reads the code from either."""
    pipeline, _ = stocked
    proxy.add_rule(operation="ReceiveMessage", fault=fault, count=1, code=None)
    sqs = client(proxy, "sqs")
    with pytest.raises(ClientError) as caught:
        sqs.receive_message(QueueUrl=pipeline.queue_url, WaitTimeSeconds=0)
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert proxy.faults == {("ReceiveMessage", fault): 1}
    headers = caught.value.response["ResponseMetadata"]["HTTPHeaders"]
    expected_type = "application/x-amz-json-1.0" if JSON_SQS else "text/xml"
    assert headers["content-type"] == expected_type


def test_botocore_retries_hide_a_single_error(
    proxy: FaultProxy, stocked: tuple[Pipeline, dict[str, bytes]]
) -> None:
    """With botocore's own retries (standard mode, 3 attempts) one 503 and one reset are
    invisible to the caller: the proxy counted them, the call still succeeded."""
    pipeline, objects = stocked
    proxy.add_rule(operation="GetObject", fault=SLOW_DOWN, count=1)
    proxy.add_rule(operation="GetObject", fault=RESET_BEFORE_RESPONSE, count=1)
    s3 = client(proxy, "s3", retries=2)
    body = s3.get_object(Bucket=pipeline.bucket, Key="plain.bin")["Body"].read()
    assert body == objects["plain.bin"]
    assert proxy.faults == {("GetObject", SLOW_DOWN): 1, ("GetObject", RESET_BEFORE_RESPONSE): 1}
    assert proxy.counts["GetObject"] == 3


def test_reset_before_request_versus_before_response(
    emulator: Emulator, proxy: FaultProxy, stocked: tuple[Pipeline, dict[str, bytes]]
) -> None:
    """A reset before forwarding means nothing happened; a reset before the response means
    the call took effect and only its answer was lost (the dangerous case for SQS)."""
    pipeline, _ = stocked
    sqs = client(proxy, "sqs")
    proxy.add_rule(operation="SendMessage", fault=RESET_BEFORE_REQUEST, count=1)
    with pytest.raises(BotoCoreError):
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="never sent")
    assert emulator.queue_counts(pipeline.queue_url) == (0, 0)
    proxy.add_rule(operation="SendMessage", fault=RESET_BEFORE_RESPONSE, count=1)
    with pytest.raises(BotoCoreError):
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody="sent, answer lost")
    assert emulator.queue_counts(pipeline.queue_url) == (1, 0)
    emulator.drain(pipeline.queue_url)


def test_body_faults_on_get_object(
    proxy: FaultProxy, stocked: tuple[Pipeline, dict[str, bytes]]
) -> None:
    """Mid-body reset and truncation fail the body read (after the headers arrived, so
    botocore cannot retry them); a flipped byte is one wrong byte at the same length, caught
    by botocore's CRC32 check when the object has one (uploaded by botocore >= 1.36), and left
    to the caller otherwise."""
    pipeline, objects = stocked
    s3 = client(proxy, "s3", retries=2)
    want = objects["plain.bin"]
    for fault, words in ((RESET_MID_BODY, "reset"), (TRUNCATE_BODY, "IncompleteRead")):
        proxy.add_rule(operation="GetObject", fault=fault, count=1)
        response = s3.get_object(Bucket=pipeline.bucket, Key="plain.bin")
        assert response["ContentLength"] == len(want)
        with pytest.raises(BotoCoreError, match=words):
            response["Body"].read()
    proxy.add_rule(operation="GetObject", fault=FLIP_BYTE, count=1)
    response = s3.get_object(Bucket=pipeline.bucket, Key="plain.bin", ChecksumMode="ENABLED")
    body = response["Body"]
    if response.get("ChecksumCRC32"):  # stored by a botocore that sends checksums (>= 1.36)
        with pytest.raises(BotoCoreError, match="checksum"):
            body.read()
    else:
        got = body.read()
        assert len(got) == len(want)
        assert sum(a != b for a, b in zip(got, want, strict=True)) == 1
    assert proxy.faults == {
        ("GetObject", RESET_MID_BODY): 1,
        ("GetObject", TRUNCATE_BODY): 1,
        ("GetObject", FLIP_BYTE): 1,
    }
    # An empty object has no body to spoil: counted as skipped, relayed intact.
    proxy.add_rule(operation="GetObject", fault=FLIP_BYTE, count=1)
    assert s3.get_object(Bucket=pipeline.bucket, Key="empty")["Body"].read() == b""
    assert proxy.skipped == {("GetObject", FLIP_BYTE): 1}
    assert s3.get_object(Bucket=pipeline.bucket, Key="plain.bin")["Body"].read() == want


def test_rules_by_count_probability_match_and_latency(
    proxy: FaultProxy, stocked: tuple[Pipeline, dict[str, bytes]]
) -> None:
    """count=N fires exactly N times; a probability fires about that often (seeded);
    match limits a rule to one key; latency delays without changing the answer."""
    pipeline, objects = stocked
    s3 = client(proxy, "s3")
    only = proxy.add_rule(operation="HeadObject", fault=INTERNAL_ERROR, count=3)
    failures = 0
    for _ in range(6):
        try:
            s3.head_object(Bucket=pipeline.bucket, Key="empty")
        except ClientError:
            failures += 1
    assert failures == 3
    assert only.fired == 3
    assert only.exhausted

    proxy.clear_rules()
    sometimes = proxy.add_rule(operation="HeadObject", fault=SLOW_DOWN, probability=0.3)
    for _ in range(100):
        with contextlib.suppress(ClientError):
            s3.head_object(Bucket=pipeline.bucket, Key="empty")
    assert 10 <= sometimes.fired <= 50, sometimes.fired

    proxy.clear_rules()
    proxy.add_rule(operation="GetObject", fault=INTERNAL_ERROR, match="with space+plus")
    with pytest.raises(ClientError):
        s3.get_object(Bucket=pipeline.bucket, Key="dir/with space+plus.txt")
    assert (
        s3.get_object(Bucket=pipeline.bucket, Key="plain.bin")["Body"].read()
        == (objects["plain.bin"])
    )

    proxy.clear_rules()
    proxy.add_rule(operation="GetObject", fault=LATENCY, delay=0.6, count=1)
    started = time.monotonic()
    assert s3.get_object(Bucket=pipeline.bucket, Key="empty")["Body"].read() == b""
    assert time.monotonic() - started >= 0.6


def test_outage_refuses_then_comes_back_on_the_same_port(
    proxy: FaultProxy, stocked: tuple[Pipeline, dict[str, bytes]]
) -> None:
    """stop_listening(): connections are refused (botocore: EndpointConnectionError);
    start_listening(): the same URL works again."""
    pipeline, _ = stocked
    sqs = client(proxy, "sqs")
    sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=["All"])
    port = proxy.port
    proxy.stop_listening()
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
    with pytest.raises(BotoCoreError):  # the pooled connection was reset
        sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=["All"])
    with pytest.raises(BotoCoreError, match="Could not connect"):
        sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=["All"])
    proxy.start_listening()
    assert proxy.port == port
    sqs.get_queue_attributes(QueueUrl=pipeline.queue_url, AttributeNames=["All"])


class _ChunkedServer:
    """A one-response-per-connection HTTP server that answers in chunked encoding."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.requests: list[bytes] = []
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest)
                pieces = [self.body[i : i + 7] for i in range(0, len(self.body), 7)]
                out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                out += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
                conn.sendall(out)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


def test_chunked_request_and_response_framing() -> None:
    """A chunked request body is forwarded whole (with a Content-Length); a chunked response
    is re-framed with a Content-Length, and a byte flip lands inside it."""
    server = _ChunkedServer(b"0123456789" * 10)
    try:
        with FaultProxy(("127.0.0.1", server.port), seed=1) as proxy:
            conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
            for flip in (False, True):
                if flip:
                    proxy.add_rule(operation="*", fault=FLIP_BYTE, count=1)
                conn.putrequest("POST", "/bucket/key.bin")
                conn.putheader("Transfer-Encoding", "chunked")
                conn.endheaders()
                for piece in (b"abc", b"defgh", b""):
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                response = conn.getresponse()
                body = response.read()
                assert response.getheader("Content-Length") == "100"
                assert response.getheader("Transfer-Encoding") is None
                differing = sum(a != b for a, b in zip(body, server.body, strict=True))
                assert differing == (1 if flip else 0)
            assert len(server.requests) == 2
            for request in server.requests:
                assert b"Content-Length: 8\r\n" in request
                assert b"chunked" not in request
                assert request.endswith(b"\r\n\r\nabcdefgh")
            conn.close()
    finally:
        server.close()
