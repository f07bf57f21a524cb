"""One exception tree for s3sqsd.

The worker maps each branch to one action, so the classification *is* the failure policy:

- ``PermanentError``: retrying cannot help (bad body, unsafe key, bucket not allowed, access
  denied, an object this host cannot verify under ``integrity: strict``). The message goes to
  the dead-letter path at once.
- ``TransientError``: the remote side may recover (network, throttling, 5xx, object not readable
  yet, a corrupted transfer). The message is made visible again after a backoff that grows with
  its SQS ``ApproximateReceiveCount``; after ``retry.max_attempts`` it is dead-lettered. One
  exception: ``DownloadCancelledError`` (the daemon's own stop cut the work short) releases the
  message at once, with no retry counted.
- ``LocalError``: this host cannot store the file right now (disk full, read-only filesystem,
  permissions). It is not the message's fault, so it never counts towards dead-lettering: the
  message is returned with a backoff and receiving pauses while the condition lasts.
- ``ConfigError``: the daemon refuses to start (exit status 78).

Every error that concerns an object names it as ``s3://bucket/key`` in its text.
"""

from __future__ import annotations


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
    """A failure tied to one SQS message; ``reason`` is a stable, machine-readable code."""

    reason = "error"


class PermanentError(MessageError):
    """Retrying the message cannot succeed: dead-letter it."""

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
    """A transient failure repeated ``retry.max_attempts`` times."""

    reason = "too_many_attempts"


class TransientError(MessageError):
    """The remote side may recover: return the message with a backoff."""

    reason = "transient"


class FetchError(TransientError):
    """The GET failed in a way worth retrying (network, throttling, 5xx, object not found yet)."""

    reason = "fetch_failed"


class IntegrityError(TransientError):
    """The bytes received do not match the length, ETag or checksum S3 announced."""

    reason = "integrity_mismatch"


class PartsMismatchError(IntegrityError):
    """A per-part check (composite checksum, multipart ETag) did not match. When the part
    sizes were assumed equal, the fetcher asks S3 for each part's size and checks the file
    again before it decides: only a mismatch with S3's own sizes is an IntegrityError."""


class DownloadCancelledError(TransientError):
    """The download was stopped because the daemon is stopping (the drain deadline passed).

    Not the message's failure: the worker releases the message at once, without counting an
    attempt or logging a retry.
    """

    reason = "cancelled"


class CommandError(TransientError):
    """The ``on_download`` command failed: a non-zero exit, a timeout, or it could not start.

    Retried like any transient failure (the file stays in place; the next delivery finds it
    already downloaded and runs the command again), dead-lettered after retry.max_attempts.
    """

    reason = "command_failed"


class QueueError(TransientError):
    """An SQS call failed (endpoint down, throttling, credentials)."""

    reason = "queue_error"


class LocalError(MessageError):
    """This host cannot store the file now (disk full, read-only, permissions, file in the way).

    Never the message's fault, so it never dead-letters a message.
    """

    reason = "local_storage"
