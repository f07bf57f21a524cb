"""``s3sqsd check``: a pre-flight check of everything s3sqsd needs, with no side effects.

Each check is a small function returning ``CheckResult`` values (a name, a verdict, one line of
detail); the pure ones take attributes and numbers, the others take the clients or a path.
``run_checks`` calls them in order and skips what an earlier failure makes pointless (no
credentials: no AWS call; the SQS endpoint unreachable: S3 on the same endpoint is not tried,
so a dead endpoint is one FAIL line).

Nothing is changed anywhere: SQS and S3 see only GetQueueAttributes, GetQueueUrl,
HeadBucket, ListObjectsV2 (one key, for what ``s3sqsd sync`` needs) and, with
``after_download: delete``, GetBucketVersioning (what the deletes need); no message is received,
so none becomes in flight or counts a receive; the download folder is inspected with ``stat``,
``access`` and ``statvfs`` only, never created or written.
Credentials are looked up, never printed (only the name of the source they came from).
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from s3sqsd.aws import Aws
from s3sqsd.checksums import ALGORITHMS, HostChecksums
from s3sqsd.config import Config
from s3sqsd.errors import ConfigError
from s3sqsd.listing import Target, targets
from s3sqsd.paths import TEMP_DIR_NAME
from s3sqsd.preflight_aws import check_identities, describe_network
from s3sqsd.preflight_result import CheckResult, Report, Verdict, error_text
from s3sqsd.routing import download_folders
from s3sqsd.sqs import error_code

EXIT_CHECK_FAILED = 1  # at least one FAIL line; a configuration error stays 78 (EX_CONFIG)

GiB = 1024**3
MIN_FREE_BYTES = GiB  # warn below 1 GiB free ...
MIN_FREE_FRACTION = 0.05  # ... or below 5 % of the file system (blocks or inodes)
RETENTION_FACTOR = 2  # the queue should keep a message twice as long as all retries can take

# Short timeouts and one retry: a check must answer in seconds, never hang on a dead endpoint.
_CONNECT_TIMEOUT = 3
_READ_TIMEOUT = 5
_ATTEMPTS = 2

_NO_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
_NO_BUCKET_CODES = frozenset({"404", "NoSuchBucket", "NotFound"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "AccessDeniedException", "403", "Forbidden", "AuthorizationError"}
)
_REFUSED_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidToken",
        "InvalidSecurity",
    }
)


@dataclass(frozen=True, slots=True)
class CheckClients:
    """A boto3 session (for the credential lookup) and the two clients the checks call;
    ``aws`` (aws.Aws) answers who each identity is, None: no identity or network lines."""

    session: Any
    s3: Any
    sqs: Any
    s3_endpoint: str | None
    sqs_endpoint: str | None
    aws: Any = None


@dataclass(frozen=True, slots=True)
class QueueLookup:
    """What reading one queue's attributes gave: a line, the attributes, and whether the
    endpoint could not be reached at all."""

    result: CheckResult
    attributes: Mapping[str, str] | None
    unreachable: bool = False
    code: str | None = None  # the AWS error code when the read failed


@dataclass(frozen=True, slots=True)
class RedrivePolicy:
    target_arn: str
    max_receive_count: int | None

    @property
    def target_name(self) -> str | None:
        """The queue name in ``arn:aws:sqs:<region>:<account>:<name>``, or None."""
        parts = self.target_arn.split(":", 5)
        if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[5]:
            return None
        return parts[5]

    @property
    def target_account(self) -> str | None:
        parts = self.target_arn.split(":", 5)
        if len(parts) != 6 or not parts[4]:
            return None
        return parts[4]


# ---- clients -----------------------------------------------------------------------------------


_CHECK_OPTIONS: dict[str, Any] = {
    "connect_timeout": _CONNECT_TIMEOUT,
    "read_timeout": _READ_TIMEOUT,
    "retries": {"mode": "standard", "total_max_attempts": _ATTEMPTS},
}


def make_check_clients(config: Config, *, environ: Mapping[str, str] | None = None) -> CheckClients:
    """Clients like the daemon's (same region, endpoints, identities, guards, network) with
    short timeouts. An SSE-C key file that cannot be used is a ConfigError, as at start."""
    aws = Aws(config, environ=environ)
    return CheckClients(
        session=aws.session,
        s3=aws.s3(**_CHECK_OPTIONS),
        sqs=aws.client("sqs", role=aws.plan.sqs_role, **_CHECK_OPTIONS),
        s3_endpoint=aws.s3_endpoint,
        sqs_endpoint=aws.sqs_endpoint,
        aws=aws,
    )


# ---- running everything ------------------------------------------------------------------------


def run_checks(
    config: Config,
    *,
    config_path: Path,
    clients: CheckClients,
    emit: Callable[[CheckResult], None] | None = None,
    checksums: HostChecksums | None = None,
) -> Report:
    """Every check in checklist order; later checks are skipped when they cannot mean anything.

    ``emit`` sees each line as soon as it is known (an interactive command shows progress);
    ``checksums``: what this host verifies (default: what is installed).
    """
    results: list[CheckResult] = []

    def add(*new: CheckResult) -> None:
        for result in new:
            results.append(result)
            if emit is not None:
                emit(result)

    add(CheckResult("config", Verdict.OK, f"{config_path}: valid"))
    add(check_checksums(checksums or HostChecksums.detect(), config))
    credentials = check_credentials(clients.session)
    add(credentials)
    if clients.aws is not None:
        add(
            describe_network(
                config,
                clients.aws,
                s3=clients.s3.for_bucket(next(iter(config.s3_bucket_name), "")),
                sqs=clients.sqs,
            )
        )
        if credentials.verdict is not Verdict.FAIL:
            add(*check_identities(config, clients.aws, options=_CHECK_OPTIONS))
    if credentials.verdict is Verdict.FAIL:
        add(_skip("queue", "not checked without credentials"))
        add(_skip("buckets", "not checked without credentials"))
        add(_skip("sync-list", "not checked without credentials"))
    else:
        queue = read_queue(clients.sqs, config.sqs_queue_url, what="queue")
        add(queue.result)
        if queue.attributes is None:
            add(_skip("queue-settings", "not checked: the queue could not be read"))
        else:
            add(check_queue_type(config.sqs_queue_url, queue.attributes))
            add(check_retention(queue.attributes, config))
            add(check_timeouts(queue.attributes, config))
            add(*check_dead_letters(clients.sqs, config, queue.attributes))
        skip_reason = None
        s3_endpoint = clients.s3_endpoint
        same_endpoint = s3_endpoint is not None and s3_endpoint == clients.sqs_endpoint
        if queue.unreachable and same_endpoint:
            skip_reason = f"not checked: the endpoint {s3_endpoint} is unreachable"
        owners = {}
        if clients.aws is not None:
            plan = clients.aws.plan
            owners = {
                b: plan.for_bucket(b).guards.expected_bucket_owner for b in config.s3_bucket_name
            }
        add(
            *check_buckets(
                clients.s3, config.s3_bucket_name, skip_reason=skip_reason, owners=owners
            )
        )
        add(*check_listings(clients.s3, config, skip_reason=skip_reason))
        add(*_source_deletes(clients.s3, config, skip_reason=skip_reason))
    for folder in download_folders(config):  # one folder, or each route's
        add(check_folder(folder))
        add(check_free_space(folder, floor=config.min_free_bytes))
    return Report(tuple(results))


def _source_deletes(s3: Any, config: Config, *, skip_reason: str | None) -> tuple[CheckResult, ...]:
    """after_download: delete's ``source-delete`` lines (preflight_sources.py), each a skip:
    what the deletes need is said, never tested."""
    from s3sqsd.preflight_sources import source_delete_lines

    lines = source_delete_lines(s3, config, skip_reason=skip_reason)
    return tuple(CheckResult("source-delete", Verdict.SKIP, detail) for detail in lines)


def check_checksums(host: HostChecksums, config: Config) -> CheckResult:
    """Which of S3's checksums this host verifies (checksums.py); ``warn`` without CRC64NVME,
    the checksum S3 adds to every object uploaded without one."""
    crt = f"awscrt {host.awscrt_version}" if host.awscrt_version else "no awscrt"
    can = ", ".join(name for name in ALGORITHMS if host.can(name))
    if host.can("CRC64NVME") and host.can("CRC32C"):
        return CheckResult("checksums", Verdict.OK, f"verifies {can} ({crt})")
    missing = "; ".join(
        f"{name}: no ({host.why_not(name)})"
        for name in ("CRC64NVME", "CRC32C")
        if not host.can(name)
    )
    fate = (
        "refused (integrity: strict)"
        if config.integrity == "strict"
        else "placed with a warning (integrity: best_effort)"
    )
    return CheckResult(
        "checksums",
        Verdict.WARN,
        f"verifies {can}; {missing}. Objects with those checksums fall back to their MD5 ETag "
        f"(part by part for multipart ones); SSE-KMS and SSE-C objects have none and are "
        f"{fate}",
    )


def _skip(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Verdict.SKIP, detail)


# ---- credentials -------------------------------------------------------------------------------


def check_credentials(session: Any) -> CheckResult:
    """boto3's standard chain finds credentials; only their source is named, never a value."""
    try:
        credentials = session.get_credentials()
    except (BotoCoreError, ClientError, OSError, ValueError) as exc:
        return CheckResult(
            "credentials", Verdict.FAIL, f"looking them up failed: {_error_text(exc)}"
        )
    if credentials is None:
        return CheckResult(
            "credentials",
            Verdict.FAIL,
            "none found: set them in /etc/default/s3sqsd (AWS_PROFILE, or the AWS_ACCESS_KEY_ID "
            "pair), a shared credentials file, or give the host an instance role",
        )
    source = getattr(credentials, "method", None)
    return CheckResult(
        "credentials", Verdict.OK, f"found (source: {source})" if source else "found"
    )


