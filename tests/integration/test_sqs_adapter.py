"""The SQS adapter against the emulator over HTTP: typed messages, batches split in tens,
per-entry failures reported, errors turned into QueueError."""

from __future__ import annotations

import pytest

from s3sqsd.errors import QueueError
from s3sqsd.sqs import Message, Queue
from tests.support.emulator import Emulator

pytestmark = pytest.mark.integration


def fill(emulator: Emulator, count: int) -> Queue:
    url, _ = emulator.create_queue(emulator.unique("adapter"))
    client = emulator.client("sqs")
    for i in range(count):
        client.send_message(QueueUrl=url, MessageBody=f"body-{i}")
    return Queue(client=client, url=url)


def receive_all(queue: Queue, count: int) -> list[Message]:
    got: list[Message] = []
    for _ in range(20):
        got += queue.receive(max_messages=10, wait_seconds=0, visibility_timeout=60)
        if len(got) >= count:
            break
    return got


def test_receive_gives_typed_messages_with_receive_count(emulator: Emulator) -> None:
    queue = fill(emulator, 3)
    messages = receive_all(queue, 3)
    assert sorted(m.body for m in messages) == ["body-0", "body-1", "body-2"]
    assert all(m.receive_count == 1 for m in messages)
    assert all(m.sent_timestamp_ms and m.sent_timestamp_ms > 0 for m in messages)
    queue.change_visibility([(m, 0) for m in messages])
    again = receive_all(queue, 3)
    assert all(m.receive_count == 2 for m in again)


def test_delete_splits_batches_and_reports_every_entry(emulator: Emulator) -> None:
    queue = fill(emulator, 25)
    messages = receive_all(queue, 25)
    assert len(messages) == 25
    result = queue.delete(messages)
    assert sorted(result.succeeded) == sorted(m.message_id for m in messages)
    assert result.failed == ()
    assert emulator.queue_counts(queue.url) == (0, 0)


def test_partial_batch_failure_is_reported_per_entry(emulator: Emulator) -> None:
    queue = fill(emulator, 2)
    good, other = receive_all(queue, 2)
    stale = Message(
        message_id=other.message_id,
        receipt_handle="not-a-receipt-handle",
        body=other.body,
        receive_count=1,
    )
    result = queue.delete([good, stale])
    assert result.succeeded == (good.message_id,)
    assert [f.message_id for f in result.failed] == [other.message_id]
    assert result.failed[0].code


def test_send_with_attributes_and_read_attributes(emulator: Emulator) -> None:
    queue = fill(emulator, 0)
    queue.send(body="original", attributes={"s3sqsd.reason": "bad_message", "s3sqsd.error": ""})
    raw = emulator.client("sqs").receive_message(
        QueueUrl=queue.url, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"][0]
    assert raw["Body"] == "original"
    assert raw["MessageAttributes"]["s3sqsd.reason"]["StringValue"] == "bad_message"
    # SQS refuses empty attribute values; the adapter sends a placeholder instead.
    assert raw["MessageAttributes"]["s3sqsd.error"]["StringValue"] == "-"
    assert "QueueArn" in queue.attributes(["QueueArn"])


def test_errors_become_queue_errors(emulator: Emulator) -> None:
    missing = Queue(
        client=emulator.client("sqs"),
        url=f"{emulator.endpoint}/123456789012/no-such-queue",
    )
    with pytest.raises(QueueError, match="no-such-queue"):
        missing.receive(max_messages=1, wait_seconds=0, visibility_timeout=1)
    with pytest.raises(QueueError):
        missing.attributes(["RedrivePolicy"])
