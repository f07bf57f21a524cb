"""Retry delays: capped exponential backoff with equal jitter, inside SQS's limits."""

from __future__ import annotations

import random

import pytest

from s3sqsd.backoff import ReceiveBackoff, retry_delay, visibility_seconds


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [
        (1, 1.0, 2.0),  # base 2: ceiling 2, equal jitter [1, 2]
        (2, 2.0, 4.0),
        (3, 4.0, 8.0),
        (6, 32.0, 64.0),
        (8, 50.0, 100.0),  # capped at 100
        (50, 50.0, 100.0),
        (10_000, 50.0, 100.0),  # no overflow for absurd attempt numbers
        (0, 1.0, 2.0),  # attempt 0 is treated as the first
    ],
)
def test_retry_delay_bounds(attempt: int, low: float, high: float) -> None:
    rng = random.Random(attempt)
    for _ in range(200):
        delay = retry_delay(attempt, base_seconds=2, max_seconds=100, rng=rng)
        assert low <= delay <= high


def test_retry_delay_is_jittered() -> None:
    rng = random.Random(1)
    delays = {round(retry_delay(4, base_seconds=2, max_seconds=100, rng=rng), 3) for _ in range(50)}
    assert len(delays) > 40


@pytest.mark.parametrize(
    ("delay", "held", "expected"),
    [
        (10.4, 0, 10),
        (10.6, 0, 11),
        (0.2, 0, 0),
        (50_000, 0, 43140),  # SQS caps visibility at 12 h from the receive (minus a margin)
        (600, 43000, 140),  # only what is left of the 12 h, less the margin
        (600, 43200, 0),
    ],
)
def test_visibility_seconds(delay: float, held: float, expected: int) -> None:
    assert visibility_seconds(delay, held_for_seconds=held) == expected


def test_receive_backoff_grows_caps_and_resets() -> None:
    backoff = ReceiveBackoff(rng=random.Random(3), base_seconds=1, max_seconds=30)
    delays = [backoff.next_delay() for _ in range(10)]
    assert 0.5 <= delays[0] <= 1
    assert 8 <= delays[4] <= 16
    assert all(d <= 30 for d in delays)
    assert delays[-1] >= 15
    assert backoff.failures == 10
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() <= 1