# ---- the queue ---------------------------------------------------------------------------------


def read_queue(sqs: Any, url: str, *, what: str) -> QueueLookup:
    """GetQueueAttributes(All) on ``url``; the line says whether it exists and is readable."""
    try:
        response = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        if _is_unreachable(exc):
            detail = f"{url}: the SQS endpoint cannot be reached: {_error_text(exc)}"
            return QueueLookup(
                CheckResult(what, Verdict.FAIL, detail), None, unreachable=True, code=code
            )
        if code in _NO_QUEUE_CODES:
            detail = f"{url}: no such queue (check the URL, the account and the region)"
        elif code in _DENIED_CODES:
            detail = f"{url}: access denied for GetQueueAttributes ({code})"
        elif code in _REFUSED_CREDENTIAL_CODES:
            detail = f"{url}: the credentials were refused ({code})"
        else:
            detail = f"{url}: GetQueueAttributes failed: {_error_text(exc)}"
        return QueueLookup(CheckResult(what, Verdict.FAIL, detail), None, code=code)
    attributes = {str(k): str(v) for k, v in response.get("Attributes", {}).items()}
    detail = f"{url}: exists; {_counts(attributes)}"
    return QueueLookup(CheckResult(what, Verdict.OK, detail), attributes)


def _counts(attributes: Mapping[str, str]) -> str:
    visible = attributes.get("ApproximateNumberOfMessages", "?")
    in_flight = attributes.get("ApproximateNumberOfMessagesNotVisible", "?")
    return f"{visible} visible, {in_flight} in flight"


