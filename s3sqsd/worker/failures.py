"""The failure policy: what becomes of a message whose work failed, by the kind of error.

- A *local* failure (``LocalError``: disk full, read-only folder) is the host's fault, not the
  message's: the message is kept in hand, its visibility renewed, and tried again after a
  delay that grows with consecutive local failures; receiving pauses meanwhile. Returning it
  instead would raise SQS's ApproximateReceiveCount, and a queue redrive policy would then
  dead-letter messages for a full disk. A download refused by ``min_free_bytes``
  (``LowSpaceError``) is kept the same way, but is no failure: not counted, not logged here
  (spacewait.py says it once), and tried again every ``SPACE_RECHECK_SECONDS``.
- A *transient* failure (``TransientError``) is retried after a capped, jittered exponential
  delay (a visibility change, never a sleep); the attempt number is SQS's receive count, so it
  survives restarts. Past ``retry.max_attempts`` it is dead-lettered.
- Anything else is *permanent*: dead-lettered at once.

The decision is made here and logged here; the loop carries it out (``Verdict``).
"""

from __future__ import annotations

import enum
import logging
import random
from dataclasses import dataclass

from s3sqsd.backoff import retry_delay
from s3sqsd.errors import (
    AttemptsExhaustedError,
    LocalError,
    LowSpaceError,
    MessageError,
    TransientError,
)
from s3sqsd.metrics import Metrics
from s3sqsd.sqs import Message
from s3sqsd.worker.settings import SPACE_RECHECK_SECONDS, WorkerSettings

# The worker's logger name, kept from when it was one module: it is in every JSON log line.
logger = logging.getLogger("s3sqsd.worker")


class Action(enum.Enum):
    KEEP = "keep"  # hold the message, try again after ``delay``, pause receiving as long
    RETRY = "retry"  # return it to the queue after ``delay``
    DEAD_LETTER = "dead_letter"  # it cannot succeed: ``error`` says why


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    error: MessageError
    delay: float = 0.0


class FailurePolicy:
    """Decides on failures (loop thread). Owns the count of consecutive local failures, which
    sets the local retry delay and is reset by any success."""

    def __init__(self, *, settings: WorkerSettings, metrics: Metrics, rng: random.Random) -> None:
        self._settings = settings
        self._metrics = metrics
        self._rng = rng
        self._local_failures = 0

    def update(self, settings: WorkerSettings) -> None:
        self._settings = settings

    def succeeded(self) -> None:
        self._local_failures = 0

    def decide(self, message: Message, exc: MessageError) -> Verdict:
        settings = self._settings
        if isinstance(exc, LowSpaceError):
            logger.debug(
                "%s",
                exc,
                extra={"event": "local.waiting_for_space", "message_id": message.message_id},
            )
            return Verdict(Action.KEEP, exc, SPACE_RECHECK_SECONDS)
        self._metrics.inc("messages_failed", reason=exc.reason)
        self._metrics.last_error = str(exc)[:200]
        if isinstance(exc, LocalError):
            self._local_failures += 1
            delay = self._delay(self._local_failures)
            logger.error(
                "%s; the message stays in hand and is tried again in %.0f s, receiving paused "
                "meanwhile (not counted as an attempt)",
                exc,
                delay,
                extra={
                    "event": "local.storage_error",
                    "message_id": message.message_id,
                    "error": str(exc),
                    "reason": exc.reason,
                    "delay_seconds": round(delay, 1),
                },
            )
            return Verdict(Action.KEEP, exc, delay)
        if not isinstance(exc, TransientError):
            return Verdict(Action.DEAD_LETTER, exc)
        if message.receive_count >= settings.max_attempts:
            exhausted = AttemptsExhaustedError(
                f"{exc} (attempt {message.receive_count} of {settings.max_attempts})"
            )
            return Verdict(Action.DEAD_LETTER, exhausted)
        delay = self._delay(message.receive_count)
        logger.warning(
            "%s; retrying in %.0f s (attempt %d of %d)",
            exc,
            delay,
            message.receive_count,
            settings.max_attempts,
            extra={
                "event": "message.retry",
                "message_id": message.message_id,
                "error": str(exc),
                "reason": exc.reason,
                "attempt": message.receive_count,
                "receive_count": message.receive_count,
                "delay_seconds": round(delay, 1),
            },
        )
        return Verdict(Action.RETRY, exc, delay)

    def _delay(self, attempt: int) -> float:
        return retry_delay(
            attempt,
            base_seconds=self._settings.base_delay_seconds,
            max_seconds=self._settings.max_delay_seconds,
            rng=self._rng,
        )
