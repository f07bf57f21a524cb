"""A thin typed adapter over the SQS API: dataclasses in, dataclasses out, one error type.

Nothing here decides anything; it turns boto3's dictionaries into ``Message`` and
``BatchResult`` and every failure into ``QueueError`` (with the AWS error code), so the worker
deals with one vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from s3sqsd.errors import QueueError

BATCH_LIMIT = 10  # SQS batch APIs take at most 10 entries (the emulator accepts 11; AWS does not)
# The most DeleteMessageBatch calls the worker has in flight at once (``concurrency.deletes_for``);
# the SQS control client's connection pool covers them besides the loop's own calls.
MAX_DELETE_BATCHES = 8

# Every failure of a call becomes QueueError: besides ClientError and BotoCoreError, botocore
# raises ResponseParserError or UnicodeDecodeError for a garbled or cut-off answer, and those
# must not escape into the loop (a chaos run crashed the daemon that way).
_CALL_ERRORS = (Exception,)


@dataclass(frozen=True, slots=True)
class Message:
    """One received SQS message. ``receive_count`` is SQS's ApproximateReceiveCount."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class BatchFailure:
    message_id: str
    code: str
    text: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-entry outcome of a batch call: SQS answers 200 even when some entries failed."""

    succeeded: tuple[str, ...] = ()
    failed: tuple[BatchFailure, ...] = ()


def error_code(exc: BaseException) -> str:
    """A short stable code for logs and state-change detection."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


class Queue:
    """One SQS queue, addressed by URL."""

    def __init__(self, *, client: Any, url: str) -> None:
        self._client = client
        self.url = url

    def receive(
        self, *, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Message]:
        try:
            response = self._client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(BATCH_LIMIT, max_messages)),
                WaitTimeSeconds=wait_seconds,
                VisibilityTimeout=visibility_timeout,
                AttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            )
        except _CALL_ERRORS as exc:
            raise QueueError(f"ReceiveMessage on {self.url} failed: {exc}") from exc
        messages = []
        for raw in response.get("Messages", []):
            attributes = raw.get("Attributes", {})
            sent = attributes.get("SentTimestamp")
            messages.append(
                Message(
                    message_id=raw["MessageId"],
                    receipt_handle=raw["ReceiptHandle"],
                    body=raw.get("Body", ""),
                    receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
                    sent_timestamp_ms=int(sent) if sent and sent.isdigit() else None,
                )
            )
        return messages

    def delete(self, messages: Sequence[Message]) -> BatchResult:
        """DeleteMessageBatch in chunks of 10; every entry's outcome is reported."""
        return self._batch(
            "delete_message_batch",
            [(m, {"ReceiptHandle": m.receipt_handle}) for m in messages],
        )

    def change_visibility(self, items: Sequence[tuple[Message, int]]) -> BatchResult:
        """ChangeMessageVisibilityBatch in chunks of 10 (timeouts in whole seconds)."""
        return self._batch(
            "change_message_visibility_batch",
            [(m, {"ReceiptHandle": m.receipt_handle, "VisibilityTimeout": s}) for m, s in items],
        )

    def send(self, *, body: str, attributes: Mapping[str, str]) -> str:
        """SendMessage with string message attributes; returns the new message id."""
        try:
            response = self._client.send_message(
                QueueUrl=self.url,
                MessageBody=body,
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": value or "-"}
                    for name, value in attributes.items()
                },
            )
        except _CALL_ERRORS as exc:
            raise QueueError(f"SendMessage to {self.url} failed: {exc}") from exc
        return str(response.get("MessageId", ""))

    def attributes(self, names: Sequence[str]) -> dict[str, str]:
        try:
            response = self._client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=list(names)
            )
        except _CALL_ERRORS as exc:
            raise QueueError(f"GetQueueAttributes on {self.url} failed: {exc}") from exc
        return dict(response.get("Attributes", {}))

    def _batch(
        self, operation: str, entries: Sequence[tuple[Message, dict[str, Any]]]
    ) -> BatchResult:
        succeeded: list[str] = []
        failed: list[BatchFailure] = []
        call = getattr(self._client, operation)
        for start in range(0, len(entries), BATCH_LIMIT):
            chunk = entries[start : start + BATCH_LIMIT]
            # Batch entry ids must be unique within a call and short: use the position.
            by_id = {f"e{i}": message for i, (message, _) in enumerate(chunk)}
            request = [{"Id": f"e{i}", **fields} for i, (_, fields) in enumerate(chunk)]
            try:
                response = call(QueueUrl=self.url, Entries=request)
            except _CALL_ERRORS as exc:
                code = error_code(exc)
                failed.extend(BatchFailure(m.message_id, code, str(exc)) for m in by_id.values())
                continue
            for entry in response.get("Successful", []):
                message = by_id.get(entry.get("Id", ""))
                if message is not None:
                    succeeded.append(message.message_id)
            answered: set[str] = set()
            for entry in response.get("Successful", []):
                answered.add(str(entry.get("Id", "")))
            for entry in response.get("Failed", []):
                answered.add(str(entry.get("Id", "")))
                message = by_id.get(entry.get("Id", ""))
                if message is not None:
                    failed.append(
                        BatchFailure(
                            message.message_id,
                            str(entry.get("Code", "")),
                            str(entry.get("Message", "")),
                        )
                    )
            # An entry in neither list (a cut-off answer botocore parsed as {}) did not succeed
            # as far as we can know: report it failed so the caller retries or lets it go.
            for entry_id, message in by_id.items():
                if entry_id not in answered:
                    failed.append(
                        BatchFailure(message.message_id, "NoAnswer", "missing from the response")
                    )
        return BatchResult(succeeded=tuple(succeeded), failed=tuple(failed))