def is_fifo(url: str, attributes: Mapping[str, str]) -> bool:
    return url.rstrip("/").endswith(".fifo") or attributes.get("FifoQueue", "").lower() == "true"


def check_queue_type(url: str, attributes: Mapping[str, str]) -> CheckResult:
    if is_fifo(url, attributes):
        return CheckResult(
            "queue-type",
            Verdict.WARN,
            "a FIFO queue: S3 event notifications cannot target FIFO queues (only an "
            "EventBridge rule can), so S3 may not be able to send here",
        )
    return CheckResult("queue-type", Verdict.OK, "standard queue (S3 notifications can target it)")


def parse_redrive_policy(text: str | None) -> RedrivePolicy | None:
    """The queue's ``RedrivePolicy`` attribute; None when unset; ValueError when unreadable."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    target = data.get("deadLetterTargetArn") if isinstance(data, dict) else None
    if not target or not isinstance(target, str):
        raise ValueError("no deadLetterTargetArn")
    raw_count = data.get("maxReceiveCount")
    count: int | None = None
    if isinstance(raw_count, int) and not isinstance(raw_count, bool):
        count = raw_count
    elif isinstance(raw_count, str) and raw_count.strip().isdigit():
        count = int(raw_count)
    return RedrivePolicy(target_arn=target, max_receive_count=count)


def check_dead_letters(
    sqs: Any, config: Config, attributes: Mapping[str, str]
) -> tuple[CheckResult, ...]:
    """Where messages that cannot succeed go: the queue's redrive policy and/or
    ``dead_letter_queue_url``; at least one of them must work."""
    results: list[CheckResult] = []
    try:
        policy = parse_redrive_policy(attributes.get("RedrivePolicy"))
    except ValueError as exc:
        policy = None
        results.append(
            CheckResult("redrive", Verdict.WARN, f"the queue's RedrivePolicy is unreadable ({exc})")
        )
    if policy is None and not results:
        if config.dead_letter_queue_url:
            results.append(
                CheckResult(
                    "redrive",
                    Verdict.OK,
                    "no redrive policy on the queue; s3sqsd dead-letters to "
                    "dead_letter_queue_url itself",
                )
            )
        else:
            results.append(
                CheckResult(
                    "redrive",
                    Verdict.FAIL,
                    "the queue has no redrive policy and dead_letter_queue_url is not set: a "
                    "message that can never succeed comes back until the queue's retention "
                    "expires; give the queue a redrive policy or set dead_letter_queue_url",
                )
            )
    if policy is not None:
        target_line, target_attributes = _check_redrive_target(sqs, policy)
        results.append(target_line)
        results.append(check_max_receives(policy, config))
        if target_attributes is not None:
            results.append(check_dlq_retention(attributes, target_attributes))
    if config.dead_letter_queue_url:
        results.append(_check_dlq_url(sqs, config.dead_letter_queue_url))
    return tuple(results)


def _check_redrive_target(
    sqs: Any, policy: RedrivePolicy
) -> tuple[CheckResult, Mapping[str, str] | None]:
    count = policy.max_receive_count
    after = f"after {count} receives " if count is not None else ""
    name = policy.target_name
    if name is None:
        return (
            CheckResult(
                "redrive",
                Verdict.WARN,
                f"redrive policy {after}to {policy.target_arn!r}, which is not an SQS queue ARN",
            ),
            None,
        )
    request: dict[str, str] = {"QueueName": name}
    if policy.target_account:
        request["QueueOwnerAWSAccountId"] = policy.target_account
    try:
        target_url = str(sqs.get_queue_url(**request)["QueueUrl"])
        target = sqs.get_queue_attributes(QueueUrl=target_url, AttributeNames=["All"])
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        if code in _NO_QUEUE_CODES:
            return (
                CheckResult(
                    "redrive",
                    Verdict.FAIL,
                    f"redrive policy {after}to {name}, which does not exist: SQS has nowhere "
                    "to move messages; recreate it or fix the policy",
                ),
                None,
            )
        return (
            CheckResult(
                "redrive",
                Verdict.WARN,
                f"redrive policy {after}to {name}; cannot confirm the queue exists "
                f"({_error_text(exc)}); s3sqsd itself needs no access to it",
            ),
            None,
        )
    target_attributes = {str(k): str(v) for k, v in target.get("Attributes", {}).items()}
    return (
        CheckResult(
            "redrive",
            Verdict.OK,
            f"redrive policy {after}to {name} (exists; {_counts(target_attributes)})",
        ),
        target_attributes,
    )


def _check_dlq_url(sqs: Any, url: str) -> CheckResult:
    lookup = read_queue(sqs, url, what="dlq-url")
    if lookup.attributes is None:
        if lookup.code in _DENIED_CODES:
            return CheckResult(
                "dlq-url",
                Verdict.WARN,
                f"{url}: cannot confirm it exists (GetQueueAttributes denied); s3sqsd needs "
                "sqs:SendMessage on it",
            )
        return lookup.result
    if is_fifo(url, lookup.attributes):
        return CheckResult(
            "dlq-url",
            Verdict.FAIL,
            f"{url}: a FIFO queue; s3sqsd sends dead letters without a MessageGroupId, which "
            "FIFO queues refuse: use a standard queue",
        )
    retention = _seconds(lookup.attributes.get("MessageRetentionPeriod"))
    kept = f", keeps messages {format_duration(retention)}" if retention is not None else ""
    return CheckResult("dlq-url", Verdict.OK, f"{url}: exists; {_counts(lookup.attributes)}{kept}")


def check_max_receives(policy: RedrivePolicy, config: Config) -> CheckResult:
    """The queue must not dead-letter a message before s3sqsd's own retries are done."""
    attempts = config.retry.max_attempts
    count = policy.max_receive_count
    if count is None:
        return CheckResult(
            "max-receives", Verdict.WARN, "the redrive policy has no readable maxReceiveCount"
        )
    if count < attempts:
        return CheckResult(
            "max-receives",
            Verdict.WARN,
            f"maxReceiveCount {count} is below retry.max_attempts {attempts}: the queue "
            f"dead-letters a message before s3sqsd's own retries are done; raise it to at "
            f"least {attempts}",
        )
    return CheckResult(
        "max-receives",
        Verdict.OK,
        f"maxReceiveCount {count} >= retry.max_attempts {attempts}",
    )


