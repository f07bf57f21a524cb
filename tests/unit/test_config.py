"""Configuration: every accepted form, every refusal with its exact message, file errors, and
the shipped template and reference documentation kept in step with the dataclasses."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from s3sqsd.config import (
    DEFAULT_DOWNLOAD_FOLDER,
    Config,
    RetryConfig,
    load_config,
    parse_config,
)
from s3sqsd.errors import ConfigError
from s3sqsd.events import KeyDecoding, KeyDecodingPolicy

REPO = Path(__file__).resolve().parents[2]
SHIPPED_CONFIG = REPO / "etc" / "config.yaml"
REFERENCE_DOC = REPO / "docs" / "configuration.md"

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/s3sqsd-events"
DLQ = "https://sqs.eu-west-1.amazonaws.com/123456789012/s3sqsd-dead-letters"
# The example value the shipped template gives the one required key.
TEMPLATE_QUEUE = QUEUE


def parse_yaml(text: str) -> Config:
    """Parse YAML text the way load_config does, without a file."""
    return parse_config(yaml.safe_load(text))


def problems_of(data: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def yaml_problems(text: str) -> tuple[str, ...]:
    return problems_of(yaml.safe_load(text))


def load_problems(path: Path) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def write(tmp_path: Path, text: str | bytes, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


# ---- accepted configurations ---------------------------------------------------------------


def test_original_four_key_config_keeps_working(tmp_path: Path) -> None:
    """The replaced script's configuration loads unchanged; all else is default."""
    path = write(
        tmp_path,
        "aws_region: eu-west-1\n"
        "sqs_queue_url: https://sqs.eu-west-1.amazonaws.com/123456789012/acme-inbox-events\n"
        "download_folder: /srv/acme/inbox\n"
        "s3_bucket_name: acme-inbox\n",
    )
    assert load_config(path) == Config(
        sqs_queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/acme-inbox-events",
        download_folder=Path("/srv/acme/inbox"),
        aws_region="eu-west-1",
        s3_bucket_name=("acme-inbox",),
    )


def test_only_the_queue_url_gives_the_documented_defaults() -> None:
    """Defaults are the dataclass defaults, spelled out so a changed default is noticed."""
    config = parse_config({"sqs_queue_url": QUEUE})
    assert config == Config(sqs_queue_url=QUEUE)
    assert config.download_folder == DEFAULT_DOWNLOAD_FOLDER == Path("/var/lib/s3sqsd/downloads")
    assert config.aws_region is None
    assert config.s3_bucket_name == ()
    assert (config.workers, config.wait_time_seconds, config.visibility_timeout_seconds) == (
        8,
        20,
        120,
    )
    assert config.shutdown_timeout_seconds == 30.0
    assert config.retry == RetryConfig(5, 2.0, 300.0)
    assert config.key_decoding == KeyDecodingPolicy(KeyDecoding.URL, KeyDecoding.URL)
    assert (config.file_mode, config.directory_mode) == (0o640, 0o750)
    assert config.log_level == "info"


def test_full_config(tmp_path: Path) -> None:
    """Every key set to a non-default value arrives typed in Config."""
    path = write(
        tmp_path,
        f"""
sqs_queue_url: http://127.0.0.1:9324/000000000000/uploads
download_folder: /srv/uploads/
aws_region: us-east-2
s3_bucket_name: [bucket-a, bucket.b]
endpoint_url: http://127.0.0.1:9000
s3_endpoint_url: https://s3.example.test:8443/prefix
sqs_endpoint_url: http://[::1]:9324
dead_letter_queue_url: {DLQ}
workers: 32
wait_time_seconds: 10
visibility_timeout_seconds: 900
shutdown_timeout_seconds: 12.5
retry:
  max_attempts: 9
  base_delay_seconds: 0.5
  max_delay_seconds: 60
key_decoding:
  notifications: none
  eventbridge: none
file_mode: 0600
directory_mode: "0o700"
log_level: DEBUG
""",
    )
    assert load_config(path) == Config(
        sqs_queue_url="http://127.0.0.1:9324/000000000000/uploads",
        download_folder=Path("/srv/uploads"),
        aws_region="us-east-2",
        s3_bucket_name=("bucket-a", "bucket.b"),
        endpoint_url="http://127.0.0.1:9000",
        s3_endpoint_url="https://s3.example.test:8443/prefix",
        sqs_endpoint_url="http://[::1]:9324",
        dead_letter_queue_url=DLQ,
        workers=32,
        wait_time_seconds=10,
        visibility_timeout_seconds=900,
        shutdown_timeout_seconds=12.5,
        retry=RetryConfig(max_attempts=9, base_delay_seconds=0.5, max_delay_seconds=60.0),
        key_decoding=KeyDecodingPolicy(KeyDecoding.NONE, KeyDecoding.NONE),
        file_mode=0o600,
        directory_mode=0o700,
        log_level="debug",
    )


