"""One exception tree for s3sqsd.

The worker maps each branch to one action (``Worker._finished`` and ``_fail`` in
worker/loop.py), so the classification *is* the failure policy:

- ``PermanentError``: retrying cannot help (bad body, unsafe key, bucket not allowed, access
  denied, an object this host cannot verify under ``integrity: strict``). The message is
  dead-lettered at once: with ``dead_letter_queue_url``, sent there (its reason in message
  attributes) and deleted; without, made visible again after ``retry.max_delay_seconds`` and
  left for the queue's own redrive policy.
- ``TransientError``: the remote side may recover (network, throttling, 5xx, object not readable
  yet, a corrupted transfer, a failed ``on_download`` command). The message is made visible
  again after a jittered backoff that grows with its SQS ``ApproximateReceiveCount`` (the
  attempt number, so it survives restarts); a failure on attempt ``retry.max_attempts`` is
  dead-lettered instead, as ``AttemptsExhaustedError``. One exception:
  ``DownloadCancelledError`` (the daemon's own stop cut the work short) releases the message at
  once (visible again with no delay), with no retry logged and no failure counted.
- ``LocalError``: this host cannot store the file right now (disk full, read-only filesystem,
  permissions). It is not the message's fault, so s3sqsd never dead-letters a message for it:
  the message stays in hand (its visibility renewed, so its receive count does not grow), is
  tried again after a backoff that grows with the local failures in a row, and receiving
  pauses meanwhile. At start (``Fetcher.prepare``) it stops the daemon with exit status 78.
  ``LowSpaceError`` (the download would take its folder below ``min_free_bytes``) is one:
  kept the same way, but tried again every few seconds and not counted as a failure.
- ``ConfigError``: at start the daemon refuses to start (exit status 78); on a reload the new
  configuration is refused and the running one kept.
- Any other ``MessageError`` is dead-lettered at once, like a permanent one.

Every error that concerns an object names it as ``s3://bucket/key`` in its text.
"""

from __future__ import annotations

from pathlib import Path


class S3sqsdError(Exception):
    """Base of every error s3sqsd raises on purpose."""