def retry_span_seconds(config: Config) -> float:
    """The longest time s3sqsd's retries of one message can take (every delay at the cap)."""
    return config.retry.max_delay_seconds * config.retry.max_attempts


def check_retention(attributes: Mapping[str, str], config: Config) -> CheckResult:
    """A message must outlive all its retries, with room to spare."""
    retention = _seconds(attributes.get("MessageRetentionPeriod"))
    span = retry_span_seconds(config)
    needs = (
        f"retries can take ({config.retry.max_attempts} x retry.max_delay_seconds "
        f"{config.retry.max_delay_seconds:g} s)"
    )
    if retention is None:
        return CheckResult(
            "retention", Verdict.WARN, "the queue did not report its MessageRetentionPeriod"
        )
    if retention < RETENTION_FACTOR * span:
        return CheckResult(
            "retention",
            Verdict.WARN,
            f"the queue keeps messages {format_duration(retention)}, less than "
            f"{RETENTION_FACTOR} x the {format_duration(span)} s3sqsd's {needs}: messages "
            "can expire before they are downloaded or dead-lettered; raise "
            "MessageRetentionPeriod",
        )
    return CheckResult(
        "retention",
        Verdict.OK,
        f"the queue keeps messages {format_duration(retention)}, more than "
        f"{RETENTION_FACTOR} x the {format_duration(span)} s3sqsd's {needs}",
    )