ACCEPTED = [
    # (YAML added to a valid sqs_queue_url line, field, expected value)
    ("download_folder: /srv//data/./x/../y/", "download_folder", Path("/srv/data/y")),
    ("download_folder: //srv/data", "download_folder", Path("/srv/data")),
    ("s3_bucket_name: [a, b, a]", "s3_bucket_name", ("a", "b")),
    ("s3_bucket_name: my.bucket-1", "s3_bucket_name", ("my.bucket-1",)),
    ("s3_bucket_name: '123456'", "s3_bucket_name", ("123456",)),
    ("aws_region: cn-north-1", "aws_region", "cn-north-1"),
    ("workers: 1", "workers", 1),
    ("workers: 256", "workers", 256),
    ("wait_time_seconds: 1", "wait_time_seconds", 1),
    ("wait_time_seconds: 20", "wait_time_seconds", 20),
    ("visibility_timeout_seconds: 5", "visibility_timeout_seconds", 5),
    ("visibility_timeout_seconds: 43200", "visibility_timeout_seconds", 43200),
    ("shutdown_timeout_seconds: 0", "shutdown_timeout_seconds", 0.0),
    ("shutdown_timeout_seconds: 3600", "shutdown_timeout_seconds", 3600.0),
    ("shutdown_timeout_seconds: 0.25", "shutdown_timeout_seconds", 0.25),
    ("retry: {max_attempts: 1}", "retry", RetryConfig(max_attempts=1)),
    ("retry: {max_attempts: 1000}", "retry", RetryConfig(max_attempts=1000)),
    ("retry: {base_delay_seconds: 0.001}", "retry", RetryConfig(base_delay_seconds=0.001)),
    (
        "retry: {base_delay_seconds: 300, max_delay_seconds: 300}",
        "retry",
        RetryConfig(base_delay_seconds=300.0, max_delay_seconds=300.0),
    ),
    (
        "retry: {base_delay_seconds: 43200, max_delay_seconds: 43200}",
        "retry",
        RetryConfig(base_delay_seconds=43200.0, max_delay_seconds=43200.0),
    ),
    ("retry: {}", "retry", RetryConfig()),
    (
        "key_decoding: {eventbridge: none}",
        "key_decoding",
        KeyDecodingPolicy(eventbridge=KeyDecoding.NONE),
    ),
    (
        "key_decoding: {notifications: NONE, eventbridge: Url}",
        "key_decoding",
        KeyDecodingPolicy(notifications=KeyDecoding.NONE, eventbridge=KeyDecoding.URL),
    ),
    ("key_decoding: {}", "key_decoding", KeyDecodingPolicy()),
    # YAML 1.1 reads a leading 0 as octal, so the natural spelling just works.
    ("file_mode: 0640", "file_mode", 0o640),
    ("file_mode: 0600", "file_mode", 0o600),
    ("file_mode: 0777", "file_mode", 0o777),
    ("file_mode: '0644'", "file_mode", 0o644),
    ("file_mode: '644'", "file_mode", 0o644),
    ("file_mode: '0o660'", "file_mode", 0o660),
    ("file_mode: 0x1a4", "file_mode", 0o644),
    ("directory_mode: 0700", "directory_mode", 0o700),
    ("directory_mode: '755'", "directory_mode", 0o755),
    ("directory_mode: 0O770", "directory_mode", 0o770),  # a string to YAML 1.1
    ("log_level: WARNING", "log_level", "warning"),
    ("log_level: Error", "log_level", "error"),
    ("log_level: debug", "log_level", "debug"),
]


@pytest.mark.parametrize(("snippet", "field", "expected"), ACCEPTED)
def test_accepted_value(snippet: str, field: str, expected: object) -> None:
    config = parse_yaml(f"sqs_queue_url: {QUEUE}\n{snippet}\n")
    assert getattr(config, field) == expected
    assert type(getattr(config, field)) is type(expected)


def test_parse_config_does_not_modify_its_input() -> None:
    data = {"sqs_queue_url": QUEUE, "retry": {"max_attempts": 3}, "s3_bucket_name": ["a", "a"]}
    snapshot = repr(data)
    parse_config(data)
    assert repr(data) == snapshot


# ---- null means "use the default" ------------------------------------------------------------

OPTIONAL_KEYS = [f.name for f in dataclasses.fields(Config) if f.name != "sqs_queue_url"]


@pytest.mark.parametrize("key", OPTIONAL_KEYS)
def test_null_optional_key_means_default(key: str) -> None:
    assert parse_yaml(f"sqs_queue_url: {QUEUE}\n{key}:\n") == Config(sqs_queue_url=QUEUE)


@pytest.mark.parametrize(
    "snippet",
    [
        "retry: {max_attempts: null, base_delay_seconds: ~, max_delay_seconds: }",
        "key_decoding: {notifications: null, eventbridge: ~}",
        "retry:\n  max_attempts:\nkey_decoding:\n  eventbridge:",
    ],
)
def test_null_nested_key_means_default(snippet: str) -> None:
    assert parse_yaml(f"sqs_queue_url: {QUEUE}\n{snippet}\n") == Config(sqs_queue_url=QUEUE)


@pytest.mark.parametrize(
    "data",
    [{}, {"sqs_queue_url": None}, {"workers": 4}, yaml.safe_load("sqs_queue_url:\nworkers:")],
)
def test_missing_or_null_required_key(data: object) -> None:
    assert problems_of(data) == ("sqs_queue_url: required key is missing",)


# ---- refused values --------------------------------------------------------------------------

