"""config/aws.py: the ``aws`` section, per-route identities and the bucket guards."""

from __future__ import annotations

from pathlib import Path

import pytest

from s3sqsd.config import AwsConfig, RoleConfig, parse_config
from s3sqsd.errors import ConfigError

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/q"
ROLE = "arn:aws:iam::111122223333:role/s3sqsd-reader"


def problems(extra: dict[str, object]) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config({"sqs_queue_url": QUEUE, **extra})
    return str(caught.value)


def test_every_aws_key_is_read() -> None:
    config = parse_config(
        {
            "sqs_queue_url": QUEUE,
            "aws": {
                "role_arn": ROLE,
                "external_id": "feed-7f3a",
                "role_session_name": "s3sqsd-web1",
                "duration_seconds": 7200,
                "sqs": {"role_arn": "arn:aws-us-gov:iam::444455556666:role/q"},
                "ca_bundle": "/etc/ssl/certs/corp.pem",
                "proxy_url": "http://user:pw@proxy.example:3128",
                "proxy_ca_bundle": "/etc/ssl/certs/proxy.pem",
                "use_fips_endpoint": True,
                "use_dualstack_endpoint": True,
                "sts_regional_endpoints": "legacy",
                "sts_endpoint_url": "https://sts.example",
            },
            "expected_bucket_owner": "011122223333",
            "request_payer": "requester",
            "sse_customer_key_file": "/run/credentials/s3sqsd.service/key",
        }
    )
    assert config.aws == AwsConfig(
        role=RoleConfig(
            role_arn=ROLE,
            external_id="feed-7f3a",
            role_session_name="s3sqsd-web1",
            duration_seconds=7200,
        ),
        sqs_role=RoleConfig(role_arn="arn:aws-us-gov:iam::444455556666:role/q"),
        ca_bundle=Path("/etc/ssl/certs/corp.pem"),
        proxy_url="http://user:pw@proxy.example:3128",
        proxy_ca_bundle=Path("/etc/ssl/certs/proxy.pem"),
        use_fips_endpoint=True,
        use_dualstack_endpoint=True,
        sts_regional_endpoints="legacy",
        sts_endpoint_url="https://sts.example",
    )
    assert config.guards.expected_bucket_owner == "011122223333"
    assert config.guards.request_payer == "requester"
    assert config.guards.sse_customer_key_file == Path("/run/credentials/s3sqsd.service/key")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"aws": {"role_arn": "s3sqsd-reader"}}, "aws.role_arn: must be an IAM role ARN"),
        ({"aws": {"external_id": "x1"}}, "aws.role_arn: required key is missing"),
        ({"aws": {"role_arn": ROLE, "duration_seconds": 600}}, "aws.duration_seconds: must be"),
        ({"aws": {"role_arn": ROLE, "role_session_name": "a b"}}, "aws.role_session_name:"),
        ({"aws": {"sqs": {"external_id": "abc"}}}, "aws.sqs.role_arn: required key is missing"),
        ({"aws": {"use_fips_endpoint": "yes"}}, "aws.use_fips_endpoint: must be true or false"),
        ({"aws": {"proxy_url": "socks5://p:1080"}}, "aws.proxy_url: must be a proxy URL"),
        ({"aws": {"proxy_ca_bundle": "/x.pem"}}, "aws.proxy_ca_bundle: needs aws.proxy_url"),
        ({"aws": {"ca_bundle": "certs.pem"}}, "aws.ca_bundle: must be the absolute path"),
        ({"aws": {"sts_regional_endpoints": "global"}}, "aws.sts_regional_endpoints: must be"),
        ({"aws": {"role": ROLE}}, "aws.role: unknown key"),
        ({"expected_bucket_owner": 111122223333}, "expected_bucket_owner: must be a 12-digit"),
        ({"expected_bucket_owner": "1111"}, "expected_bucket_owner: must be a 12-digit"),
        ({"request_payer": "bucket_owner"}, "request_payer: must be 'requester'"),
        ({"sse_customer_key_file": "key"}, "sse_customer_key_file: must be the absolute path"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(extra: dict[str, object], expected: str) -> None:
    assert expected in problems(extra)


def test_a_proxy_password_is_never_shown() -> None:
    text = problems({"aws": {"proxy_url": "ftp://user:hunter2secret@proxy:21"}})
    assert "aws.proxy_url" in text
    assert "hunter2secret" not in text


def test_route_identity_and_guards_need_a_bucket_and_must_agree_per_bucket() -> None:
    text = problems({"routes": [{"download_folder": "/a", "request_payer": "requester"}]})
    assert "routes[0].request_payer: needs routes[0].bucket" in text
    text = problems(
        {
            "routes": [
                {"bucket": "b", "prefix": "x/", "download_folder": "/a", "aws": {"role_arn": ROLE}},
                {"bucket": "b", "download_folder": "/b"},
            ]
        }
    )
    assert "routes[1]: names bucket 'b' with other aws" in text
    text = problems({"routes": [{"bucket": "b", "download_folder": "/a", "aws": {}}]})
    assert "routes[0].aws.role_arn: required key is missing" in text