def check_dlq_retention(
    source_attributes: Mapping[str, str], dlq_attributes: Mapping[str, str]
) -> CheckResult:
    """SQS keeps a message's original enqueue time when redrive moves it: a dead-letter queue
    with a shorter retention can drop it on arrival."""
    source = _seconds(source_attributes.get("MessageRetentionPeriod"))
    dlq = _seconds(dlq_attributes.get("MessageRetentionPeriod"))
    if source is None or dlq is None:
        return CheckResult(
            "dlq-retention", Verdict.WARN, "a MessageRetentionPeriod was not reported"
        )
    if dlq < source:
        return CheckResult(
            "dlq-retention",
            Verdict.WARN,
            f"the dead-letter queue keeps messages {format_duration(dlq)}, less than the "
            f"queue's {format_duration(source)}; expiry counts from the original enqueue time, "
            "so a dead letter can expire as soon as it arrives: make it at least as long",
        )
    return CheckResult(
        "dlq-retention",
        Verdict.OK,
        f"the dead-letter queue keeps messages {format_duration(dlq)} "
        f"(>= the queue's {format_duration(source)})",
    )


def check_timeouts(attributes: Mapping[str, str], config: Config) -> CheckResult:
    """Informational: s3sqsd passes its own visibility timeout and wait time on every receive."""
    visibility = _seconds(attributes.get("VisibilityTimeout"))
    wait = _seconds(attributes.get("ReceiveMessageWaitTimeSeconds"))
    queue = ", ".join(
        f"{label} {format_duration(value)}"
        for label, value in (("visibility", visibility), ("receive wait", wait))
        if value is not None
    )
    return CheckResult(
        "timeouts",
        Verdict.OK,
        f"the queue's defaults ({queue or 'not reported'}) do not apply: s3sqsd asks for "
        f"{config.visibility_timeout_seconds} s visibility (extended while downloading) and "
        f"{config.wait_time_seconds} s long polls",
    )


