"""The pre-flight check's parts, table-driven: pure evaluations, and the checks that call AWS
against small stub clients (no network). The real thing runs in tests/integration."""

from __future__ import annotations

import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from s3sqsd.checksums import HostChecksums
from s3sqsd.config import Config, RetryConfig, RouteConfig
from s3sqsd.paths import TEMP_DIR_NAME
from s3sqsd.preflight import (
    CheckClients,
    CheckResult,
    GiB,
    RedrivePolicy,
    Report,
    Verdict,
    check_buckets,
    check_checksums,
    check_credentials,
    check_dead_letters,
    check_dlq_retention,
    check_folder,
    check_listings,
    check_max_receives,
    check_queue_type,
    check_retention,
    check_timeouts,
    evaluate_free_space,
    format_bytes,
    format_duration,
    parse_redrive_policy,
    read_queue,
    run_checks,
)

OK, WARN, FAIL, SKIP = Verdict.OK, Verdict.WARN, Verdict.FAIL, Verdict.SKIP
QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/inbox"
DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/inbox-dlq"
DLQ_ARN = "arn:aws:sqs:eu-west-1:123456789012:inbox-dlq"
POLICY = f'{{"deadLetterTargetArn": "{DLQ_ARN}", "maxReceiveCount": 10}}'


def config(**overrides: Any) -> Config:
    values: dict[str, Any] = {"sqs_queue_url": QUEUE, "download_folder": Path("/srv/in")}
    values.update(overrides)
    return Config(**values)


def client_error(code: str, operation: str = "GetQueueAttributes") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} happened"}}, operation)


def queue_attributes(**overrides: str) -> dict[str, str]:
    attributes = {
        "ApproximateNumberOfMessages": "3",
        "ApproximateNumberOfMessagesNotVisible": "0",
        "MessageRetentionPeriod": "345600",
        "VisibilityTimeout": "30",
        "ReceiveMessageWaitTimeSeconds": "0",
    }
    attributes.update(overrides)
    return attributes


class StubSqs:
    """Queues by URL (and by name for GetQueueUrl); an exception instead of attributes fails
    that call. Records every call so tests can check only Get calls were made."""

    def __init__(self, queues: dict[str, dict[str, str] | BaseException]) -> None:
        self.queues = queues
        self.calls: list[str] = []

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        self.calls.append(f"GetQueueAttributes {QueueUrl}")
        found = self.queues.get(QueueUrl, client_error("AWS.SimpleQueueService.NonExistentQueue"))
        if isinstance(found, BaseException):
            raise found
        return {"Attributes": found}

    def get_queue_url(self, QueueName: str, QueueOwnerAWSAccountId: str = "") -> dict[str, Any]:
        self.calls.append(f"GetQueueUrl {QueueName} {QueueOwnerAWSAccountId}")
        for url, found in self.queues.items():
            if url.rsplit("/", 1)[-1] == QueueName:
                if isinstance(found, ClientError):
                    raise found  # GetQueueUrl fails the same way as GetQueueAttributes
                return {"QueueUrl": url}
        raise client_error("AWS.SimpleQueueService.NonExistentQueue", "GetQueueUrl")


class StubS3:
    def __init__(self, buckets: dict[str, BaseException | None]) -> None:
        self.buckets = buckets
        self.calls: list[str] = []

    def head_bucket(self, Bucket: str) -> dict[str, Any]:
        self.calls.append(f"HeadBucket {Bucket}")
        error = self.buckets.get(Bucket, client_error("404", "HeadBucket"))
        if error is not None:
            raise error
        return {}

    def list_objects_v2(self, **params: Any) -> dict[str, Any]:
        self.calls.append(f"ListObjectsV2 {params}")
        error = self.buckets.get(params["Bucket"], client_error("NoSuchBucket", "List"))
        if error is not None:
            raise error
        return {}