REFUSED = [
    # sqs_queue_url and the other URLs
    ("sqs_queue_url: 42", "sqs_queue_url: must be an http:// or https:// queue URL, got 42"),
    (
        "sqs_queue_url: my-queue",
        "sqs_queue_url: must be an http:// or https:// queue URL with a host, got 'my-queue'",
    ),
    (
        "sqs_queue_url: ftp://example.com/1/q",
        "sqs_queue_url: must be an http:// or https:// queue URL with a host, "
        "got 'ftp://example.com/1/q'",
    ),
    (
        "sqs_queue_url: https:///123/q",
        "sqs_queue_url: must be an http:// or https:// queue URL with a host, got 'https:///123/q'",
    ),
    (
        "sqs_queue_url: https://sqs.eu-west-1.amazonaws.com/",
        "sqs_queue_url: must include the queue's path, as in "
        "https://sqs.<region>.amazonaws.com/<account>/<queue>, "
        "got 'https://sqs.eu-west-1.amazonaws.com/'",
    ),
    (
        "sqs_queue_url: https://sqs.eu-west-1.amazonaws.com",
        "sqs_queue_url: must include the queue's path, as in "
        "https://sqs.<region>.amazonaws.com/<account>/<queue>, "
        "got 'https://sqs.eu-west-1.amazonaws.com'",
    ),
    (
        "sqs_queue_url: arn:aws:sqs:eu-west-1:123456789012:q",
        "sqs_queue_url: must be an http:// or https:// queue URL, not an ARN, "
        "got 'arn:aws:sqs:eu-west-1:123456789012:q'",
    ),
    (
        "sqs_queue_url: 'https://sqs.eu-west-1.amazonaws.com/1/my queue'",
        "sqs_queue_url: must not contain whitespace, "
        "got 'https://sqs.eu-west-1.amazonaws.com/1/my queue'",
    ),
    (
        "sqs_queue_url: https://sqs.eu-west-1.amazonaws.com/1/q?x=1",
        "sqs_queue_url: must not have a query string or fragment, "
        "got 'https://sqs.eu-west-1.amazonaws.com/1/q?x=1'",
    ),
    (
        "sqs_queue_url: http://localhost:99999/1/q",
        "sqs_queue_url: must be an http:// or https:// queue URL, got 'http://localhost:99999/1/q'",
    ),
    (
        "endpoint_url: [http://a]",
        "endpoint_url: must be an http:// or https:// URL, got a list",
    ),
    (
        "s3_endpoint_url: s3.example.com",
        "s3_endpoint_url: must be an http:// or https:// URL with a host, got 's3.example.com'",
    ),
    (
        "sqs_endpoint_url: http://h#frag",
        "sqs_endpoint_url: must not have a query string or fragment, got 'http://h#frag'",
    ),
    (
        "dead_letter_queue_url: http://localhost:9324",
        "dead_letter_queue_url: must include the queue's path, as in "
        "https://sqs.<region>.amazonaws.com/<account>/<queue>, got 'http://localhost:9324'",
    ),
    # download_folder
    (
        "download_folder: downloads",
        "download_folder: must be an absolute path (starting with /), got 'downloads'",
    ),
    (
        "download_folder: ~/downloads",
        "download_folder: must be an absolute path (starting with /), got '~/downloads'",
    ),
    ("download_folder: ''", "download_folder: must be an absolute path (starting with /), got ''"),
    ("download_folder: 7", "download_folder: must be an absolute path (starting with /), got 7"),
    ("download_folder: /", "download_folder: must not be the root directory, got '/'"),
    ("download_folder: //", "download_folder: must not be the root directory, got '//'"),
    ("download_folder: /srv/..", "download_folder: must not be the root directory, got '/srv/..'"),
    ('download_folder: "/srv/\\0x"', "download_folder: must not contain a NUL character"),
    # aws_region
    (
        "aws_region: EU-WEST-1",
        "aws_region: must be an AWS region name such as 'eu-west-1' "
        "(lower-case letters, digits and '-'), got 'EU-WEST-1'",
    ),
    (
        "aws_region: ''",
        "aws_region: must be an AWS region name such as 'eu-west-1' "
        "(lower-case letters, digits and '-'), got ''",
    ),
    (
        "aws_region: eu west 1",
        "aws_region: must be an AWS region name such as 'eu-west-1' "
        "(lower-case letters, digits and '-'), got 'eu west 1'",
    ),
    (
        "aws_region: [eu-west-1]",
        "aws_region: must be an AWS region name such as 'eu-west-1' "
        "(lower-case letters, digits and '-'), got a list",
    ),
    # s3_bucket_name
    (
        "s3_bucket_name: []",
        "s3_bucket_name: must list at least one bucket; leave it unset to accept every bucket",
    ),
    ("s3_bucket_name: ''", "s3_bucket_name: must be a bucket name, got an empty string"),
    (
        "s3_bucket_name: s3://acme",
        "s3_bucket_name: must be a bucket name only, without s3:// or a '/', got 's3://acme'",
    ),
    ("s3_bucket_name: 'a b'", "s3_bucket_name: must not contain whitespace, got 'a b'"),
    ('s3_bucket_name: "a\\tb"', "s3_bucket_name: must not contain whitespace, got 'a\\tb'"),
    (
        "s3_bucket_name: 123456",
        "s3_bucket_name: must be a bucket name, got the number 123456; quote it",
    ),
    (
        "s3_bucket_name: {name: a}",
        "s3_bucket_name: must be a bucket name or a list of bucket names, got a mapping",
    ),
    ("s3_bucket_name: [ok, [x]]", "s3_bucket_name[1]: must be a bucket name, got a list"),
    ("s3_bucket_name: [ok, null]", "s3_bucket_name[1]: must be a bucket name, got null"),
    (
        "s3_bucket_name: [ok, a/b]",
        "s3_bucket_name[1]: must be a bucket name only, without s3:// or a '/', got 'a/b'",
    ),
    # counts: integers only, never bool, never float, never a quoted number
    ("workers: 0", "workers: must be an integer from 1 to 256, got 0"),
    ("workers: 257", "workers: must be an integer from 1 to 256, got 257"),
    ("workers: -1", "workers: must be an integer from 1 to 256, got -1"),
    ("workers: true", "workers: must be an integer from 1 to 256, got true"),
    ("workers: 2.0", "workers: must be an integer from 1 to 256, got 2.0"),
    (
        "workers: '8'",
        "workers: must be an integer from 1 to 256, got '8' (a string; remove the quotes)",
    ),
    ("workers: eight", "workers: must be an integer from 1 to 256, got 'eight'"),
    (
        "wait_time_seconds: 0",
        "wait_time_seconds: must be an integer from 1 to 20 "
        "(the SQS long-poll maximum; short polling is refused), got 0",
    ),
    (
        "wait_time_seconds: 21",
        "wait_time_seconds: must be an integer from 1 to 20 "
        "(the SQS long-poll maximum; short polling is refused), got 21",
    ),
    (
        "wait_time_seconds: 10.5",
        "wait_time_seconds: must be an integer from 1 to 20 "
        "(the SQS long-poll maximum; short polling is refused), got 10.5",
    ),
    (
        "visibility_timeout_seconds: 4",
        "visibility_timeout_seconds: must be an integer from 5 to 43200 (12 hours), got 4",
    ),
    (
        "visibility_timeout_seconds: 43201",
        "visibility_timeout_seconds: must be an integer from 5 to 43200 (12 hours), got 43201",
    ),
    (
        "visibility_timeout_seconds: no",
        "visibility_timeout_seconds: must be an integer from 5 to 43200 (12 hours), got false",
    ),
    # seconds: numbers, fractions allowed, never bool, never inf or nan
    (
        "shutdown_timeout_seconds: -0.5",
        "shutdown_timeout_seconds: must be a number of seconds from 0 to 3600, got -0.5",
    ),
    (
        "shutdown_timeout_seconds: 3600.5",
        "shutdown_timeout_seconds: must be a number of seconds from 0 to 3600, got 3600.5",
    ),
    (
        "shutdown_timeout_seconds: true",
        "shutdown_timeout_seconds: must be a number of seconds from 0 to 3600, got true",
    ),
    (
        "shutdown_timeout_seconds: .nan",
        "shutdown_timeout_seconds: must be a number of seconds from 0 to 3600, got nan",
    ),
    (
        "shutdown_timeout_seconds: .inf",
        "shutdown_timeout_seconds: must be a number of seconds from 0 to 3600, got inf",
    ),
    (
        "shutdown_timeout_seconds: '30'",
        "shutdown_timeout_seconds: must be a number of seconds from 0 to 3600, "
        "got '30' (a string; remove the quotes)",
    ),
    (
        "shutdown_timeout_seconds: 30s",
        "shutdown_timeout_seconds: must be a number of seconds from 0 to 3600, got '30s'",
    ),
    # retry
    (
        "retry: [5]",
        "retry: must be a mapping with the keys max_attempts, base_delay_seconds, "
        "max_delay_seconds, got a list",
    ),
    (
        "retry: 5",
        "retry: must be a mapping with the keys max_attempts, base_delay_seconds, "
        "max_delay_seconds, got 5",
    ),
    ("retry: {max_attempts: 0}", "retry.max_attempts: must be an integer from 1 to 1000, got 0"),
    (
        "retry: {max_attempts: 1001}",
        "retry.max_attempts: must be an integer from 1 to 1000, got 1001",
    ),
    (
        "retry: {max_attempts: true}",
        "retry.max_attempts: must be an integer from 1 to 1000, got true",
    ),
    (
        "retry: {max_attempts: 2.5}",
        "retry.max_attempts: must be an integer from 1 to 1000, got 2.5",
    ),
    (
        "retry: {base_delay_seconds: 0}",
        "retry.base_delay_seconds: must be a number of seconds > 0 and <= 43200, got 0",
    ),
    (
        "retry: {base_delay_seconds: -1}",
        "retry.base_delay_seconds: must be a number of seconds > 0 and <= 43200, got -1",
    ),
    (
        "retry: {base_delay_seconds: 43201, max_delay_seconds: 43200}",
        "retry.base_delay_seconds: must be a number of seconds > 0 and <= 43200, got 43201",
    ),
    (
        "retry: {base_delay_seconds: false}",
        "retry.base_delay_seconds: must be a number of seconds > 0 and <= 43200, got false",
    ),
    (
        "retry: {max_delay_seconds: 1}",
        "retry.max_delay_seconds: must be >= retry.base_delay_seconds (2.0), got 1",
    ),
    (
        "retry: {base_delay_seconds: 10, max_delay_seconds: 9.5}",
        "retry.max_delay_seconds: must be >= retry.base_delay_seconds (10.0), got 9.5",
    ),
    (
        "retry: {max_delay_seconds: 43201}",
        "retry.max_delay_seconds: must be a number of seconds > 0 and <= 43200 "
        "(12 hours, the SQS visibility limit), got 43201",
    ),
    (
        "retry: {max_delay_seconds: '60'}",
        "retry.max_delay_seconds: must be a number of seconds > 0 and <= 43200 "
        "(12 hours, the SQS visibility limit), got '60' (a string; remove the quotes)",
    ),
    (
        "retry: {base_delay_seconds: 600}",
        "retry.base_delay_seconds: must be <= retry.max_delay_seconds (300.0, the default), "
        "got 600; set retry.max_delay_seconds too",
    ),
    # key_decoding
    (
        "key_decoding: url",
        "key_decoding: must be a mapping with the keys notifications, eventbridge, got 'url'",
    ),
    (
        "key_decoding: {eventbridge: raw}",
        "key_decoding.eventbridge: must be 'url' or 'none', got 'raw'",
    ),
    (
        "key_decoding: {notifications: false}",
        "key_decoding.notifications: must be 'url' or 'none', got false; "
        "write none (not false, no or off)",
    ),
    (
        "key_decoding: {eventbridge: off}",
        "key_decoding.eventbridge: must be 'url' or 'none', got false; "
        "write none (not false, no or off)",
    ),
    # modes
    (
        "file_mode: 0440",
        "file_mode: must include the owner's read and write permission (0600), got 0440",
    ),
    (
        "file_mode: '0200'",
        "file_mode: must include the owner's read and write permission (0600), got 0200",
    ),
    (
        "directory_mode: 0640",
        "directory_mode: must include the owner's read, write and search (rwx) permission "
        "(0700), got 0640",
    ),
    (
        "file_mode: 01640",
        "file_mode: must be an octal permission mode from 0000 to 0777 such as 0640 or '0640', "
        "got 928",
    ),
    (
        "file_mode: 640",
        "file_mode: must be an octal permission mode from 0000 to 0777 such as 0640 or '0640', "
        "got 640 (640 is read as decimal; write 0640 or '0640')",
    ),
    (
        "file_mode: '0x1a4'",
        "file_mode: must be an octal permission mode from 0000 to 0777 such as 0640 or '0640', "
        "got '0x1a4'",
    ),
    (
        "file_mode: '0o8'",
        "file_mode: must be an octal permission mode from 0000 to 0777 such as 0640 or '0640', "
        "got '0o8'",
    ),
    (
        "file_mode: rw-r-----",
        "file_mode: must be an octal permission mode from 0000 to 0777 such as 0640 or '0640', "
        "got 'rw-r-----'",
    ),
    (
        "file_mode: -1",
        "file_mode: must be an octal permission mode from 0000 to 0777 such as 0640 or '0640', "
        "got -1",
    ),
    (
        "directory_mode: true",
        "directory_mode: must be an octal permission mode from 0000 to 0777 such as 0640 or "
        "'0640', got true",
    ),
    # log_level
    (
        "log_level: warn",
        "log_level: must be one of debug, info, warning, error, got 'warn' "
        "(did you mean 'warning'?)",
    ),
    (
        "log_level: critical",
        "log_level: must be one of debug, info, warning, error, got 'critical'",
    ),
    ("log_level: 10", "log_level: must be one of debug, info, warning, error, got 10"),
    # cross-key
    (
        f"dead_letter_queue_url: {QUEUE}/",
        "dead_letter_queue_url: must differ from sqs_queue_url (it is the same queue)",
    ),
    (
        f"dead_letter_queue_url: {QUEUE.upper().replace('/123456789012/S3SQSD-EVENTS', '')}"
        "/123456789012/s3sqsd-events",
        "dead_letter_queue_url: must differ from sqs_queue_url (it is the same queue)",
    ),
]