# ---- buckets -----------------------------------------------------------------------------------


def check_buckets(
    s3: Any,
    buckets: Iterable[str],
    *,
    skip_reason: str | None = None,
    owners: Mapping[str, str | None] | None = None,
) -> tuple[CheckResult, ...]:
    """HeadBucket on each allowed bucket (one line each); ``owners``: each bucket's
    ``expected_bucket_owner``, which a denial may also mean."""
    names = tuple(buckets)
    if not names:
        return (
            _skip(
                "buckets",
                "no s3_bucket_name allow-list: events for any bucket are accepted, so there is "
                "no bucket to check",
            ),
        )
    if skip_reason is not None:
        return tuple(_skip("bucket", f"{name}: {skip_reason}") for name in names)
    owners = owners or {}
    return tuple(check_bucket(s3, name, owner=owners.get(name)) for name in names)


def check_bucket(s3: Any, name: str, *, owner: str | None = None) -> CheckResult:
    try:
        s3.head_bucket(Bucket=name)
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        if _is_unreachable(exc):
            detail = f"{name}: the S3 endpoint cannot be reached: {_error_text(exc)}"
            return CheckResult("bucket", Verdict.FAIL, detail)
        if code in _NO_BUCKET_CODES:
            return CheckResult("bucket", Verdict.FAIL, f"{name}: no such bucket")
        if code in _DENIED_CODES:
            return CheckResult(
                "bucket",
                Verdict.WARN,
                f"{name}: HeadBucket denied ({code}); it needs s3:ListBucket, which s3sqsd "
                "does not, so access to the objects cannot be confirmed here"
                + (
                    f"; or account {owner} (expected_bucket_owner) does not own the bucket"
                    if owner
                    else ""
                ),
            )
        if code in _REFUSED_CREDENTIAL_CODES:
            return CheckResult("bucket", Verdict.FAIL, f"{name}: the credentials were refused")
        return CheckResult("bucket", Verdict.FAIL, f"{name}: HeadBucket failed: {_error_text(exc)}")
    owned = f", owned by {owner} (expected_bucket_owner)" if owner else ""
    return CheckResult("bucket", Verdict.OK, f"{name}: reachable{owned}")


def check_listings(
    s3: Any, config: Config, *, skip_reason: str | None = None
) -> tuple[CheckResult, ...]:
    """What ``s3sqsd sync`` needs beyond the daemon: ``s3:ListBucket`` on each bucket/prefix it
    lists (listing.targets), tried with one ListObjectsV2 of MaxKeys=1 each. Only sync needs
    it, so a denial is a warning: the daemon works without it."""
    try:
        wanted = targets(config)
    except ConfigError:
        return (
            _skip(
                "sync-list",
                "the configuration names no bucket: s3sqsd sync needs --bucket, and "
                "s3:ListBucket on that bucket",
            ),
        )
    if skip_reason is not None:
        return tuple(_skip("sync-list", f"{t.url}: {skip_reason}") for t in wanted)
    checked = frozenset(config.s3_bucket_name)
    return tuple(check_listing(s3, target, head_checked=checked) for target in wanted)