# ---- pure evaluations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        (POLICY, RedrivePolicy(DLQ_ARN, 10)),
        (
            f'{{"deadLetterTargetArn": "{DLQ_ARN}", "maxReceiveCount": "4"}}',
            RedrivePolicy(DLQ_ARN, 4),
        ),
        (f'{{"deadLetterTargetArn": "{DLQ_ARN}"}}', RedrivePolicy(DLQ_ARN, None)),
        (
            f'{{"deadLetterTargetArn": "{DLQ_ARN}", "maxReceiveCount": true}}',
            RedrivePolicy(DLQ_ARN, None),
        ),
    ],
)
def test_parse_redrive_policy(text: str | None, expected: RedrivePolicy | None) -> None:
    assert parse_redrive_policy(text) == expected


@pytest.mark.parametrize(
    "text", ["{", "[]", '{"maxReceiveCount": 3}', '{"deadLetterTargetArn": 7}']
)
def test_unreadable_redrive_policy(text: str) -> None:
    with pytest.raises(ValueError, match=r"not JSON|deadLetterTargetArn"):
        parse_redrive_policy(text)


@pytest.mark.parametrize(
    ("arn", "name", "account"),
    [
        (DLQ_ARN, "inbox-dlq", "123456789012"),
        ("arn:aws-cn:sqs:cn-north-1:123456789012:q.fifo", "q.fifo", "123456789012"),
        ("arn:aws:sns:eu-west-1:123456789012:topic", None, "123456789012"),
        ("inbox-dlq", None, None),
    ],
)
def test_redrive_target(arn: str, name: str | None, account: str | None) -> None:
    policy = RedrivePolicy(arn, 5)
    assert policy.target_name == name
    assert policy.target_account == account


@pytest.mark.parametrize(
    ("url", "attributes", "verdict"),
    [
        (QUEUE, {}, OK),
        (QUEUE + ".fifo", {}, WARN),
        (QUEUE, {"FifoQueue": "true"}, WARN),
        (QUEUE, {"FifoQueue": "false"}, OK),
    ],
)
def test_queue_type(url: str, attributes: dict[str, str], verdict: Verdict) -> None:
    result = check_queue_type(url, attributes)
    assert result.verdict is verdict
    if verdict is WARN:
        assert "FIFO" in result.detail
        assert "EventBridge" in result.detail


@pytest.mark.parametrize(
    ("count", "attempts", "verdict"),
    [(None, 5, WARN), (2, 3, WARN), (4, 5, WARN), (5, 5, OK), (10, 5, OK), (1, 1, OK)],
)
def test_max_receives(count: int | None, attempts: int, verdict: Verdict) -> None:
    result = check_max_receives(
        RedrivePolicy(DLQ_ARN, count), config(retry=RetryConfig(max_attempts=attempts))
    )
    assert result.verdict is verdict
    if count is not None and count < attempts:
        assert f"maxReceiveCount {count} is below retry.max_attempts {attempts}" in result.detail


@pytest.mark.parametrize(
    ("retention", "verdict"),
    [
        ("345600", OK),  # the SQS default, 4 days
        ("3000", OK),  # exactly twice 5 x 300 s
        ("2999", WARN),
        ("1000", WARN),  # shorter than the retries themselves
        (None, WARN),
        ("not a number", WARN),
    ],
)
def test_retention(retention: str | None, verdict: Verdict) -> None:
    attributes = queue_attributes()
    attributes.pop("MessageRetentionPeriod")
    if retention is not None:
        attributes["MessageRetentionPeriod"] = retention
    result = check_retention(attributes, config())  # default retry: 5 x 300 s = 25 min
    assert result.verdict is verdict, result.detail
    if retention is not None and retention.isdigit():
        assert "25 min" in result.detail


@pytest.mark.parametrize(
    ("source", "dlq", "verdict"),
    [
        ("345600", "1209600", OK),
        ("345600", "345600", OK),
        ("345600", "86400", WARN),
        (None, "60", WARN),
    ],
)
def test_dlq_retention(source: str | None, dlq: str, verdict: Verdict) -> None:
    source_attributes = {} if source is None else {"MessageRetentionPeriod": source}
    result = check_dlq_retention(source_attributes, {"MessageRetentionPeriod": dlq})
    assert result.verdict is verdict
    if verdict is WARN and source is not None:
        assert "original enqueue time" in result.detail