@pytest.mark.parametrize(("snippet", "problem"), REFUSED)
def test_refused_value(snippet: str, problem: str) -> None:
    """Each bad value is one problem, named by its key path, with the value shown."""
    data = yaml.safe_load(snippet)
    data.setdefault("sqs_queue_url", QUEUE)
    assert problems_of(data) == (problem,)


# ---- unknown keys ----------------------------------------------------------------------------

UNKNOWN = [
    ("sqs_queue_ur: x", "sqs_queue_ur: unknown key (did you mean 'sqs_queue_url'?)"),
    ("region: eu-west-1", "region: unknown key (did you mean 'aws_region'?)"),
    ("queue_url: x", "queue_url: unknown key (did you mean 'sqs_queue_url'?)"),
    ("download_dir: /x", "download_dir: unknown key (did you mean 'download_folder'?)"),
    ("s3_bucket_names: [a]", "s3_bucket_names: unknown key (did you mean 's3_bucket_name'?)"),
    ("Workers: 4", "Workers: unknown key (did you mean 'workers'?)"),
    ("wait-time-seconds: 4", "wait-time-seconds: unknown key (did you mean 'wait_time_seconds'?)"),
    (
        "visibility_timeout: 60",
        "visibility_timeout: unknown key (did you mean 'visibility_timeout_seconds'?)",
    ),
    ("loglevel: info", "loglevel: unknown key (did you mean 'log_level'?)"),
    (
        "dead_letter_queue: x",
        "dead_letter_queue: unknown key (did you mean 'dead_letter_queue_url'?)",
    ),
    ("retries: {}", "retries: unknown key (did you mean 'retry'?)"),
    (
        "max_attempts: 3",
        "max_attempts: unknown key (did you mean 'retry.max_attempts'? check the indentation)",
    ),
    (
        "eventbridge: none",
        "eventbridge: unknown key (did you mean 'key_decoding.eventbridge'? check the indentation)",
    ),
    ("credentials: x", "credentials: unknown key"),
    ("1: x", "1: unknown key (keys are names such as 'workers')"),
    ("'a key: with colon': x", "'a key: with colon': unknown key"),
    ("retry: {max_attempt: 3}", "retry.max_attempt: unknown key (did you mean 'max_attempts'?)"),
    (
        "retry: {base_delay: 3}",
        "retry.base_delay: unknown key (did you mean 'base_delay_seconds'?)",
    ),
    (
        "retry: {Max-Delay-Seconds: 3}",
        "retry.Max-Delay-Seconds: unknown key (did you mean 'max_delay_seconds'?)",
    ),
    (
        "retry: {workers: 3}",
        "retry.workers: unknown key (did you mean the top-level key 'workers'? "
        "check the indentation)",
    ),
    ("retry: {jitter: true}", "retry.jitter: unknown key"),
    (
        "retry: {eventbridge: none}",
        "retry.eventbridge: unknown key (did you mean 'key_decoding.eventbridge'? "
        "check the indentation)",
    ),
    (
        "key_decoding: {eventbrige: none}",
        "key_decoding.eventbrige: unknown key (did you mean 'eventbridge'?)",
    ),
    (
        "key_decoding: {notification: none}",
        "key_decoding.notification: unknown key (did you mean 'notifications'?)",
    ),
    ("key_decoding: {sns: none}", "key_decoding.sns: unknown key"),
    (
        "key_decoding: {max_attempts: 3}",
        "key_decoding.max_attempts: unknown key (did you mean 'retry.max_attempts'? "
        "check the indentation)",
    ),
]


