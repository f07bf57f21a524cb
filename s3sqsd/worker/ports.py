"""What the worker needs of a queue, as a protocol: the real ``sqs.Queue`` in the daemon, an
in-memory stub in the functional tests. Apart so the receiver and the loop share one definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from s3sqsd.sqs import BatchResult, Message


class QueueLike(Protocol):
    """What the worker needs of a queue (``sqs.Queue``, or an in-memory stub in tests)."""

    url: str

    def receive(
        self, *, max_messages: int, wait_seconds: int, visibility_timeout: int
    ) -> list[Message]: ...

    def delete(self, messages: Sequence[Message]) -> BatchResult: ...

    def change_visibility(self, items: Sequence[tuple[Message, int]]) -> BatchResult: ...

    def send(self, *, body: str, attributes: dict[str, str]) -> str: ...

    def attributes(self, names: Sequence[str]) -> dict[str, str]: ...