class ConfigError(S3sqsdError):
    """The configuration is missing, unreadable or invalid; carries one line per problem."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        super().__init__("; ".join(self.problems))


class MessageError(S3sqsdError):
    """A failure tied to one SQS message; ``reason`` is a stable, machine-readable code (the
    ``reason`` label of the failure metrics, and the ``s3sqsd.reason`` attribute of a dead
    letter). The worker acts on the subclass; one that is none of the kinds below is
    dead-lettered at once."""

    reason = "error"


class PermanentError(MessageError):
    """Retrying the message cannot succeed: the worker dead-letters it at once, on its first
    failure (to ``dead_letter_queue_url``, else back to the queue after
    ``retry.max_delay_seconds`` for the queue's redrive policy)."""

    reason = "permanent"


class MessageFormatError(PermanentError):
    """The body is not JSON, has an unknown shape or version, or a field of the wrong type."""

    reason = "bad_message"


class KeyDecodingError(PermanentError):
    """An object key is not valid form-encoded UTF-8 (bad ``%`` escape, invalid UTF-8)."""

    reason = "bad_key_encoding"


class UnsafeKeyError(PermanentError):
    """An object key cannot be mapped to a path inside ``download_folder``."""

    reason = "unsafe_key"


class BucketNotAllowedError(PermanentError):
    """The event names a bucket outside the ``s3_bucket_name`` allow-list."""

    reason = "bucket_not_allowed"


class PathConflictError(PermanentError):
    """The local path is blocked for good: a file stands where a directory is needed, or the
    reverse (keys ``a`` and ``a/b``)."""

    reason = "path_conflict"


class UnroutedError(PermanentError):
    """No route takes the object and ``unrouted: dead_letter`` is set."""

    reason = "unrouted"


class ObjectAccessError(PermanentError):
    """S3 refused the object for good (access denied, KMS denied, archived storage class)."""

    reason = "object_inaccessible"


class UnverifiableError(PermanentError):
    """``integrity: strict`` and nothing stronger than the length can be verified on this host
    (a checksum whose algorithm it lacks, an ETag that is not an MD5). Dead-lettered at once:
    another try here cannot do better; a host with awscrt, or ``best_effort``, can."""

    reason = "unverifiable"


class AttemptsExhaustedError(PermanentError):
    """A transient failure repeated ``retry.max_attempts`` times. Raised by no fetch: the
    worker wraps the last transient error in it and dead-letters the message with it."""

    reason = "too_many_attempts"


class TransientError(MessageError):
    """The remote side may recover: the worker returns the message (a visibility change) with
    a jittered backoff that grows with its receive count, and dead-letters it as
    ``AttemptsExhaustedError`` when it fails on attempt ``retry.max_attempts``."""

    reason = "transient"


class FetchError(TransientError):
    """The GET failed in a way worth retrying (network, throttling, 5xx, object not found yet);
    also an unexpected exception in a download thread. Retried with backoff, then
    dead-lettered after ``retry.max_attempts``."""

    reason = "fetch_failed"


class IntegrityError(TransientError):
    """The bytes received do not match the length, ETag or checksum S3 announced. The temp file
    is removed and nothing is renamed; retried with backoff (the next attempt downloads
    again), then dead-lettered after ``retry.max_attempts``."""

    reason = "integrity_mismatch"


class PartsMismatchError(IntegrityError):
    """A per-part check (composite checksum, multipart ETag) did not match. When the part
    sizes were assumed equal, the fetcher asks S3 for each part's size and checks the file
    again before it decides (parts.check_again): only a mismatch with S3's own sizes reaches
    the worker, which retries it like any IntegrityError."""


class DownloadCancelledError(TransientError):
    """The download was stopped because the daemon is stopping (the drain deadline passed).

    Not the message's failure: the worker releases the message at once (visible again with no
    delay, so another consumer can take it), logs no retry and counts no failure. SQS still
    counts its next receive, which is the attempt number the retry policy reads.
    """

    reason = "cancelled"


class CommandError(TransientError):
    """The ``on_download`` command failed: a non-zero exit, a timeout, or it could not start.

    Retried like any transient failure (the file stays in place; the next delivery finds it
    already downloaded and runs the command again), dead-lettered after retry.max_attempts.
    """

    reason = "command_failed"


class SourceDeleteError(TransientError):
    """``after_download: delete``: the DeleteObject of the source failed in a way worth
    retrying (network, throttling, 5xx). The file is in place; the message is retried like any
    transient failure, and its next delivery finds the file already there (this event's own)
    and tries the delete again. Refusals that retrying cannot cure (access denied, a store
    without conditional deletes) are not errors: the source is kept with a warning
    (sources.py)."""

    reason = "source_delete_failed"


class QueueError(TransientError):
    """An SQS call failed (endpoint down, throttling, credentials). Raised by the calls that
    answer as a whole, not by one message's download: a failed ReceiveMessage is retried by
    the receiver with its own backoff; a failed send to the dead-letter queue makes the
    message visible again after ``retry.base_delay_seconds`` (its next delivery is handled
    from the start); a failed queue-depth read skips that metric. (Deletes and visibility
    changes report per-message failures in their batch results instead.)"""

    reason = "queue_error"


class LocalError(MessageError):
    """This host cannot store the file now (disk full, read-only, permissions, file in the way).

    Never the message's fault, so s3sqsd never dead-letters a message for it: the worker keeps
    the message in hand (renewing its visibility, so SQS's receive count does not grow), tries
    it again after a backoff that grows with the local failures in a row (reset by any
    success), and pauses receiving until then. From ``Fetcher.prepare`` at start, it stops
    the daemon with exit status 78.
    """

    reason = "local_storage"


class LowSpaceError(LocalError):
    """Writing the object would leave its folder with less free space than ``min_free_bytes``
    (limits.SpaceFloor), so its download does not start.

    A local failure like the others (the message is kept in hand, receiving pauses), with
    three differences: it is no failure of the download, so it is not counted as one; the
    message is tried again every few seconds, not after a growing backoff, so downloads
    resume soon after space comes back; and it is logged once when the waiting starts and
    once when it ends (worker/spacewait.py), not once per try.
    """

    reason = "low_disk_space"

    def __init__(self, text: str, *, folder: Path, free: int, size: int, floor: int) -> None:
        super().__init__(text)
        self.folder = folder
        self.free = free
        self.size = size
        self.floor = floor


class ListingError(S3sqsdError):
    """A bucket listing of ``s3sqsd sync`` failed (denied, no such bucket, network).

    Not a MessageError: no message is involved. The sync reports it, counts it as a failure
    (non-zero exit status) and deletes nothing under that listing's prefix (``--delete``
    trusts only a listing that was read to its end).
    """