def test_timeouts_are_informational() -> None:
    result = check_timeouts(
        queue_attributes(VisibilityTimeout="3600"),
        config(visibility_timeout_seconds=45, wait_time_seconds=7),
    )
    assert result.verdict is OK
    assert "visibility 60 min" in result.detail
    assert "45 s visibility" in result.detail
    assert "7 s long polls" in result.detail


@pytest.mark.parametrize(
    ("free", "total", "free_inodes", "total_inodes", "verdict", "words"),
    [
        (50 * GiB, 100 * GiB, 900, 1000, OK, "50% of 100.0 GiB"),
        (GiB // 2, 2 * GiB, 900, 1000, WARN, "less than 1.0 GiB"),
        (4 * GiB, 100 * GiB, 900, 1000, WARN, "less than 5%"),
        (5 * GiB, 100 * GiB, 900, 1000, OK, "5%"),
        (50 * GiB, 100 * GiB, 10, 1000, WARN, "inodes below 5%"),
        (50 * GiB, 100 * GiB, 0, 0, OK, "50%"),  # btrfs: no inode counts
        (0, 0, 0, 0, WARN, "less than 1.0 GiB"),
    ],
)
def test_free_space(
    free: int, total: int, free_inodes: int, total_inodes: int, verdict: Verdict, words: str
) -> None:
    result = evaluate_free_space(
        Path("/srv"),
        free_bytes=free,
        total_bytes=total,
        free_inodes=free_inodes,
        total_inodes=total_inodes,
    )
    assert result.verdict is verdict, result.detail
    assert words in result.detail
    assert ("inodes free" in result.detail) == (total_inodes > 0)


@pytest.mark.parametrize(
    ("free", "floor", "verdict", "words"),
    [
        (4 * GiB, 5 * GiB, WARN, "below min_free_bytes: downloads wait until space is freed"),
        (6 * GiB, 5 * GiB, OK, "min_free_bytes 5.0 GiB"),
        (0, 5 * GiB, WARN, "below min_free_bytes"),
    ],
)
def test_free_space_against_min_free_bytes(
    free: int, floor: int, verdict: Verdict, words: str
) -> None:
    """The configured floor: below it the daemon holds every download (``disk.low_space``),
    so check says so before the first message waits."""
    result = evaluate_free_space(
        Path("/srv"),
        free_bytes=free,
        total_bytes=100 * GiB,
        free_inodes=900,
        total_inodes=1000,
        floor=floor,
    )
    assert result.verdict is verdict, result.detail
    assert words in result.detail


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (6, "6 s"),
        (119, "119 s"),
        (1500, "25 min"),
        (7200, "2 h"),
        (86400, "24 h"),
        (345600, "4 days"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


@pytest.mark.parametrize(
    ("count", "text"),
    [(512, "512 B"), (1536, "1.5 KiB"), (GiB, "1.0 GiB"), (3 * 1024 * GiB, "3.0 TiB")],
)
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


# ---- the report -------------------------------------------------------------------------------


def test_lines_and_verdicts() -> None:
    report = Report(
        (
            CheckResult("config", OK, "/etc/s3sqsd/config.yaml: valid"),
            CheckResult("retention", WARN, "short"),
            CheckResult("queue", FAIL, "no such queue"),
            CheckResult("buckets", SKIP, "no allow-list"),
        )
    )
    assert report.failed
    assert report.lines() == [
        "ok    config         /etc/s3sqsd/config.yaml: valid",
        "warn  retention      short",
        "FAIL  queue          no such queue",
        "skip  buckets        no allow-list",
        "s3sqsd: 1 check FAILED, 1 warning; s3sqsd cannot work as configured",
    ]


@pytest.mark.parametrize(
    ("verdicts", "failed", "summary"),
    [
        ((OK, OK), False, "s3sqsd: all checks passed"),
        ((OK, SKIP), False, "s3sqsd: all checks passed"),
        ((OK, WARN, WARN), False, "s3sqsd: no failures, 2 warnings"),
        ((FAIL, FAIL, OK), True, "s3sqsd: 2 checks FAILED, 0 warnings; s3sqsd cannot work"),
    ],
)
def test_summary(verdicts: tuple[Verdict, ...], failed: bool, summary: str) -> None:
    report = Report(tuple(CheckResult("x", v, "") for v in verdicts))
    assert report.failed is failed
    assert report.summary().startswith(summary)


# ---- credentials ------------------------------------------------------------------------------


@dataclass
class FakeCredentials:
    access_key: str = "AKIASECRETSECRET0001"
    secret_key: str = "very-secret-key"
    token: str = "very-secret-token"
    method: str | None = "shared-credentials-file"


class FakeSession:
    def __init__(self, credentials: object) -> None:
        self.credentials = credentials

    def get_credentials(self) -> object:
        if isinstance(self.credentials, BaseException):
            raise self.credentials
        return self.credentials


@pytest.mark.parametrize(
    ("credentials", "verdict", "words"),
    [
        (FakeCredentials(), OK, "found (source: shared-credentials-file)"),
        (FakeCredentials(method=None), OK, "found"),
        (None, FAIL, "none found"),
        (ValueError("bad profile"), FAIL, "looking them up failed: bad profile"),
    ],
)
def test_credentials(credentials: object, verdict: Verdict, words: str) -> None:
    result = check_credentials(FakeSession(credentials))
    assert result.verdict is verdict
    assert words in result.detail
    for secret in ("AKIASECRETSECRET0001", "very-secret-key", "very-secret-token"):
        assert secret not in result.detail


# ---- the queue and dead letters ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "verdict", "words", "unreachable"),
    [
        (queue_attributes(), OK, "exists; 3 visible, 0 in flight", False),
        (client_error("AWS.SimpleQueueService.NonExistentQueue"), FAIL, "no such queue", False),
        (client_error("QueueDoesNotExist"), FAIL, "no such queue", False),
        (client_error("AccessDenied"), FAIL, "access denied for GetQueueAttributes", False),
        (client_error("InvalidClientTokenId"), FAIL, "credentials were refused", False),
        (client_error("InternalError"), FAIL, "GetQueueAttributes failed", False),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            FAIL,
            "cannot be reached",
            True,
        ),
        (ReadTimeoutError(endpoint_url="http://127.0.0.1:9"), FAIL, "cannot be reached", True),
    ],
)
def test_read_queue(
    outcome: dict[str, str] | BaseException, verdict: Verdict, words: str, unreachable: bool
) -> None:
    lookup = read_queue(StubSqs({QUEUE: outcome}), QUEUE, what="queue")
    assert lookup.result.verdict is verdict
    assert words in lookup.result.detail
    assert lookup.result.detail.startswith(QUEUE)
    assert lookup.unreachable is unreachable
    assert (lookup.attributes is not None) == (verdict is OK)