@pytest.mark.parametrize(("snippet", "problem"), UNKNOWN)
def test_unknown_key_is_refused_with_suggestion(snippet: str, problem: str) -> None:
    data = yaml.safe_load(snippet)
    data["sqs_queue_url"] = QUEUE
    assert problems_of(data) == (problem,)


# ---- many problems at once -------------------------------------------------------------------


def test_every_problem_is_reported_together() -> None:
    problems = yaml_problems(
        """
sqs_queue_ur: https://sqs.eu-west-1.amazonaws.com/123456789012/q
download_folder: relative/path
workers: 0
wait_time_seconds: 0
retry:
  max_attempts: 0
  base_delay_seconds: 2
  max_delay_seconds: 1
  max_attempt: 3
key_decoding:
  eventbridge: raw
file_mode: 0400
log_level: loud
"""
    )
    assert problems == (
        "sqs_queue_url: required key is missing",
        "download_folder: must be an absolute path (starting with /), got 'relative/path'",
        "workers: must be an integer from 1 to 256, got 0",
        "wait_time_seconds: must be an integer from 1 to 20 "
        "(the SQS long-poll maximum; short polling is refused), got 0",
        "retry.max_attempts: must be an integer from 1 to 1000, got 0",
        "retry.max_delay_seconds: must be >= retry.base_delay_seconds (2.0), got 1",
        "retry.max_attempt: unknown key (did you mean 'max_attempts'?)",
        "key_decoding.eventbridge: must be 'url' or 'none', got 'raw'",
        "file_mode: must include the owner's read and write permission (0600), got 0400",
        "log_level: must be one of debug, info, warning, error, got 'loud'",
        "sqs_queue_ur: unknown key (did you mean 'sqs_queue_url'?)",
    )