def check_listing(
    s3: Any, target: Target, *, head_checked: frozenset[str] = frozenset()
) -> CheckResult:
    """One listing; a missing bucket that has a ``bucket`` line of its own is not failed twice."""
    params: dict[str, Any] = {"Bucket": target.bucket, "MaxKeys": 1}
    if target.prefix:
        params["Prefix"] = target.prefix
    try:
        s3.list_objects_v2(**params)
    except (ClientError, BotoCoreError) as exc:
        code = error_code(exc)
        if _is_unreachable(exc):
            detail = f"{target.url}: the S3 endpoint cannot be reached: {_error_text(exc)}"
            return CheckResult("sync-list", Verdict.FAIL, detail)
        if code in _DENIED_CODES:
            return CheckResult(
                "sync-list",
                Verdict.WARN,
                f"{target.url}: ListObjectsV2 denied ({code}); s3sqsd sync needs s3:ListBucket "
                "here (the daemon does not)",
            )
        if code in _NO_BUCKET_CODES:
            if target.bucket in head_checked:
                return _skip("sync-list", f"{target.url}: no such bucket (its bucket line FAILs)")
            return CheckResult("sync-list", Verdict.FAIL, f"{target.url}: no such bucket")
        return CheckResult(
            "sync-list", Verdict.FAIL, f"{target.url}: ListObjectsV2 failed: {_error_text(exc)}"
        )
    return CheckResult("sync-list", Verdict.OK, f"{target.url}: s3sqsd sync can list it")


# ---- the download folder -----------------------------------------------------------------------


def nearest_existing(path: Path) -> Path:
    """``path`` itself when it exists, else its closest existing ancestor."""
    current = path
    while not os.path.lexists(current) and current.parent != current:
        current = current.parent
    return current


def _writable(path: Path) -> bool:
    mode = os.W_OK | os.X_OK
    if os.access in os.supports_effective_ids:
        return os.access(path, mode, effective_ids=True)
    return os.access(path, mode)


