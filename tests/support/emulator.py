"""A local S3/SQS/SNS/EventBridge emulator (moto server) over real HTTP on 127.0.0.1.

Used by the integration tests, the demo and the benchmarks. It is configured the way AWS is
(bucket notifications to a queue, SNS topics with subscriptions, redrive policies), so the
messages s3sqsd sees are produced by the emulator itself, not written by hand. That setup lives
in ``AwsLikeSetup``, shared with the second implementation the tests run against, LocalStack
(``tests/support/localstack.py``, which also records where LocalStack differs from AWS).

Two fixes are applied to stock moto, both races that AWS does not have (measured with moto
5.2.5):

- ``Queue.delete_message`` rebuilds the queue's message list without the queue's lock, so a
  concurrent delete or send can be lost (0-9 of 1,500 deleted messages came back).
- ``SQSBackend.receive_message`` walks the list without the lock, so two concurrent receives can
  hand out the same message.

Both are wrapped in the queue's own re-entrant ``_messages_lock`` (a ``Condition`` over an
``RLock``; the long-poll wait inside ``receive_message`` releases it while it waits). A third
fix is for S3: for a multipart upload made with a checksum, ``GetObject`` answers the composite
checksum as AWS does (``value-N``, ``x-amz-checksum-type: COMPOSITE``) but ``HeadObject`` gives
the bare value and no type, which reads as a full-object checksum that never matches. The HEAD
answer is given the GET's form.

Where moto 5.2.5 differs from AWS in what s3sqsd checks (not fixed here; the integrity tests
that need AWS's behaviour run against LocalStack, ``tests/localstack/``):

- It adds no checksum to an object uploaded without one (AWS adds a full-object CRC64NVME).
- A multipart upload is announced twice, as ``ObjectCreated:Put`` and as
  ``ObjectCreated:CompleteMultipartUpload`` (AWS: the latter only), with no sequencer; s3sqsd
  takes the second for a duplicate by its ETag.
- A multipart upload gets a correct composite checksum only when every ``UploadPart`` names
  the algorithm too (``ChecksumAlgorithm``, as SDKs do); parts uploaded without it give a
  value that is neither S3's composite nor the full-object CRC. Without any checksum the ETag
  is right (the MD5 of the part MD5s, ``-N``).
- ``HeadObject`` with ``PartNumber`` answers with the part's own ETag and matches ``If-Match``
  against it (AWS: the object's ETag); ``GetObject`` with ``PartNumber`` answers with no
  ``Content-Range`` and no parts count. s3sqsd pins part HEADs by version only (parts.py says
  why) and takes part sizes from HEADs only.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3

REGION = "us-east-1"
ACCOUNT = "123456789012"

# Never let botocore reach a real endpoint or the instance-metadata address from tests.
TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}

_PATCH_LOCK = threading.Lock()
_PATCHED = {"done": False}


def _apply_moto_fixes() -> None:
    """Serialise moto's SQS delete/receive on the queue's own lock, and make its HEAD answer a
    multipart checksum as its GET does (see the module docstring)."""
    from moto.s3 import responses as s3_responses
    from moto.sqs import models

    with _PATCH_LOCK:
        if _PATCHED["done"]:
            return
        original_delete = models.Queue.delete_message
        original_receive = models.SQSBackend.receive_message

        @functools.wraps(original_delete)
        def delete_message(self: Any, receipt_handle: str) -> None:
            with self._messages_lock:
                original_delete(self, receipt_handle)

        @functools.wraps(original_receive)
        def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
            queue = self.get_queue(queue_name)
            with queue._messages_lock:
                return original_receive(self, queue_name, *args, **kwargs)

        # moto computes CRC64NVME with awscrt whenever awscrt is installed; Debian bookworm's
        # 0.16.8 has no crc64nvme, and every CompleteMultipartUpload then fails with a 500.
        # Without a usable awscrt moto falls back to CRC32 (its documented behaviour).
        from moto.s3 import utils as s3_utils

        try:
            from awscrt import checksums as crt_checksums
        except ImportError:
            crt_checksums = None
        if crt_checksums is not None and not hasattr(crt_checksums, "crc64nvme"):
            s3_utils.HAS_CRT = False  # type: ignore[attr-defined]

        original_head = s3_responses.S3Response.head_object

        @functools.wraps(original_head)
        def head_object(
            self: Any, bucket_name: str, query: dict[str, Any], key_name: str, headers: Any
        ) -> Any:
            status, response_headers, body = original_head(
                self, bucket_name, query, key_name, headers=headers
            )
            if (
                status == 200
                and headers.get("x-amz-checksum-mode") == "ENABLED"
                and not query.get("partNumber")
            ):
                version_id = query.get("versionId", [None])[0]
                key = self.backend.head_object(bucket_name, key_name, version_id=version_id)
                if key is not None and key.checksum_algorithm and key.checksum_type:
                    name = f"x-amz-checksum-{key.checksum_algorithm.lower()}"
                    if key.checksum_type == "COMPOSITE":
                        response_headers[name] = f"{key.checksum_value}-{key.checksum_parts}"
                    response_headers["x-amz-checksum-type"] = key.checksum_type
            return status, response_headers, body

        models.Queue.delete_message = delete_message
        models.SQSBackend.receive_message = receive_message
        s3_responses.S3Response.head_object = head_object
        _PATCHED["done"] = True


def emulator_client(service: str, *, endpoint: str, config: Any = None) -> Any:
    """A boto3 client of an emulator at ``endpoint`` with the test credentials and region."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        config=config,
    )