def test_error_text_joins_the_problems() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"workers": 0})
    assert str(info.value) == (
        "sqs_queue_url: required key is missing; workers: must be an integer from 1 to 256, got 0"
    )


@pytest.mark.parametrize(
    ("data", "shown"),
    [([QUEUE], "a list"), ("just text", "'just text'"), (7, "7"), (None, "null")],
)
def test_top_level_must_be_a_mapping(data: object, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="/etc/s3sqsd/config.yaml")
    assert info.value.problems == (
        "/etc/s3sqsd/config.yaml: the top level must be a mapping of keys to values "
        f"(key: value lines), got {shown}",
    )


# ---- values that must not be echoed ----------------------------------------------------------


def test_long_values_are_described_not_echoed() -> None:
    secretish = "A" * 500
    (problem,) = problems_of({"sqs_queue_url": QUEUE, "aws_region": secretish})
    assert secretish[:50] not in problem
    assert problem.endswith("got a string of 500 characters")


def test_url_with_credentials_is_refused_without_echoing_them() -> None:
    (problem,) = problems_of(
        {"sqs_queue_url": QUEUE, "endpoint_url": "https://AKIAEXAMPLE:s3cr3tvalue@minio:9000"}
    )
    assert problem.startswith("endpoint_url: must not contain user:password@")
    assert "s3cr3tvalue" not in problem
    assert "AKIAEXAMPLE" not in problem


def test_control_characters_in_values_are_escaped() -> None:
    (problem,) = problems_of({"sqs_queue_url": QUEUE, "log_level": "info\x1b[2J\nforged"})
    assert "\x1b" not in problem
    assert "\n" not in problem


# ---- region ----------------------------------------------------------------------------------

REGIONS = [
    ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
    ("https://sqs.us-gov-west-1.amazonaws.com/123456789012/q", "us-gov-west-1"),
    ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
    ("https://ap-southeast-2.queue.amazonaws.com/123456789012/q", "ap-southeast-2"),
    ("https://cn-northwest-1.queue.amazonaws.com.cn/123456789012/q", "cn-northwest-1"),
    ("https://sqs-fips.us-east-1.amazonaws.com/123456789012/q", "us-east-1"),
    ("http://SQS.EU-CENTRAL-1.AMAZONAWS.COM/123456789012/q", "eu-central-1"),
    ("https://queue.amazonaws.com/123456789012/q", None),
    ("http://127.0.0.1:9324/000000000000/q", None),
    ("http://localhost:5000/123456789012/q", None),
    ("https://sqs.eu-west-1.amazonaws.com.evil.example/1/q", None),
    ("https://sqs.eu-west-1.example.com/1/q", None),
]


@pytest.mark.parametrize(("url", "region"), REGIONS)
def test_region_from_queue_url(url: str, region: str | None) -> None:
    assert parse_config({"sqs_queue_url": url}).region == region


def test_aws_region_wins_over_the_queue_url() -> None:
    config = parse_config({"sqs_queue_url": QUEUE, "aws_region": "us-west-2"})
    assert config.region == "us-west-2"


def test_endpoints_fall_back_to_the_shared_endpoint() -> None:
    config = parse_config(
        {"sqs_queue_url": QUEUE, "endpoint_url": "http://a:1", "s3_endpoint_url": "http://b:2"}
    )
    assert (config.s3_endpoint, config.sqs_endpoint) == ("http://b:2", "http://a:1")


# ---- reading files ---------------------------------------------------------------------------


def test_load_config_reads_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"sqs_queue_url: {QUEUE}\nfile_mode: 0600\n")
    assert load_config(path) == Config(sqs_queue_url=QUEUE, file_mode=0o600)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    assert load_problems(path) == (f"{path}: no such file",)