def _why_not_writable(path: Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass
    return f"permission denied for uid {os.geteuid()}"


def check_folder(root: Path) -> CheckResult:
    """The folder (or, while it does not exist, its nearest existing parent) is a writable
    directory, and the temp folder, if there, is a writable directory on the same file system.
    Looks only: ``stat`` and ``access``, nothing is created."""
    as_root = " (as root: permission bits not checked)" if os.geteuid() == 0 else ""
    try:
        existing = nearest_existing(root)
        info = os.stat(existing)
    except OSError as exc:
        return CheckResult(
            "folder", Verdict.FAIL, f"{root}: cannot be inspected ({_os_error_text(exc)})"
        )
    if existing != root:
        if not _is_dir(info):
            return CheckResult(
                "folder",
                Verdict.FAIL,
                f"{root}: does not exist and {existing} is not a directory, so it cannot be made",
            )
        if not _writable(existing):
            return CheckResult(
                "folder",
                Verdict.FAIL,
                f"{root}: does not exist and the daemon cannot create it: {existing} is not "
                f"writable ({_why_not_writable(existing)})",
            )
        return CheckResult(
            "folder",
            Verdict.OK,
            f"{root}: does not exist yet; the daemon creates it at start ({existing} is "
            f"writable){as_root}",
        )
    if not _is_dir(info):
        return CheckResult("folder", Verdict.FAIL, f"{root}: exists but is not a directory")
    if not _writable(root):
        return CheckResult(
            "folder", Verdict.FAIL, f"{root}: not writable ({_why_not_writable(root)})"
        )
    temp = root / TEMP_DIR_NAME
    try:
        temp_info = os.stat(temp)
    except FileNotFoundError:
        return CheckResult(
            "folder",
            Verdict.OK,
            f"{root}: writable; the daemon creates its temp folder {TEMP_DIR_NAME} in it, on "
            f"the same file system{as_root}",
        )
    except OSError as exc:
        return CheckResult(
            "folder", Verdict.FAIL, f"{temp}: cannot be inspected ({_os_error_text(exc)})"
        )
    if not _is_dir(temp_info):
        return CheckResult(
            "folder", Verdict.FAIL, f"{temp}: the temp folder's name is taken by a non-directory"
        )
    if temp_info.st_dev != info.st_dev:
        return CheckResult(
            "folder",
            Verdict.FAIL,
            f"{temp}: the temp folder is on another file system than {root}; renames into "
            "place would not be atomic",
        )
    if not _writable(temp):
        return CheckResult(
            "folder", Verdict.FAIL, f"{temp}: not writable ({_why_not_writable(temp)})"
        )
    return CheckResult(
        "folder",
        Verdict.OK,
        f"{root}: writable; temp folder {TEMP_DIR_NAME} on the same file system{as_root}",
    )


def _is_dir(info: os.stat_result) -> bool:
    return (info.st_mode & 0o170000) == 0o040000


def check_free_space(root: Path, *, floor: int | None = None) -> CheckResult:
    """Free blocks and inodes where the files will go (``statvfs``), against the configured
    ``min_free_bytes`` (``floor``) as well as the built-in thresholds."""
    where = nearest_existing(root)
    try:
        stats = os.statvfs(where)
    except OSError as exc:
        return CheckResult(
            "free-space", Verdict.WARN, f"{where}: cannot be measured ({_os_error_text(exc)})"
        )
    return evaluate_free_space(
        where,
        free_bytes=stats.f_bavail * stats.f_frsize,
        total_bytes=stats.f_blocks * stats.f_frsize,
        free_inodes=stats.f_favail,
        total_inodes=stats.f_files,
        floor=floor,
    )


def evaluate_free_space(
    where: Path,
    *,
    free_bytes: int,
    total_bytes: int,
    free_inodes: int,
    total_inodes: int,
    floor: int | None = None,
) -> CheckResult:
    """Warn below ``min_free_bytes`` (``floor``: the daemon would hold every download until
    space is freed), below MIN_FREE_BYTES or MIN_FREE_FRACTION; inodes only where the file
    system counts them (btrfs reports 0)."""
    fraction = free_bytes / total_bytes if total_bytes > 0 else 0.0
    space = f"{format_bytes(free_bytes)} free ({fraction:.0%} of {format_bytes(total_bytes)})"
    if floor is not None:
        space += f", min_free_bytes {format_bytes(floor)}"
    problems = []
    if floor is not None and free_bytes < floor:
        problems.append("below min_free_bytes: downloads wait until space is freed")
    elif free_bytes < MIN_FREE_BYTES:
        problems.append(f"less than {format_bytes(MIN_FREE_BYTES)}")
    elif fraction < MIN_FREE_FRACTION:
        problems.append(f"less than {MIN_FREE_FRACTION:.0%}")
    inodes = ""
    if total_inodes > 0:
        inode_fraction = free_inodes / total_inodes
        inodes = f", {inode_fraction:.0%} of inodes free"
        if inode_fraction < MIN_FREE_FRACTION:
            problems.append(f"inodes below {MIN_FREE_FRACTION:.0%}")
    if problems:
        return CheckResult(
            "free-space",
            Verdict.WARN,
            f"{where}: {space}{inodes}: {', '.join(problems)}; a full disk pauses downloads",
        )
    return CheckResult("free-space", Verdict.OK, f"{where}: {space}{inodes}")


# ---- formatting and errors ---------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} days"


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def _is_unreachable(exc: BaseException) -> bool:
    """Connection refused, DNS failure, TLS failure, timeouts: nothing answered."""
    return isinstance(exc, BotoConnectionError | HTTPClientError)


_error_text = error_text


def _os_error_text(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
