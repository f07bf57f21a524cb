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
    CommandConfig,
    Config,
    LargeObjectsConfig,
    MetricsConfig,
    RetryConfig,
    RouteConfig,
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


def test_the_default_folder_is_the_callers(tmp_path: Path) -> None:
    """An instance (s3sqsd --instance NAME) passes its own default folder; a file that names a
    folder keeps it; parsing reads no environment to find it."""
    instance = Path("/var/lib/s3sqsd-feed/downloads")
    assert parse_config({"sqs_queue_url": QUEUE}, default_download_folder=instance) == Config(
        sqs_queue_url=QUEUE, download_folder=instance
    )
    path = write(tmp_path, f"sqs_queue_url: {QUEUE}\n")
    assert load_config(path, default_download_folder=instance).download_folder == instance
    assert load_config(path).download_folder == DEFAULT_DOWNLOAD_FOLDER
    named = parse_config(
        {"sqs_queue_url": QUEUE, "download_folder": "/srv/in"}, default_download_folder=instance
    )
    assert named.download_folder == Path("/srv/in")


def test_only_the_queue_url_gives_the_documented_defaults() -> None:
    """Defaults are the dataclass defaults, spelled out so a changed default is noticed."""
    config = parse_config({"sqs_queue_url": QUEUE})
    assert config == Config(sqs_queue_url=QUEUE)
    assert config.download_folder == DEFAULT_DOWNLOAD_FOLDER == Path("/var/lib/s3sqsd/downloads")
    assert config.aws_region is None
    assert config.s3_bucket_name == ()
    assert (config.workers, config.wait_time_seconds, config.visibility_timeout_seconds) == (
        "auto",
        20,
        120,
    )
    assert (config.min_workers, config.max_workers, config.start_workers) == (4, 64, 8)
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
    ("workers: auto", "workers", "auto"),
    ("workers: AUTO", "workers", "auto"),
    ("min_workers: 1", "min_workers", 1),
    ("max_workers: 256", "max_workers", 256),
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
    ("workers: 0", "workers: must be auto or an integer from 1 to 256, got 0"),
    ("workers: 257", "workers: must be auto or an integer from 1 to 256, got 257"),
    ("workers: -1", "workers: must be auto or an integer from 1 to 256, got -1"),
    ("workers: true", "workers: must be auto or an integer from 1 to 256, got true"),
    ("workers: 2.0", "workers: must be auto or an integer from 1 to 256, got 2.0"),
    (
        "workers: '8'",
        "workers: must be auto or an integer from 1 to 256, got '8' (a string; remove the quotes)",
    ),
    ("workers: eight", "workers: must be auto or an integer from 1 to 256, got 'eight'"),
    ("min_workers: 0", "min_workers: must be an integer from 1 to 256, got 0"),
    ("max_workers: 257", "max_workers: must be an integer from 1 to 256, got 257"),
    ("min_workers: 65", "min_workers: must not be above max_workers (64), got 65"),
    ("max_workers: 3", "max_workers: must be at least min_workers (4), got 3"),
    (
        "min_workers: 9\nmax_workers: 8",
        "min_workers: must not be above max_workers (8), got 9",
    ),
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
    ("pollers: 0", "pollers: must be an integer from 1 to 32, got 0"),
    ("pollers: 33", "pollers: must be an integer from 1 to 32, got 33"),
    # large_objects
    (
        "large_objects: 64",
        "large_objects: must be a mapping with the keys threshold_bytes, part_size_bytes, "
        "concurrency, got 64",
    ),
    (
        "large_objects: {threshold_bytes: 1000}",
        "large_objects.threshold_bytes: must be an integer from 1048576 to 5497558138880 "
        "(5 TiB, the S3 maximum, fetches every object whole), got 1000",
    ),
    (
        "large_objects: {part_size_bytes: 8MiB}",
        "large_objects.part_size_bytes: must be an integer from 1048576 to 5497558138880 "
        "(1 MiB to 5 TiB; S3 serves any range, 8 MiB is usual), got '8MiB'",
    ),
    (
        "large_objects: {concurrency: 0}",
        "large_objects.concurrency: must be an integer from 1 to 256, got 0",
    ),
    (
        "large_objects: {parts: 4}",
        "large_objects.parts: unknown key",
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


@pytest.mark.parametrize(
    ("data", "start"),
    [
        ({}, 8),
        ({"workers": 3}, 3),
        ({"workers": 3, "min_workers": 5}, 3),  # a fixed count ignores the bounds
        ({"min_workers": 12}, 12),
        ({"max_workers": 6, "min_workers": 2}, 6),
    ],
)
def test_start_workers_is_the_fixed_count_or_the_auto_start_within_bounds(
    data: dict[str, object], start: int
) -> None:
    """What the worker (and s3sqsd sync) starts with: the fixed workers, or 8 within bounds."""
    assert parse_config({"sqs_queue_url": QUEUE, **data}).start_workers == start


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
        "workers: must be auto or an integer from 1 to 256, got 0",
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
        "sqs_queue_url: required key is missing; "
        "workers: must be auto or an integer from 1 to 256, got 0"
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


SECTIONS = {
    "retry": RetryConfig,
    "key_decoding": KeyDecodingPolicy,
    "large_objects": LargeObjectsConfig,
}
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


# ---- on_download, routes, unrouted, on_remove, metrics ----------------------------------------

INGEST = "/usr/local/bin/ingest"


def test_new_keys_default_to_todays_behaviour() -> None:
    config = parse_config({"sqs_queue_url": QUEUE})
    assert config.on_download is None
    assert config.routes == ()
    assert (config.unrouted, config.on_remove) == ("acknowledge", "keep")
    assert config.metrics is None


def test_full_routing_config(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
sqs_queue_url: {QUEUE}
s3_bucket_name: [acme-inbox, acme-media]
on_download:
  command: [{INGEST}, --quiet, "with space"]
  timeout_seconds: 2.5
routes:
  - bucket: acme-inbox
    prefix: reports/
    strip_prefix: true
    download_folder: /srv/reports/
  - bucket: acme-media
    glob: "*.jpg"
    download_folder: /srv/images
    on_download:
      command: [/usr/local/bin/thumb]
  - download_folder: /srv/images
unrouted: DEAD_LETTER
on_remove: delete
metrics:
  listen: "[::1]:9100"
""",
    )
    config = load_config(path)
    assert config.on_download == CommandConfig((INGEST, "--quiet", "with space"), 2.5)
    assert config.routes == (
        RouteConfig(
            download_folder=Path("/srv/reports"),
            bucket="acme-inbox",
            prefix="reports/",
            strip_prefix=True,
        ),
        RouteConfig(
            download_folder=Path("/srv/images"),
            bucket="acme-media",
            glob="*.jpg",
            on_download=CommandConfig(("/usr/local/bin/thumb",)),
        ),
        RouteConfig(download_folder=Path("/srv/images")),
    )
    assert (config.unrouted, config.on_remove) == ("dead_letter", "delete")
    assert config.metrics == MetricsConfig("[::1]:9100")
    assert (config.metrics.host, config.metrics.port) == ("::1", 9100)


NEW_ACCEPTED = [
    (
        f"on_download: {{command: [{INGEST}]}}",
        "on_download",
        CommandConfig((INGEST,), 300.0),
    ),
    (
        f"on_download: {{command: [{INGEST}, '5', '-x'], timeout_seconds: 1}}",
        "on_download",
        CommandConfig((INGEST, "5", "-x"), 1.0),
    ),
    (
        f"on_download: {{command: [{INGEST}], timeout_seconds: 86400}}",
        "on_download",
        CommandConfig((INGEST,), 86400.0),
    ),
    (
        f"on_download: {{command: [{INGEST}], timeout_seconds: null}}",
        "on_download",
        CommandConfig((INGEST,), 300.0),
    ),
    (
        "routes: [{download_folder: /srv/a}]",
        "routes",
        (RouteConfig(Path("/srv/a")),),
    ),
    (
        "routes: [{download_folder: /srv//a/./b/, bucket: null, prefix: ~, strip_prefix: null}]",
        "routes",
        (RouteConfig(Path("/srv/a/b")),),
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: in/, strip_prefix: false}]",
        "routes",
        (RouteConfig(Path("/srv/a"), prefix="in/"),),
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: in}, {download_folder: /srv/a}]",
        "routes",
        (RouteConfig(Path("/srv/a"), prefix="in"), RouteConfig(Path("/srv/a"))),
    ),
    (
        # Sibling folders that share a name prefix are not nested.
        "routes: [{download_folder: /srv/a, bucket: x}, {download_folder: /srv/ab}]",
        "routes",
        (RouteConfig(Path("/srv/a"), bucket="x"), RouteConfig(Path("/srv/ab"))),
    ),
    (
        # A more general prefix after a specific one is reachable.
        "routes: [{download_folder: /srv/a, prefix: a/b/}, {download_folder: /srv/b, prefix: a/}]",
        "routes",
        (RouteConfig(Path("/srv/a"), prefix="a/b/"), RouteConfig(Path("/srv/b"), prefix="a/")),
    ),
    (
        "routes: [{download_folder: /srv/a, glob: '*.csv'}, {download_folder: /srv/b, "
        "glob: '*.CSV'}]",
        "routes",
        (RouteConfig(Path("/srv/a"), glob="*.csv"), RouteConfig(Path("/srv/b"), glob="*.CSV")),
    ),
    (
        "routes: [{download_folder: /srv/a, bucket: '123'}]",
        "routes",
        (RouteConfig(Path("/srv/a"), bucket="123"),),
    ),
    ("unrouted: acknowledge", "unrouted", "acknowledge"),
    ("unrouted: Acknowledge", "unrouted", "acknowledge"),
    ("on_remove: delete", "on_remove", "delete"),
    ("on_remove: KEEP", "on_remove", "keep"),
    ("file_mtime: download_time", "file_mtime", "download_time"),
    ("file_mtime: Last_Modified", "file_mtime", "last_modified"),
    ("metrics: {}", "metrics", MetricsConfig("127.0.0.1:9464")),
    ("metrics: {listen: null}", "metrics", MetricsConfig("127.0.0.1:9464")),
    ("metrics: {listen: '0.0.0.0:1'}", "metrics", MetricsConfig("0.0.0.0:1")),
    ("metrics: {listen: '[::]:65535'}", "metrics", MetricsConfig("[::]:65535")),
    ("metrics: {listen: 'localhost:9100'}", "metrics", MetricsConfig("localhost:9100")),
    (
        "metrics: {listen: 'metrics-1.example.com:80'}",
        "metrics",
        MetricsConfig("metrics-1.example.com:80"),
    ),
    ("metrics: {listen: '[fe80::1%eth0]:9464'}", "metrics", MetricsConfig("[fe80::1%eth0]:9464")),
]


@pytest.mark.parametrize(("snippet", "field", "expected"), NEW_ACCEPTED)
def test_new_accepted_value(snippet: str, field: str, expected: object) -> None:
    config = parse_yaml(f"sqs_queue_url: {QUEUE}\n{snippet}\n")
    assert getattr(config, field) == expected
    assert type(getattr(config, field)) is type(expected)


def test_unrouted_acknowledge_without_routes_is_the_default() -> None:
    assert parse_config({"sqs_queue_url": QUEUE, "unrouted": "acknowledge"}) == Config(
        sqs_queue_url=QUEUE
    )


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("127.0.0.1:9464", "127.0.0.1", 9464),
        ("[::1]:1", "::1", 1),
        ("[fe80::1%eth0]:80", "fe80::1%eth0", 80),
        ("localhost:65535", "localhost", 65535),
    ],
)
def test_metrics_host_and_port(listen: str, host: str, port: int) -> None:
    metrics = parse_config({"sqs_queue_url": QUEUE, "metrics": {"listen": listen}}).metrics
    assert metrics is not None
    assert (metrics.host, metrics.port) == (host, port)


LISTEN_EXPECTED = "must be host:port such as 127.0.0.1:9464, [::1]:9464 or localhost:9464"
ROUTE_SHAPE = "download_folder and any of bucket, prefix, glob, strip_prefix, on_download"

NEW_REFUSED = [
    # on_download
    (
        "on_download: /usr/bin/x",
        "on_download: must be a mapping with the keys command, timeout_seconds, got '/usr/bin/x'",
    ),
    ("on_download: {}", "on_download.command: required key is missing"),
    ("on_download: {timeout_seconds: 5}", "on_download.command: required key is missing"),
    (
        "on_download: {command: /usr/bin/x --flag}",
        "on_download.command: must be a list of arguments such as "
        "[/usr/local/bin/ingest, --quiet]; no shell is used, so one string is not split into "
        "words, got '/usr/bin/x --flag'",
    ),
    ("on_download: {command: []}", "on_download.command: must list at least the program to run"),
    (
        "on_download: {command: {a: 1}}",
        "on_download.command: must be a list of arguments, got a mapping",
    ),
    (
        "on_download: {command: [ingest]}",
        "on_download.command[0]: must be the absolute path of the program (starting with /); "
        "commands are not looked up in PATH, got 'ingest'",
    ),
    (
        "on_download: {command: [./ingest]}",
        "on_download.command[0]: must be the absolute path of the program (starting with /); "
        "commands are not looked up in PATH, got './ingest'",
    ),
    (
        "on_download: {command: [/bin/x, 5]}",
        "on_download.command[1]: must be a string, got the number 5; quote it",
    ),
    (
        "on_download: {command: [/bin/x, '']}",
        "on_download.command[1]: must not be an empty string",
    ),
    (
        "on_download: {command: [/bin/x, null]}",
        "on_download.command[1]: must be a string, got null",
    ),
    (
        "on_download: {command: [/bin/x, [a]]}",
        "on_download.command[1]: must be a string, got a list",
    ),
    (
        'on_download: {command: [/bin/x, "a\\0b"]}',
        "on_download.command[1]: must not contain a NUL character",
    ),
    (
        "on_download: {command: [/bin/x], timeout_seconds: 0.5}",
        "on_download.timeout_seconds: must be a number of seconds from 1 to 86400, got 0.5",
    ),
    (
        "on_download: {command: [/bin/x], timeout_seconds: 86401}",
        "on_download.timeout_seconds: must be a number of seconds from 1 to 86400, got 86401",
    ),
    (
        "on_download: {command: [/bin/x], timeout_seconds: '60'}",
        "on_download.timeout_seconds: must be a number of seconds from 1 to 86400, "
        "got '60' (a string; remove the quotes)",
    ),
    (
        "on_download: {command: [/bin/x], timeout: 60}",
        "on_download.timeout: unknown key (did you mean 'timeout_seconds'?)",
    ),
    (
        "on_download: {command: [/bin/x], listen: x}",
        "on_download.listen: unknown key (did you mean 'metrics.listen'? check the indentation)",
    ),
    # routes
    (
        "routes: []",
        "routes: must list at least one route; leave it unset to download into download_folder",
    ),
    (
        "routes: {download_folder: /srv/a}",
        f"routes: must be a list of routes, each a mapping with {ROUTE_SHAPE}, got a mapping",
    ),
    ("routes: [/srv/a]", f"routes[0]: must be a mapping with {ROUTE_SHAPE}, got '/srv/a'"),
    ("routes: [{bucket: a}]", "routes[0].download_folder: required key is missing"),
    (
        "routes: [{download_folder: srv}]",
        "routes[0].download_folder: must be an absolute path (starting with /), got 'srv'",
    ),
    (
        "routes: [{download_folder: /}]",
        "routes[0].download_folder: must not be the root directory, got '/'",
    ),
    (
        "routes: [{download_folder: /srv/a, bucket: s3://a}]",
        "routes[0].bucket: must be a bucket name only, without s3:// or a '/', got 's3://a'",
    ),
    (
        "routes: [{download_folder: /srv/a, bucket: 123}]",
        "routes[0].bucket: must be a bucket name, got the number 123; quote it",
    ),
    (
        "routes: [{download_folder: /srv/a, bucket: [a, b]}]",
        "routes[0].bucket: must be a bucket name, got a list",
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: ''}]",
        "routes[0].prefix: must be a non-empty string, got ''",
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: 2024}]",
        "routes[0].prefix: must be a string, got the number 2024; quote it",
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: /incoming/}]",
        "routes[0].prefix: must not start with '/': keys are matched as decoded, without a "
        "leading '/' (a key that has one is refused as unsafe), got '/incoming/'",
    ),
    (
        "routes: [{download_folder: /srv/a, glob: '/*.csv'}]",
        "routes[0].glob: must not start with '/': keys are matched as decoded, without a "
        "leading '/' (a key that has one is refused as unsafe), got '/*.csv'",
    ),
    (
        "routes: [{download_folder: /srv/a, glob: [a]}]",
        "routes[0].glob: must be a non-empty string, got a list",
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: in/, strip_prefix: 'yes'}]",
        "routes[0].strip_prefix: must be true or false, got 'yes'",
    ),
    (
        "routes: [{download_folder: /srv/a, strip_prefix: true}]",
        "routes[0].strip_prefix: needs routes[0].prefix: the prefix to strip",
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: incoming, strip_prefix: true}]",
        "routes[0].prefix: must end with '/' when strip_prefix is true (only whole folders are "
        "stripped), got 'incoming'",
    ),
    (
        "routes: [{download_folder: /srv/a, on_download: {command: [x]}}]",
        "routes[0].on_download.command[0]: must be the absolute path of the program (starting "
        "with /); commands are not looked up in PATH, got 'x'",
    ),
    (
        "routes: [{download_folder: /srv/a, folder: /x}]",
        "routes[0].folder: unknown key",
    ),
    (
        "routes: [{download_folder: /srv/a, buckt: a}]",
        "routes[0].buckt: unknown key (did you mean 'bucket'?)",
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: a/, command: [/bin/x]}]",
        "routes[0].command: unknown key (did you mean 'on_download.command'? check the "
        "indentation)",
    ),
    (
        "routes: [{download_folder: /srv/a, bucket: a}, {download_folder: /srv/a/b}]",
        "routes[1].download_folder: /srv/a/b is inside routes[0].download_folder (/srv/a); "
        "route folders must be the same folder or separate ones, never one inside another",
    ),
    (
        "routes: [{download_folder: /srv/a/b, bucket: a}, {download_folder: /srv/a}]",
        "routes[1].download_folder: /srv/a contains routes[0].download_folder (/srv/a/b); "
        "route folders must be the same folder or separate ones, never one inside another",
    ),
    (
        "routes: [{download_folder: /srv/a}, {download_folder: /srv/b, bucket: x}]",
        "routes[1]: is never used: routes[0] comes first and matches every object this route "
        "matches (the first matching route wins)",
    ),
    (
        "routes: [{download_folder: /srv/a, prefix: in/}, {download_folder: /srv/b, "
        "prefix: in/2024/, glob: '*.csv'}]",
        "routes[1]: is never used: routes[0] comes first and matches every object this route "
        "matches (the first matching route wins)",
    ),
    (
        "routes: [{download_folder: /srv/a, bucket: b, glob: '*.csv'}, {download_folder: /srv/b, "
        "bucket: b, glob: '*.csv', prefix: x/}]",
        "routes[1]: is never used: routes[0] comes first and matches every object this route "
        "matches (the first matching route wins)",
    ),
    (
        "routes: [{download_folder: /srv/a, bucket: b}]\ns3_bucket_name: [a, c]",
        "routes[0].bucket: 'b' is not in s3_bucket_name, so this route would never be used",
    ),
    (
        "routes: [{download_folder: /srv/a}]\ndownload_folder: /srv/a",
        "download_folder: is not used when routes is set: each route has its own "
        "download_folder; remove this key",
    ),
    # unrouted, on_remove
    ("unrouted: dead_letter", "unrouted: has no effect without routes; remove it or add routes"),
    (
        "unrouted: drop\nroutes: [{download_folder: /srv/a}]",
        "unrouted: must be one of acknowledge, dead_letter, got 'drop'",
    ),
    (
        "unrouted: dead-letter\nroutes: [{download_folder: /srv/a}]",
        "unrouted: must be one of acknowledge, dead_letter, got 'dead-letter' "
        "(did you mean 'dead_letter'?)",
    ),
    ("on_remove: remove", "on_remove: must be one of keep, delete, got 'remove'"),
    (
        "file_mtime: now",
        "file_mtime: must be one of last_modified, download_time, got 'now'",
    ),
    (
        "file_mtime: download-time",
        "file_mtime: must be one of last_modified, download_time, got 'download-time' "
        "(did you mean 'download_time'?)",
    ),
    ("on_remove: true", "on_remove: must be one of keep, delete, got true"),
    (
        "on_remove: delet",
        "on_remove: must be one of keep, delete, got 'delet' (did you mean 'delete'?)",
    ),
    # metrics
    (
        "metrics: true",
        "metrics: must be a mapping with the keys listen (write {} for the default, "
        "127.0.0.1:9464), got true",
    ),
    (
        "metrics: '127.0.0.1:9464'",
        "metrics: must be a mapping with the keys listen (write {} for the default, "
        "127.0.0.1:9464), got '127.0.0.1:9464'",
    ),
    (
        "metrics: {listen: 9464}",
        f"metrics.listen: {LISTEN_EXPECTED}, got 9464 (write 127.0.0.1:9464 for this host only)",
    ),
    ("metrics: {listen: localhost}", f"metrics.listen: {LISTEN_EXPECTED}, got 'localhost'"),
    ("metrics: {listen: 'host:port'}", f"metrics.listen: {LISTEN_EXPECTED}, got 'host:port'"),
    ("metrics: {listen: 'h:-1'}", f"metrics.listen: {LISTEN_EXPECTED}, got 'h:-1'"),
    ("metrics: {listen: 'h:123456'}", f"metrics.listen: {LISTEN_EXPECTED}, got 'h:123456'"),
    (
        "metrics: {listen: '::1:9464'}",
        f"metrics.listen: {LISTEN_EXPECTED}; write an IPv6 address in brackets, got '::1:9464'",
    ),
    (
        "metrics: {listen: '127.0.0.1:0'}",
        "metrics.listen: the port must be from 1 to 65535, got '127.0.0.1:0'",
    ),
    (
        "metrics: {listen: '127.0.0.1:65536'}",
        "metrics.listen: the port must be from 1 to 65535, got '127.0.0.1:65536'",
    ),
    (
        "metrics: {listen: ':9464'}",
        "metrics.listen: must name the address to listen on: 127.0.0.1 for this host only, "
        "0.0.0.0 for every interface, got ':9464'",
    ),
    (
        "metrics: {listen: '256.0.0.1:9464'}",
        "metrics.listen: '256.0.0.1' is not an IPv4 address, got '256.0.0.1:9464'",
    ),
    (
        "metrics: {listen: '[::g]:9464'}",
        "metrics.listen: '[::g]' is not an IPv6 address, got '[::g]:9464'",
    ),
    (
        "metrics: {listen: '[127.0.0.1]:9464'}",
        "metrics.listen: '[127.0.0.1]' is not an IPv6 address, got '[127.0.0.1]:9464'",
    ),
    (
        "metrics: {listen: 'my_host:9464'}",
        "metrics.listen: 'my_host' is not a host name or address, got 'my_host:9464'",
    ),
    (
        "metrics: {listen: '-bad.example:9464'}",
        "metrics.listen: '-bad.example' is not a host name or address, got '-bad.example:9464'",
    ),
    (
        "metrics: {listen: 'a..b:9464'}",
        "metrics.listen: 'a..b' is not a host name or address, got 'a..b:9464'",
    ),
    (
        "metrics: {listen: 'http://127.0.0.1:9464'}",
        f"metrics.listen: {LISTEN_EXPECTED}, without a scheme such as http://, "
        "got 'http://127.0.0.1:9464'",
    ),
    ("metrics: {port: 9464}", "metrics.port: unknown key"),
    ("metrics: {listn: ':1'}", "metrics.listn: unknown key (did you mean 'listen'?)"),
    # the right key at the wrong level
    (
        "prefix: in/",
        "prefix: unknown key (did you mean 'prefix' in a routes entry? check the indentation)",
    ),
    (
        "glob: '*.csv'",
        "glob: unknown key (did you mean 'glob' in a routes entry? check the indentation)",
    ),
    (
        "listen: '127.0.0.1:1'",
        "listen: unknown key (did you mean 'metrics.listen'? check the indentation)",
    ),
    (
        "command: [/bin/x]",
        "command: unknown key (did you mean 'on_download.command'? check the indentation)",
    ),
    ("route: []", "route: unknown key (did you mean 'routes'?)"),
    ("on_remov: delete", "on_remov: unknown key (did you mean 'on_remove'?)"),
    ("on-download: {}", "on-download: unknown key (did you mean 'on_download'?)"),
    (
        "metrics: {listen: '::1'}",
        f"metrics.listen: {LISTEN_EXPECTED}; write an IPv6 address in brackets, got '::1'",
    ),
]


@pytest.mark.parametrize(("snippet", "problem"), NEW_REFUSED)
def test_new_refused_value(snippet: str, problem: str) -> None:
    data = yaml.safe_load(snippet)
    data.setdefault("sqs_queue_url", QUEUE)
    assert problems_of(data) == (problem,)


def test_every_route_problem_is_reported_with_its_index() -> None:
    problems = yaml_problems(
        f"""
sqs_queue_url: {QUEUE}
routes:
  - download_folder: /srv/a
    prefix: in
    strip_prefix: true
  - bucket: b
    glob: 7
  - download_folder: /srv/c
    on_download: {{command: [x], timeout_seconds: 0}}
    extra: 1
"""
    )
    assert problems == (
        "routes[0].prefix: must end with '/' when strip_prefix is true (only whole folders are "
        "stripped), got 'in'",
        "routes[1].download_folder: required key is missing",
        "routes[1].glob: must be a string, got the number 7; quote it",
        "routes[2].on_download.command[0]: must be the absolute path of the program (starting "
        "with /); commands are not looked up in PATH, got 'x'",
        "routes[2].on_download.timeout_seconds: must be a number of seconds from 1 to 86400, got 0",
        "routes[2].extra: unknown key",
    )


def test_duplicate_keys_inside_routes_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"sqs_queue_url: {QUEUE}\n"
        "routes:\n"
        "  - download_folder: /srv/a\n"
        "    prefix: a/\n"
        "  - download_folder: /srv/b\n"
        "    prefix: b/\n"
        "    on_download:\n"
        "      command: [/bin/true]\n"
        "      command: [/bin/false]\n"
        "    prefix: c/\n"
        "metrics:\n"
        "  listen: 127.0.0.1:1\n"
        "  listen: 127.0.0.1:2\n",
    )
    assert load_problems(path) == (
        "routes[1].on_download.command: duplicate key (lines 8 and 9); keep only one",
        "routes[1].prefix: duplicate key (lines 6 and 10); keep only one",
        "metrics.listen: duplicate key (lines 12 and 13); keep only one",
    )


def test_route_folders_may_be_shared() -> None:
    config = parse_config(
        {
            "sqs_queue_url": QUEUE,
            "routes": [
                {"download_folder": "/srv/a", "bucket": "x"},
                {"download_folder": "/srv/a/", "bucket": "y"},
            ],
        }
    )
    assert [route.download_folder for route in config.routes] == [Path("/srv/a")] * 2


def test_routes_keep_their_order() -> None:
    routes = [{"download_folder": f"/srv/{n}", "prefix": f"{n}/"} for n in range(20)]
    config = parse_config({"sqs_queue_url": QUEUE, "routes": routes})
    assert [route.prefix for route in config.routes] == [f"{n}/" for n in range(20)]


def template_examples() -> list[str]:
    """The commented examples of the shipped file: '# key:' blocks after '... Example:'."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in SHIPPED_CONFIG.read_text(encoding="utf-8").splitlines():
        if current is not None:
            if line.startswith("# ") and (line[2:3] != " " or current) and ":" in line:
                current.append(line[2:])
                continue
            blocks.append("\n".join(current))
            current = None
        if line.startswith("# ") and line.endswith("Example:"):
            current = []
    return blocks


def test_shipped_examples_are_valid() -> None:
    """The examples in etc/config.yaml's comments parse (with the required key added)."""
    examples = template_examples()
    assert len(examples) >= 3
    for example in examples:
        data = yaml.safe_load(example)
        assert isinstance(data, dict)
        data["sqs_queue_url"] = QUEUE
        assert parse_config(data) != Config(sqs_queue_url=QUEUE)


# ---- max_bandwidth_bytes_per_second, min_free_bytes -------------------------------------------


def test_bandwidth_limit_and_free_space_floor_default_to_none() -> None:
    config = parse_config({"sqs_queue_url": QUEUE})
    assert (config.max_bandwidth_bytes_per_second, config.min_free_bytes) == (None, None)
    config = parse_config(
        {"sqs_queue_url": QUEUE, "max_bandwidth_bytes_per_second": 65536, "min_free_bytes": 0}
    )
    assert (config.max_bandwidth_bytes_per_second, config.min_free_bytes) == (65536, 0)


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "max_bandwidth_bytes_per_second",
            65535,
            "max_bandwidth_bytes_per_second: must be an integer from 65536 to 1099511627776 "
            "(bytes per second, 64 KiB/s to 1 TiB/s; leave it unset for no limit), got 65535",
        ),
        (
            "max_bandwidth_bytes_per_second",
            "10485760",
            "max_bandwidth_bytes_per_second: must be an integer from 65536 to 1099511627776 "
            "(bytes per second, 64 KiB/s to 1 TiB/s; leave it unset for no limit), got "
            "'10485760' (a string; remove the quotes)",
        ),
        (
            "max_bandwidth_bytes_per_second",
            1.5e6,
            "max_bandwidth_bytes_per_second: must be an integer from 65536 to 1099511627776 "
            "(bytes per second, 64 KiB/s to 1 TiB/s; leave it unset for no limit), got 1500000.0",
        ),
        (
            "min_free_bytes",
            -1,
            "min_free_bytes: must be an integer from 0 to 1125899906842624 (bytes, up to 1 PiB), "
            "got -1",
        ),
        (
            "min_free_bytes",
            True,
            "min_free_bytes: must be an integer from 0 to 1125899906842624 (bytes, up to 1 PiB), "
            "got true",
        ),
    ],
)
def test_bandwidth_limit_and_free_space_floor_are_whole_bytes_in_range(
    key: str, value: object, expected: str
) -> None:
    assert problems_of({"sqs_queue_url": QUEUE, key: value}) == (expected,)