def test_path_through_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "x") / "config.yaml"
    assert load_problems(path) == (f"{path}: a component of the path is not a directory",)


def test_directory(tmp_path: Path) -> None:
    assert load_problems(tmp_path) == (f"{tmp_path}: is a directory, not a configuration file",)


PERMISSION_PROBLEM = "permission denied; the file must be readable by the user s3sqsd runs as"


def skip_if_modes_are_ignored(path: Path) -> None:
    """Root (or CAP_DAC_OVERRIDE) reads anything, so a mode-000 test proves nothing there."""
    try:
        with path.open("rb"):
            pass
    except PermissionError:
        return
    pytest.skip("this user reads files whatever their mode (root)")


def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, f"sqs_queue_url: {QUEUE}\n")
    path.chmod(0)
    try:
        skip_if_modes_are_ignored(path)
        assert load_problems(path) == (f"{path}: {PERMISSION_PROBLEM}",)
    finally:
        path.chmod(0o600)


def test_file_in_unsearchable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    path = write(locked, f"sqs_queue_url: {QUEUE}\n")
    locked.chmod(0)
    try:
        skip_if_modes_are_ignored(path)
        assert load_problems(path) == (f"{path}: {PERMISSION_PROBLEM}",)
    finally:
        locked.chmod(0o700)