def no_checksum_config() -> Any:
    """A client config that adds no checksum of its own, as SDKs before 2025 upload (boto3 >=
    1.36 adds a CRC32 to every PUT unless told "when_required"; botocore < 1.36 knows no such
    option and adds none anyway)."""
    import botocore.config

    try:
        return botocore.config.Config(request_checksum_calculation="when_required")
    except TypeError:
        return botocore.config.Config()


@dataclass(frozen=True)
class Pipeline:
    """A bucket wired to a queue the way AWS does it; URLs and ARNs for the tests."""

    bucket: str
    queue_url: str
    queue_arn: str
    dlq_url: str | None
    topic_arn: str | None
    via: str


class AwsLikeSetup:
    """The AWS-like setup, once, for any S3+SQS(+SNS) implementation listening at ``endpoint``.

    moto's server (``Emulator``) and LocalStack (``tests/support/localstack.py``) both get their
    buckets, queues, redrive policies and notification paths from here, so a test reads the
    same against either and a difference in behaviour is the implementation's, not the setup's.
    Subclasses start their server (in this process, or in its own: ``EmulatorProcess`` in
    ``tests/support/emulator_server.py``) and call ``__init__`` with its endpoint.
    """

    # The account the implementation puts in ARNs and queue URLs.
    account: str = ACCOUNT
    # The ``pipeline(via=...)`` routes this implementation can build.
    vias: tuple[str, ...] = ("direct", "sns", "sns_raw", "eventbridge")
    endpoint: str

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._counter = 0
        self._lock = threading.Lock()

    def client(self, service: str, *, endpoint: str | None = None, config: Any = None) -> Any:
        """A client of the emulator, or of ``endpoint`` (a proxy in front of it)."""
        return emulator_client(service, endpoint=endpoint or self.endpoint, config=config)

    def unique(self, prefix: str) -> str:
        with self._lock:
            self._counter += 1
            return f"{prefix}-{self._counter}-{os.getpid()}"

    def create_queue(
        self, name: str, *, dlq_arn: str | None = None, max_receive_count: int = 5
    ) -> tuple[str, str]:
        sqs = self.client("sqs")
        attributes = {}
        if dlq_arn is not None:
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)}
            )
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        return url, arn

    def pipeline(
        self,
        *,
        via: str = "direct",
        redrive: bool = True,
        max_receive_count: int = 5,
        versioned: bool = False,
        drain_test_event: bool = True,
    ) -> Pipeline:
        """Create bucket + queue (+ DLQ with a redrive policy) and the notification path.

        ``via``: ``direct`` (S3 -> SQS), ``sns`` (S3 -> SNS -> SQS, envelope),
        ``sns_raw`` (raw message delivery), ``eventbridge`` (S3 -> EventBridge rule -> SQS).
        ``drain_test_event`` removes the ``s3:TestEvent`` S3 sends when the notification is saved.
        ``via`` must be one of ``vias``: LocalStack runs without EventBridge here.
        """
        if via not in self.vias:
            raise ValueError(f"unknown via {via!r} for {type(self).__name__}; known: {self.vias}")
        s3 = self.client("s3")
        bucket = self.unique("bucket")
        s3.create_bucket(Bucket=bucket)
        if versioned:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        dlq_url = None
        dlq_arn = None
        if redrive:
            dlq_url, dlq_arn = self.create_queue(self.unique("dlq"))
        queue_url, queue_arn = self.create_queue(
            self.unique("queue"), dlq_arn=dlq_arn, max_receive_count=max_receive_count
        )
        topic_arn = None
        events = ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]
        if via == "direct":
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [{"QueueArn": queue_arn, "Events": events}]
                },
            )
        elif via in ("sns", "sns_raw"):
            sns = self.client("sns")
            topic_arn = sns.create_topic(Name=self.unique("topic"))["TopicArn"]
            attributes = {"RawMessageDelivery": "true"} if via == "sns_raw" else {}
            sns.subscribe(
                TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes
            )
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={
                    "TopicConfigurations": [{"TopicArn": topic_arn, "Events": events}]
                },
            )
        elif via == "eventbridge":
            events_client = self.client("events")
            rule = self.unique("rule")
            events_client.put_rule(
                Name=rule,
                EventPattern=json.dumps(
                    {"source": ["aws.s3"], "detail": {"bucket": {"name": [bucket]}}}
                ),
            )
            events_client.put_targets(Rule=rule, Targets=[{"Id": "q", "Arn": queue_arn}])
            s3.put_bucket_notification_configuration(
                Bucket=bucket,
                NotificationConfiguration={"EventBridgeConfiguration": {}},
            )
        else:
            raise ValueError(f"unknown via {via!r}")
        if drain_test_event and via != "eventbridge":
            self.drain_test_event(queue_url)
        return Pipeline(
            bucket=bucket,
            queue_url=queue_url,
            queue_arn=queue_arn,
            dlq_url=dlq_url,
            topic_arn=topic_arn,
            via=via,
        )

    def drain(self, queue_url: str) -> int:
        """Delete whatever is visible now (e.g. the TestEvent); returns how many."""
        sqs = self.client("sqs")
        count = 0
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return count
            for message in messages:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                count += 1

    def drain_test_event(self, queue_url: str, *, timeout: float = 10.0) -> int:
        """Wait for the ``s3:TestEvent`` and delete it with whatever else is visible; returns
        how many were deleted.

        Waiting matters for LocalStack: its SNS delivers the TestEvent to the queue a few
        milliseconds after the configuration call returns, so a plain ``drain`` can run before
        it arrives and the test then meets it. moto delivers it at once (every route but
        EventBridge, which has none), so this costs moto nothing.
        """
        sqs = self.client("sqs")
        deadline = time.monotonic() + timeout
        seen = False
        count = 0
        while True:
            messages = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0 if seen else 1
            ).get("Messages", [])
            if not messages and (seen or time.monotonic() > deadline):
                return count
            for message in messages:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                seen = seen or "s3:TestEvent" in message["Body"]
                count += 1

    def queue_counts(self, queue_url: str) -> tuple[int, int]:
        """(visible, in flight) messages, as SQS reports them."""
        attrs = self.client("sqs").get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
            ],
        )["Attributes"]
        return (
            int(attrs["ApproximateNumberOfMessages"]),
            int(attrs["ApproximateNumberOfMessagesNotVisible"]),
        )


class Emulator(AwsLikeSetup):
    """moto's ThreadedMotoServer on 127.0.0.1 with an OS-chosen port, plus AWS-like setup."""

    def __init__(self) -> None:
        for name, value in TEST_ENV.items():
            os.environ.setdefault(name, value)
        _apply_moto_fixes()
        from moto.server import ThreadedMotoServer

        # werkzeug logs one line per request to stderr; tests and the demo want their own output.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        super().__init__(f"http://{host}:{port}")

    def stop(self) -> None:
        self._server.stop()


def wait_until(
    predicate: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


@contextmanager
def running_emulator() -> Iterator[Emulator]:
    emulator = Emulator()
    try:
        yield emulator
    finally:
        emulator.stop()
