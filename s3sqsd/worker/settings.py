"""The worker's settings and the loop's fixed timings: plain values, no threads, no I/O.

Kept apart from the loop so that what a reload swaps (``WorkerSettings``) and the constants the
threads share can be read, and tested, without starting a ``Worker``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from s3sqsd.config import AUTO, Config
from s3sqsd.events import KeyDecodingPolicy

# SQS error codes meaning the receipt handle no longer names a message in hand: retrying the
# call cannot help, the message is back in the queue (or gone).
RECEIPT_GONE = ("ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight")
# The loop wakes at least this often, so a stop or a watchdog ping never waits on a long poll.
MAX_LOOP_SLEEP_SECONDS = 0.5
# How often the loop walks its leases for visibility renewals and local retries at most.
SWEEP_INTERVAL_SECONDS = 0.1
# A failed delete is retried this often before the message is left to come back (harmless).
MAX_DELETE_TRIES = 3
# A delete waits at most this long for nine others to share its DeleteMessageBatch call.
DELETE_LINGER_SECONDS = 0.2
# Past the drain deadline, how long cancelled downloads and the last deletes may still take.
ABANDON_GRACE_SECONDS = 3.0
# A message kept because its download would go below min_free_bytes is tried again this often:
# the try costs a statvfs, and downloads resume within this long after space comes back.
SPACE_RECHECK_SECONDS = 5.0
# While receiving is held (messages wait for disk space), a receiver looks again this often.
HOLD_POLL_SECONDS = 0.25
# SQS message attributes are small: the error text sent with a dead letter is cut to this.
DLQ_ERROR_TEXT_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """The settings the loop uses; a reload swaps the whole object."""

    workers: int = 8  # fixed: the small lane's slots; auto: where the controller starts
    auto: bool = False  # workers: auto (concurrency.py moves the target within the bounds)
    min_workers: int = 4
    max_workers: int = 64
    # Messages with an object this large (from the event) run in the large lane; None: never.
    large_threshold_bytes: int | None = None
    wait_time_seconds: int = 20
    visibility_timeout_seconds: int = 120
    shutdown_timeout_seconds: float = 30.0
    max_attempts: int = 5
    base_delay_seconds: float = 2.0
    max_delay_seconds: float = 300.0
    allowed_buckets: frozenset[str] = frozenset()
    key_decoding: KeyDecodingPolicy = field(default_factory=KeyDecodingPolicy)
    unrouted: str = "acknowledge"  # with routes: an object no route takes is acknowledged
    on_remove: str = "keep"  # "delete": removal events remove the file they provably name
    delete_linger_seconds: float = DELETE_LINGER_SECONDS  # not a config key; tests change it

    @classmethod
    def from_config(cls, config: Config) -> WorkerSettings:
        return cls(
            workers=config.start_workers,
            auto=config.workers == AUTO,
            min_workers=config.min_workers,
            max_workers=config.max_workers,
            large_threshold_bytes=config.large_objects.threshold_bytes,
            wait_time_seconds=config.wait_time_seconds,
            visibility_timeout_seconds=config.visibility_timeout_seconds,
            shutdown_timeout_seconds=config.shutdown_timeout_seconds,
            max_attempts=config.retry.max_attempts,
            base_delay_seconds=config.retry.base_delay_seconds,
            max_delay_seconds=config.retry.max_delay_seconds,
            allowed_buckets=frozenset(config.s3_bucket_name),
            key_decoding=config.key_decoding,
            unrouted=config.unrouted,
            on_remove=config.on_remove,
        )

    @property
    def capacity(self) -> int:
        """Messages in hand at most: one per download thread plus a prefetch of up to 10."""
        return self.workers + min(self.workers, 10)


def least_batch(settings: WorkerSettings, *, share: int) -> int:
    """The fewest places a poll asks for while messages are in hand: half the prefetch
    (1 with 1-3 workers, 5 from 10 workers up), never more than a poller's ``share``."""
    return least_for(prefetch=settings.capacity - settings.workers, share=share)


def least_for(*, prefetch: int, share: int) -> int:
    """``least_batch`` for a prefetch that follows the current target (``workers: auto``)."""
    return max(1, min(10, share, prefetch // 2))