def test_permission_error_is_reported_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same mapping, with open() made to fail, so it also runs where tests run as root."""
    path = write(tmp_path, f"sqs_queue_url: {QUEUE}\n")

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", refuse)
    assert load_problems(path) == (f"{path}: {PERMISSION_PROBLEM}",)


def test_other_os_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, f"sqs_queue_url: {QUEUE}\n")

    def fail(self: Path, *args: object, **kwargs: object) -> object:
        raise OSError(5, "Input/output error", str(self))

    monkeypatch.setattr(Path, "open", fail)
    assert load_problems(path) == (f"{path}: cannot be read: Input/output error",)


@pytest.mark.parametrize("text", ["", "\n\n", "   \n\t\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    assert load_problems(path) == (
        f"{path}: the file is empty; it must set at least sqs_queue_url",
    )


def test_file_of_comments_only_asks_for_the_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing set yet\n#workers: 8\n")
    assert load_problems(path) == ("sqs_queue_url: required key is missing",)


INVALID_YAML = [
    (
        f"sqs_queue_url: {QUEUE}\nworkers: 4\n  retry: 3\n",
        "line 3, column 8: mapping values are not allowed here",
    ),
    (
        f"sqs_queue_url: {QUEUE}\ns3_bucket_name: [a, b\n",
        "line 3, column 1: expected ',' or ']', but got '<stream end>' "
        "(while parsing a flow sequence at line 2)",
    ),
    (
        f'sqs_queue_url: "{QUEUE}\n',
        "line 2, column 1: found unexpected end of stream "
        "(while scanning a quoted scalar at line 1)",
    ),
    (
        f"sqs_queue_url: {QUEUE}\n\tworkers: 4\n",
        "line 2, column 1: found character '\\t' that cannot start any token "
        "(while scanning for the next token)",
    ),
    (
        f"sqs_queue_url: {QUEUE}\n---\nworkers: 4\n",
        "line 2, column 1: but found another document "
        "(expected a single document in the stream at line 1)",
    ),
    (
        "sqs_queue_url: !!python/object/apply:os.system [echo hi]\n",
        "line 1, column 16: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
    ("workers: *count\n", "line 1, column 10: found undefined alias 'count'"),
    (
        "workers: 4\nlog_level: in\x07fo\n",
        "line 2, column 14: the control character U+0007 is not allowed",
    ),
]


@pytest.mark.parametrize(("text", "problem"), INVALID_YAML)
def test_invalid_yaml_names_file_line_and_column(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, text)
    assert load_problems(path) == (f"{path}: not valid YAML: {problem}",)


@pytest.mark.parametrize(
    ("text", "shown"), [("- a\n- b\n", "a list"), ("hello\n", "'hello'"), ("42\n", "42")]
)
def test_top_level_not_a_mapping_names_the_file(tmp_path: Path, text: str, shown: str) -> None:
    path = write(tmp_path, text)
    assert load_problems(path) == (
        f"{path}: the top level must be a mapping of keys to values (key: value lines), "
        f"got {shown}",
    )


def test_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, b"sqs_queue_url: caf\xe9\n")
    assert load_problems(path) == (f"{path}: not UTF-8 text (invalid byte at offset 18)",)


def test_utf8_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfsqs_queue_url: " + QUEUE.encode() + b"\n")
    assert load_config(path) == Config(sqs_queue_url=QUEUE)


def test_oversized_file(tmp_path: Path) -> None:
    path = write(tmp_path, "#" * (1024 * 1024 + 1))
    assert load_problems(path) == (f"{path}: larger than 1048576 bytes; not a configuration file",)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"sqs_queue_url: {QUEUE}\nworkers: 4\nretry:\n  max_attempts: 3\n  max_attempts: 4\n"
        "workers: 16\n",
    )
    assert load_problems(path) == (
        "retry.max_attempts: duplicate key (lines 4 and 5); keep only one",
        "workers: duplicate key (lines 2 and 6); keep only one",
    )


def test_decimal_mode_in_the_file_is_refused(tmp_path: Path) -> None:
    """440 would be decimal 440 = 0670: valid, group-writable, and not what was meant."""
    path = write(tmp_path, f"sqs_queue_url: {QUEUE}\nfile_mode: 440\ndirectory_mode: 750\n")
    assert load_problems(path) == (
        "file_mode: 440 is a decimal number; write the mode in octal with a leading 0, "
        "such as 0440 or '0440'",
        "directory_mode: 750 is a decimal number; write the mode in octal with a leading 0, "
        "such as 0750 or '0750'",
    )


def test_file_problems_and_value_problems_are_reported_together(tmp_path: Path) -> None:
    path = write(tmp_path, "workers: 2\nworkers: 0\nfile_mode: 96\n")
    assert load_problems(path) == (
        "workers: duplicate key (lines 1 and 2); keep only one",
        "file_mode: 96 is a decimal number; write the mode in octal with a leading 0, "
        "such as 0640 or '0640'",
        "sqs_queue_url: required key is missing",
    )


# ---- the shipped template and the reference documentation ------------------------------------

SETTING_LINE = re.compile(r"^#((?:  )*)([a-z][a-z0-9_]*):( .*)?$", re.MULTILINE)


def uncomment_settings(text: str) -> str:
    """Remove the '#' from every commented-out 'key: value' line, keeping the prose comments."""
    return SETTING_LINE.sub(lambda m: m.group(0)[1:], text)


def test_shipped_config_fails_only_for_the_queue_url() -> None:
    assert load_problems(SHIPPED_CONFIG) == ("sqs_queue_url: required key is missing",)


def test_shipped_config_uncommented_is_the_defaults_plus_examples(tmp_path: Path) -> None:
    original = SHIPPED_CONFIG.read_text(encoding="utf-8")
    text = uncomment_settings(original)
    assert text != original
    path = write(tmp_path, text)
    config = load_config(path)
    assert config == Config(sqs_queue_url=TEMPLATE_QUEUE)
    # The values are shown as an operator writes them: modes in octal with the leading 0.
    shown = dict(re.findall(r"^(file_mode|directory_mode): (\S+)$", text, re.MULTILINE))
    assert shown == {
        "file_mode": f"0{config.file_mode:o}",
        "directory_mode": f"0{config.directory_mode:o}",
    }


SECTIONS = {"retry": RetryConfig, "key_decoding": KeyDecodingPolicy}
DOTTED_KEYS = [f.name for f in dataclasses.fields(Config)] + [
    f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)
]


def uncomment_only(text: str, dotted: str) -> str:
    """Uncomment sqs_queue_url and the lines of one key (with its section's line if nested)."""
    parent, _, leaf = dotted.rpartition(".")
    wanted_top = {"sqs_queue_url", parent or leaf}
    lines, section = [], ""
    for line in text.splitlines(keepends=True):
        match = SETTING_LINE.match(line)
        if match and not match.group(1):
            section = match.group(2)
        if match and (
            (not match.group(1) and match.group(2) in wanted_top)
            or (match.group(1) and parent and section == parent and match.group(2) == leaf)
        ):
            line = line[1:]
        lines.append(line)
    return "".join(lines)


@pytest.mark.parametrize("dotted", DOTTED_KEYS)
def test_every_key_is_in_the_shipped_config_with_its_default(tmp_path: Path, dotted: str) -> None:
    """Uncommenting one key's line alone (and the required one) still gives the defaults."""
    original = SHIPPED_CONFIG.read_text(encoding="utf-8")
    text = uncomment_only(original, dotted)
    leaf = dotted.rpartition(".")[2]
    indent = "  " if "." in dotted else ""
    assert re.search(rf"^{indent}{leaf}:", text, re.MULTILINE), f"{dotted} is not in the file"
    assert load_config(write(tmp_path, text)) == Config(sqs_queue_url=TEMPLATE_QUEUE)


def doc_table_defaults() -> dict[str, str]:
    """Key -> the Default cell of its row in the reference table."""
    rows = re.findall(
        r"^\| `([a-z0-9_.]+)` \| [^|]+ \| ([^|]+) \|", REFERENCE_DOC.read_text("utf-8"), re.M
    )
    return {key: default.strip() for key, default in rows}


@pytest.mark.parametrize("dotted", DOTTED_KEYS)
def test_every_key_is_in_the_reference_doc_with_its_default(dotted: str) -> None:
    """Each key has a table row and a section; a literal default there is the real default."""
    text = REFERENCE_DOC.read_text(encoding="utf-8")
    defaults = doc_table_defaults()
    section_names = re.findall(r"^### (.+)$", text, re.MULTILINE)
    top = dotted.partition(".")[0]
    assert any(f"`{top}`" in name for name in section_names), f"no section for {top}"
    if dotted in SECTIONS:  # documented through its nested keys' rows
        assert any(key.startswith(f"{dotted}.") for key in defaults)
        value: object = None
    else:
        assert dotted in defaults, f"no table row for {dotted}"
        literal = re.fullmatch(r"`([^`]+)`", defaults[dotted])
        value = yaml.safe_load(literal.group(1)) if literal else None
    if dotted == "sqs_queue_url":
        assert "required" in defaults[dotted]
        assert problems_of({}) == ("sqs_queue_url: required key is missing",)
        return
    data: dict[str, object] = {"sqs_queue_url": QUEUE}
    parent, _, leaf = dotted.rpartition(".")
    if parent:
        data[parent] = {leaf: value}
    else:
        data[leaf] = value
    assert parse_config(data) == Config(sqs_queue_url=QUEUE)


def test_reference_doc_examples_are_valid() -> None:
    """Every complete YAML example in the doc (one with sqs_queue_url) parses."""
    text = REFERENCE_DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    complete = [block for block in blocks if "sqs_queue_url:" in block]
    assert len(complete) >= 3
    for block in complete:
        assert isinstance(parse_yaml(block), Config)