def dead_letter_lines(
    queues: dict[str, dict[str, str] | BaseException], source: dict[str, str], **overrides: Any
) -> dict[str, CheckResult]:
    sqs = StubSqs(queues)
    results = check_dead_letters(sqs, config(**overrides), source)
    assert all(call.startswith(("GetQueueAttributes", "GetQueueUrl")) for call in sqs.calls)
    names = [r.name for r in results]
    assert len(names) == len(set(names)), names
    return {r.name: r for r in results}


def test_no_redrive_and_no_dlq_url_fails() -> None:
    lines = dead_letter_lines({}, queue_attributes())
    assert list(lines) == ["redrive"]
    assert lines["redrive"].verdict is FAIL
    assert "no redrive policy and dead_letter_queue_url is not set" in lines["redrive"].detail


def test_redrive_to_an_existing_queue() -> None:
    lines = dead_letter_lines(
        {DLQ: queue_attributes(MessageRetentionPeriod="1209600")},
        queue_attributes(RedrivePolicy=POLICY),
    )
    assert {name: r.verdict for name, r in lines.items()} == {
        "redrive": OK,
        "max-receives": OK,
        "dlq-retention": OK,
    }
    assert "after 10 receives to inbox-dlq (exists" in lines["redrive"].detail


@pytest.mark.parametrize(
    ("target", "verdict", "words"),
    [
        (None, FAIL, "inbox-dlq, which does not exist"),
        (client_error("AccessDenied", "GetQueueUrl"), WARN, "cannot confirm the queue exists"),
    ],
)
def test_redrive_target_not_confirmed(
    target: BaseException | None, verdict: Verdict, words: str
) -> None:
    queues: dict[str, dict[str, str] | BaseException] = {} if target is None else {DLQ: target}
    lines = dead_letter_lines(queues, queue_attributes(RedrivePolicy=POLICY))
    assert lines["redrive"].verdict is verdict
    assert words in lines["redrive"].detail
    assert "dlq-retention" not in lines  # nothing to compare with
    assert lines["max-receives"].verdict is OK


