"""The access plan (which bucket uses which role and guards), the config errors of the aws
keys, the guard handler, the SSE-C key file and the default session name."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.access import plan_access
from s3sqsd.aws import _GuardParams, default_session_name, read_sse_key
from s3sqsd.config import BucketGuards, Config, RoleConfig, parse_config
from s3sqsd.errors import ConfigError

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/feed"
READER = "arn:aws:iam::123456789012:role/s3sqsd-reader"
QUEUE_ROLE = "arn:aws:iam::444455556666:role/s3sqsd-queue"
PARTNER = "arn:aws:iam::777788889999:role/s3sqsd-partner"
KEY = b"unit-test-sse-c-key-of-32-bytes!"


def config(**data: Any) -> Config:
    return parse_config({"sqs_queue_url": QUEUE, **data})


def problems_of(**data: Any) -> str:
    with pytest.raises(ConfigError) as info:
        config(**data)
    return "\n".join(info.value.problems)


def test_without_aws_everything_is_the_host_s_own_and_unguarded() -> None:
    plan = plan_access(config())
    assert plan.default.role is None
    assert plan.default.guards == BucketGuards()
    assert plan.buckets == {}
    assert plan.sqs_role is None
    assert plan.roles() == (None,)


def test_the_top_level_role_is_every_bucket_s_and_the_queue_s() -> None:
    plan = plan_access(
        config(aws={"role_arn": READER, "external_id": "feed-7f3a", "duration_seconds": 900})
    )
    role = RoleConfig(role_arn=READER, external_id="feed-7f3a", duration_seconds=900)
    assert plan.default.role == role
    assert plan.for_bucket("any-bucket").role == role
    assert plan.sqs_role == role
    assert plan.roles() == (role,)


def test_aws_sqs_is_the_queue_s_only() -> None:
    plan = plan_access(config(aws={"sqs": {"role_arn": QUEUE_ROLE}}))
    assert plan.default.role is None
    assert plan.sqs_role == RoleConfig(role_arn=QUEUE_ROLE)
    assert plan.roles() == (None, RoleConfig(role_arn=QUEUE_ROLE))


def test_a_route_s_role_and_guards_are_its_bucket_s_each_unset_guard_the_top_level_s() -> None:
    plan = plan_access(
        config(
            aws={"role_arn": READER},
            expected_bucket_owner="123456789012",
            request_payer="requester",
            routes=[
                {
                    "bucket": "partner-drop",
                    "download_folder": "/srv/partner",
                    "aws": {"role_arn": PARTNER},
                    "expected_bucket_owner": "777788889999",
                },
                {"bucket": "guarded", "download_folder": "/srv/g", "request_payer": "requester"},
                {"bucket": "plain", "download_folder": "/srv/plain"},
                {"download_folder": "/srv/rest"},
            ],
        )
    )
    reader, partner = RoleConfig(role_arn=READER), RoleConfig(role_arn=PARTNER)
    top = BucketGuards(expected_bucket_owner="123456789012", request_payer="requester")
    assert plan.for_bucket("partner-drop").role == partner
    assert plan.for_bucket("partner-drop").guards == BucketGuards(
        expected_bucket_owner="777788889999", request_payer="requester"
    )
    assert plan.for_bucket("guarded").role == reader  # guards of its own, not a role
    assert plan.for_bucket("guarded").guards == top
    assert set(plan.buckets) == {"partner-drop", "guarded"}  # "plain" has nothing of its own
    assert plan.for_bucket("plain") == plan.default
    assert plan.default.guards == top
    assert plan.sqs_role == reader
    assert plan.roles() == (reader, partner)


def test_key_files_are_listed_once_each() -> None:
    plan = plan_access(
        config(
            sse_customer_key_file="/etc/s3sqsd/a.key",
            routes=[
                {"bucket": "b", "download_folder": "/srv/b", "sse_customer_key_file": "/k/b.key"},
                {"bucket": "c", "download_folder": "/srv/c", "request_payer": "requester"},
            ],
        )
    )
    assert plan.key_files() == ("/etc/s3sqsd/a.key", "/k/b.key")


@pytest.mark.parametrize(
    ("data", "wanted"),
    [
        ({"aws": {"role_arn": "s3sqsd-reader"}}, "aws.role_arn: must be an IAM role ARN"),
        ({"aws": {"external_id": "x-y"}}, "aws.role_arn: required key is missing"),
        ({"aws": {"role_arn": READER, "duration_seconds": 600}}, "aws.duration_seconds"),
        ({"aws": {"role_arn": READER, "role_session_name": "a b"}}, "aws.role_session_name"),
        ({"aws": {"sqs": {"external_id": "abc"}}}, "aws.sqs.role_arn: required key is missing"),
        ({"expected_bucket_owner": 123456789012}, "expected_bucket_owner: must be a 12-digit"),
        ({"expected_bucket_owner": "12345"}, "expected_bucket_owner: must be a 12-digit"),
        ({"request_payer": "owner"}, "request_payer: must be 'requester'"),
        ({"sse_customer_key_file": "relative.key"}, "sse_customer_key_file: must be the abs"),
        (
            {"routes": [{"download_folder": "/srv/x", "aws": {"role_arn": READER}}]},
            "routes[0].aws: needs routes[0].bucket",
        ),
        (
            {
                "routes": [
                    {"bucket": "b", "download_folder": "/srv/1", "prefix": "x/"},
                    {"bucket": "b", "download_folder": "/srv/2", "request_payer": "requester"},
                ]
            },
            "routes[1]: names bucket 'b' with other aws",
        ),
    ],
)
def test_config_problems_name_the_key(data: dict[str, Any], wanted: str) -> None:
    assert wanted in problems_of(**data)


class _Shape:
    def __init__(self, *members: str) -> None:
        self.members = dict.fromkeys(members)


class _Model:
    def __init__(self, *members: str) -> None:
        self.input_shape = _Shape(*members)


def test_guard_params_add_what_the_operation_takes_and_the_call_did_not_set() -> None:
    guard = _GuardParams({"ExpectedBucketOwner": "123456789012", "RequestPayer": "requester"})
    params: dict[str, Any] = {"Bucket": "b", "RequestPayer": "set-by-the-call"}
    guard(params=params, model=_Model("Bucket", "ExpectedBucketOwner", "RequestPayer"))
    assert params == {
        "Bucket": "b",
        "ExpectedBucketOwner": "123456789012",
        "RequestPayer": "set-by-the-call",
    }
    head_bucket: dict[str, Any] = {"Bucket": "b"}
    guard(params=head_bucket, model=_Model("Bucket", "ExpectedBucketOwner"))
    assert head_bucket == {"Bucket": "b", "ExpectedBucketOwner": "123456789012"}


def _key_file(tmp_path: Path, content: bytes, mode: int = 0o400) -> Path:
    path = tmp_path / "k"
    path.write_bytes(content)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("form", ["raw", "base64", "base64-newline"])
def test_sse_key_file_raw_or_base64(tmp_path: Path, form: str) -> None:
    content = {
        "raw": KEY,
        "base64": base64.b64encode(KEY),
        "base64-newline": base64.b64encode(KEY) + b"\n",
    }[form]
    assert read_sse_key(_key_file(tmp_path, content)) == KEY


@pytest.mark.parametrize(
    ("content", "mode", "wanted"),
    [
        (KEY, 0o640, "is mode 0640"),
        (KEY, 0o604, "is mode 0604"),
        (KEY[:16], 0o400, "the file has 16 bytes"),
        (base64.b64encode(KEY[:16]), 0o400, "must hold a 256-bit key"),
        (b"", 0o400, "the file has 0 bytes"),
    ],
)
def test_sse_key_file_refused_without_a_byte_of_it(
    tmp_path: Path, content: bytes, mode: int, wanted: str
) -> None:
    path = _key_file(tmp_path, content, mode)
    with pytest.raises(ConfigError) as info:
        read_sse_key(path)
    text = str(info.value)
    assert text.startswith(f"sse_customer_key_file: {path}: ")
    assert wanted in text
    for form in (KEY, KEY[:16], base64.b64encode(KEY), KEY.hex().encode()):
        assert form.decode() not in text


def test_sse_key_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    target = _key_file(tmp_path, KEY)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match=r"sse_customer_key_file: .*cannot be read"):
        read_sse_key(link)


def test_default_session_name_fits_sts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "web 01/örsted." + "x" * 80)
    name = default_session_name()
    assert name.startswith("s3sqsd-web-01-")
    assert len(name) == 64
    assert all(ch.isalnum() or ch in "+=,.@-_" for ch in name)
