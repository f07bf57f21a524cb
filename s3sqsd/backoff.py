"""Delays for retries: capped exponential backoff with jitter. Pure, so it is table-tested.

Retry delays are applied as SQS visibility changes, never as sleeps in a worker: a message that
waits holds no thread, and its attempt number is SQS's ``ApproximateReceiveCount``, which
survives restarts of the daemon.
"""

from __future__ import annotations

import random

# SQS: a message may stay invisible at most 12 hours from its receive; keep a margin for the
# time the request itself takes.
SQS_MAX_VISIBILITY_SECONDS = 43200
VISIBILITY_MARGIN_SECONDS = 60


def retry_delay(
    attempt: int, *, base_seconds: float, max_seconds: float, rng: random.Random
) -> float:
    """Delay before attempt ``attempt + 1``: ``base * 2**(attempt-1)``, capped, "equal jitter".

    Equal jitter (half fixed, half random) keeps a lower bound, so a failing message is never
    retried at once, while spreading retries of messages that failed together (a burst of 404s
    right after an outage) so they do not come back as one burst.
    """
    exponent = min(max(attempt, 1) - 1, 60)  # 2**60 seconds is far past any cap
    ceiling = min(max_seconds, base_seconds * (2.0**exponent))
    return ceiling / 2.0 + rng.uniform(0.0, ceiling / 2.0)


def visibility_seconds(delay: float, *, held_for_seconds: float) -> int:
    """A whole number of seconds for ChangeMessageVisibility, inside SQS's 12 h cap.

    ``held_for_seconds`` is how long ago the message was received: SQS counts the cap from the
    receive, and an extension past it fails.
    """
    room = SQS_MAX_VISIBILITY_SECONDS - VISIBILITY_MARGIN_SECONDS - int(held_for_seconds)
    return max(0, min(round(delay), room))


class ReceiveBackoff:
    """Backoff for a failing ReceiveMessage loop: 1 s doubling to 30 s, with jitter, reset on
    success (Vector resets after a good receive; it has no jitter, so a fleet retries in step)."""

    def __init__(
        self, *, rng: random.Random, base_seconds: float = 1.0, max_seconds: float = 30.0
    ) -> None:
        self._rng = rng
        self._base = base_seconds
        self._max = max_seconds
        self.failures = 0

    def next_delay(self) -> float:
        self.failures += 1
        return retry_delay(
            self.failures, base_seconds=self._base, max_seconds=self._max, rng=self._rng
        )

    def reset(self) -> None:
        self.failures = 0