def test_unreadable_redrive_policy_warns() -> None:
    lines = dead_letter_lines(
        {}, queue_attributes(RedrivePolicy="{oops"), dead_letter_queue_url=DLQ
    )
    assert lines["redrive"].verdict is WARN
    assert "unreadable" in lines["redrive"].detail
    assert lines["dlq-url"].verdict is FAIL  # DLQ is not in the stub: it does not exist


@pytest.mark.parametrize(
    ("dlq", "verdict", "words"),
    [
        (queue_attributes(), OK, "exists; 3 visible, 0 in flight, keeps messages 4 days"),
        (client_error("AWS.SimpleQueueService.NonExistentQueue"), FAIL, "no such queue"),
        (client_error("AccessDenied"), WARN, "needs sqs:SendMessage on it"),
        (queue_attributes(FifoQueue="true"), FAIL, "MessageGroupId"),
    ],
)
def test_dead_letter_queue_url(
    dlq: dict[str, str] | BaseException, verdict: Verdict, words: str
) -> None:
    lines = dead_letter_lines({DLQ: dlq}, queue_attributes(), dead_letter_queue_url=DLQ)
    assert lines["redrive"].verdict is OK  # no policy, but s3sqsd dead-letters itself
    assert lines["dlq-url"].verdict is verdict
    assert words in lines["dlq-url"].detail


# ---- buckets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "verdict", "words"),
    [
        (None, OK, "inbox: reachable"),
        (client_error("404", "HeadBucket"), FAIL, "inbox: no such bucket"),
        (client_error("NoSuchBucket", "HeadBucket"), FAIL, "inbox: no such bucket"),
        (client_error("403", "HeadBucket"), WARN, "s3:ListBucket"),
        (client_error("InvalidAccessKeyId", "HeadBucket"), FAIL, "credentials were refused"),
        (client_error("500", "HeadBucket"), FAIL, "HeadBucket failed"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), FAIL, "cannot be reached"),
    ],
)
def test_bucket(outcome: BaseException | None, verdict: Verdict, words: str) -> None:
    (result,) = check_buckets(StubS3({"inbox": outcome}), ["inbox"])
    assert (result.name, result.verdict) == ("bucket", verdict)
    assert words in result.detail


def test_buckets_one_line_each_or_skipped() -> None:
    s3 = StubS3({"a": None})
    assert [r.verdict for r in check_buckets(s3, ["a", "b"])] == [OK, FAIL]
    (skipped,) = check_buckets(s3, [])
    assert skipped.verdict is SKIP
    assert "no s3_bucket_name allow-list" in skipped.detail
    calls = len(s3.calls)
    assert [r.verdict for r in check_buckets(s3, ["a", "b"], skip_reason="down")] == [SKIP, SKIP]
    assert len(s3.calls) == calls


# ---- the download folder ---------------------------------------------------------------------


def snapshot(path: Path) -> list[str]:
    return sorted(str(p) for p in path.rglob("*"))


@pytest.mark.parametrize(
    ("layout", "folder", "verdict", "words"),
    [
        ({}, "downloads", OK, "does not exist yet; the daemon creates it"),
        ({}, "a/b/c", OK, "does not exist yet"),
        ({"downloads/": None}, "downloads", OK, "the daemon creates its temp folder"),
        ({f"downloads/{TEMP_DIR_NAME}/": None}, "downloads", OK, "on the same file system"),
        ({f"downloads/{TEMP_DIR_NAME}": b"x"}, "downloads", FAIL, "taken by a non-directory"),
        ({"downloads": b"x"}, "downloads", FAIL, "exists but is not a directory"),
        ({"a": b"x"}, "a/downloads", FAIL, "is not a directory, so it cannot be made"),
    ],
)
def test_folder(
    tmp_path: Path, layout: dict[str, bytes | None], folder: str, verdict: Verdict, words: str
) -> None:
    for name, content in layout.items():
        path = tmp_path / name
        if content is None:
            path.mkdir(parents=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    before = snapshot(tmp_path)
    result = check_folder(tmp_path / folder)
    assert result.verdict is verdict, result.detail
    assert words in result.detail
    assert snapshot(tmp_path) == before  # nothing created


@pytest.mark.parametrize("existing", [True, False])
def test_unwritable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    folder = tmp_path / "downloads"
    if existing:
        folder.mkdir()
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    result = check_folder(folder)
    assert result.verdict is FAIL
    assert ("not writable" if existing else "the daemon cannot create it") in result.detail


def test_temp_folder_on_another_file_system(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    temp = tmp_path / TEMP_DIR_NAME
    temp.mkdir()
    real_stat = os.stat

    def fake_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        info = real_stat(path, *args, **kwargs)
        if Path(path) == temp:
            fields = list(info)
            fields[2] = info.st_dev + 1
            return os.stat_result(fields)
        return info

    monkeypatch.setattr(os, "stat", fake_stat)
    result = check_folder(tmp_path)
    assert result.verdict is FAIL
    assert "another file system" in result.detail


# ---- checksums ----------------------------------------------------------------------------------

_CRT = types.ModuleType("awscrt.checksums")
_CRT.crc32c = lambda data, previous=0: 0  # type: ignore[attr-defined]
_CRT.crc64nvme = lambda data, previous=0: 0  # type: ignore[attr-defined]
EVERY_CHECKSUM = HostChecksums.detect(import_module=lambda name: _CRT)


def test_checksums_ok_with_crc64nvme_and_crc32c() -> None:
    result = check_checksums(EVERY_CHECKSUM, config())
    assert result.verdict is OK
    assert result.detail.startswith("verifies SHA512, SHA256, SHA1, MD5, CRC64NVME, CRC32C, CRC32")


@pytest.mark.parametrize(
    ("integrity", "fate"),
    [("best_effort", "placed with a warning"), ("strict", "refused (integrity: strict)")],
)
def test_checksums_warn_without_awscrt(integrity: str, fate: str) -> None:
    """No awscrt: S3's default checksum cannot be verified here; the line says what happens."""

    def no_crt(name: str) -> types.ModuleType:
        raise ImportError(name)

    host = HostChecksums.detect(import_module=no_crt)
    result = check_checksums(host, config(integrity=integrity))
    assert result.verdict is WARN
    assert "CRC64NVME: no (awscrt missing" in result.detail
    assert "CRC32C: no (awscrt missing" in result.detail
    assert fate in result.detail


# ---- the whole run, with stubs ---------------------------------------------------------------


def stub_clients(
    session: object, sqs: StubSqs, s3: StubS3, *, s3_endpoint: str | None, sqs_endpoint: str | None
) -> CheckClients:
    return CheckClients(
        session=session, s3=s3, sqs=sqs, s3_endpoint=s3_endpoint, sqs_endpoint=sqs_endpoint
    )


def test_run_without_credentials_makes_no_aws_call(tmp_path: Path) -> None:
    sqs, s3 = StubSqs({}), StubS3({})
    emitted: list[CheckResult] = []
    report = run_checks(
        config(download_folder=tmp_path, s3_bucket_name=("inbox",)),
        config_path=Path("/etc/s3sqsd/config.yaml"),
        clients=stub_clients(FakeSession(None), sqs, s3, s3_endpoint=None, sqs_endpoint=None),
        emit=emitted.append,
        checksums=EVERY_CHECKSUM,
    )
    assert list(report.results) == emitted
    assert [(r.name, r.verdict) for r in report.results] == [
        ("config", OK),
        ("checksums", OK),
        ("credentials", FAIL),
        ("queue", SKIP),
        ("buckets", SKIP),
        ("sync-list", SKIP),
        ("folder", OK),
        ("free-space", report.results[-1].verdict),  # depends on the machine
    ]
    assert sqs.calls == []
    assert s3.calls == []


def test_unreachable_shared_endpoint_is_one_failure(tmp_path: Path) -> None:
    down = EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    sqs, s3 = StubSqs({QUEUE: down}), StubS3({"inbox": down})
    report = run_checks(
        config(download_folder=tmp_path, s3_bucket_name=("inbox",)),
        config_path=Path("c.yaml"),
        clients=stub_clients(
            FakeSession(FakeCredentials()),
            sqs,
            s3,
            s3_endpoint="http://127.0.0.1:9",
            sqs_endpoint="http://127.0.0.1:9",
        ),
    )
    assert [r.name for r in report.results if r.verdict is FAIL] == ["queue"]
    assert s3.calls == []
    assert report.failed


def test_good_run_only_reads(tmp_path: Path) -> None:
    sqs = StubSqs(
        {QUEUE: queue_attributes(RedrivePolicy=POLICY), DLQ: queue_attributes()},
    )
    s3 = StubS3({"inbox": None})
    report = run_checks(
        config(download_folder=tmp_path, s3_bucket_name=("inbox",), dead_letter_queue_url=DLQ),
        config_path=Path("c.yaml"),
        clients=stub_clients(
            FakeSession(FakeCredentials()), sqs, s3, s3_endpoint=None, sqs_endpoint=None
        ),
        checksums=EVERY_CHECKSUM,
    )
    names = [r.name for r in report.results]
    assert names[:-1] == [
        "config",
        "checksums",
        "credentials",
        "queue",
        "queue-type",
        "retention",
        "timeouts",
        "redrive",
        "max-receives",
        "dlq-retention",
        "dlq-url",
        "bucket",
        "sync-list",
        "folder",
    ]
    assert all(r.verdict is OK for r in report.results[:-1]), report.lines()
    assert all(call.startswith(("GetQueueAttributes", "GetQueueUrl")) for call in sqs.calls)
    assert s3.calls == ["HeadBucket inbox", "ListObjectsV2 {'Bucket': 'inbox', 'MaxKeys': 1}"]


# ---- what s3sqsd sync needs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "verdict", "words"),
    [
        (None, OK, "s3://inbox/in/: s3sqsd sync can list it"),
        (client_error("AccessDenied", "ListObjectsV2"), WARN, "needs s3:ListBucket"),
        (client_error("NoSuchBucket", "ListObjectsV2"), FAIL, "no such bucket"),
        (client_error("500", "ListObjectsV2"), FAIL, "ListObjectsV2 failed"),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), FAIL, "cannot be reached"),
    ],
)
def test_sync_listing(outcome: BaseException | None, verdict: Verdict, words: str) -> None:
    s3 = StubS3({"inbox": outcome})
    routed = config(
        download_folder=Path("/srv/in"),
        routes=(RouteConfig(download_folder=Path("/srv/in"), bucket="inbox", prefix="in/"),),
    )
    (result,) = check_listings(s3, routed)
    assert (result.name, result.verdict) == ("sync-list", verdict)
    assert words in result.detail
    assert s3.calls == ["ListObjectsV2 {'Bucket': 'inbox', 'MaxKeys': 1, 'Prefix': 'in/'}"]


def test_sync_listing_skips_without_a_bucket_or_when_told() -> None:
    s3 = StubS3({})
    (none,) = check_listings(s3, config())
    assert none.verdict is SKIP
    assert "--bucket" in none.detail
    allowed = config(s3_bucket_name=("a",))
    assert [r.verdict for r in check_listings(s3, allowed, skip_reason="down")] == [SKIP]
    assert [r.verdict for r in check_listings(s3, allowed)] == [SKIP]  # its bucket line FAILs
    assert len(s3.calls) == 1


def test_a_bucket_line_names_the_expected_owner() -> None:
    s3 = StubS3({"mine": None, "theirs": client_error("AccessDenied", "HeadBucket")})
    ok, denied = check_buckets(
        s3, ["mine", "theirs"], owners={"mine": "111122223333", "theirs": "444455556666"}
    )
    assert ok.verdict is Verdict.OK
    assert ok.detail == "mine: reachable, owned by 111122223333 (expected_bucket_owner)"
    assert denied.verdict is Verdict.WARN
    assert denied.detail.endswith(
        "or account 444455556666 (expected_bucket_owner) does not own the bucket"
    )
    (plain,) = check_buckets(StubS3({"mine": None}), ["mine"])
    assert plain.detail == "mine: reachable"
