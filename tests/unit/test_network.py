"""The ``aws:`` network keys as botocore applies them: where each client sends its requests.

Endpoint resolution is local, so these tests need no server: a ``before-send`` handler records
the URL a request was about to go to and stops it there (nothing leaves the process). They run
on both botocore versions the project supports (1.44, and Debian bookworm's 1.29), for every
client the daemon makes (``make_clients``) and for the STS client that assumes roles
(``Aws._sts_creator``). The traffic itself (proxies, CA bundles) is tested against real local
servers in tests/integration/test_network.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from s3sqsd.aws import (
    Aws,
    ca_bundle_problems,
    make_clients,
    proxy_secrets,
    resolved_endpoint,
    shown_proxy,
)
from s3sqsd.config import AwsConfig, Config
from s3sqsd.errors import ConfigError
from s3sqsd.preflight import make_check_clients
from s3sqsd.preflight_aws import describe_network


class _Stop(Exception):
    """Raised by the before-send handler: the request goes no further."""


@pytest.fixture(autouse=True)
def _no_aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that sign but never leave, and nothing of the shell's AWS setup."""
    for name in (
        "AWS_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CA_BUNDLE",
        "AWS_USE_FIPS_ENDPOINT",
        "AWS_USE_DUALSTACK_ENDPOINT",
        "AWS_STS_REGIONAL_ENDPOINTS",
        "AWS_ENDPOINT_URL",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "https_proxy",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def config_for(region: str, aws: AwsConfig | None = None, **keys: Any) -> Config:
    return Config(
        sqs_queue_url=f"https://sqs.{region}.amazonaws.com/123456789012/inbox",
        download_folder=Path("/x"),
        aws_region=region,
        aws=aws or AwsConfig(),
        **keys,
    )


def sent_to(client: Any, operation: str, **params: Any) -> str:
    """The URL ``client`` would send ``operation`` to (the request is stopped before sending)."""
    seen: list[str] = []

    def grab(request: Any, **_: Any) -> None:
        seen.append(request.url)
        raise _Stop

    client.meta.events.register("before-send", grab)
    with pytest.raises(_Stop):
        getattr(client, operation)(**params)
    client.meta.events.unregister("before-send", grab)
    return seen[0]


def host(url: str) -> str:
    return urlsplit(url).netloc


def every_host(config: Config) -> dict[str, str]:
    """The host each of the daemon's clients, and the role fetcher's STS client, sends to."""
    clients = make_clients(config, environ={})
    aws = Aws(config, environ={})
    sts = aws._sts_creator()("sts", aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x")
    queue = config.sqs_queue_url
    hosts = {
        "s3": host(
            sent_to(clients.s3.for_bucket("acme-inbox"), "get_object", Bucket="acme-inbox", Key="k")
        ),
        "sqs_receive": host(sent_to(clients.sqs_receive, "receive_message", QueueUrl=queue)),
        "sqs_control": host(sent_to(clients.sqs_control, "get_queue_attributes", QueueUrl=queue)),
        "sts": host(sent_to(sts, "get_caller_identity")),
    }
    # What ``s3sqsd check`` shows is what botocore resolves (resolved_endpoint pins the
    # ruleset resolver it reads, on each botocore).
    assert host(resolved_endpoint(sts, "GetCallerIdentity")) == hosts["sts"]
    assert (
        host(resolved_endpoint(clients.sqs_control, "GetQueueAttributes")) == hosts["sqs_control"]
    )
    assert (
        host(
            resolved_endpoint(
                clients.s3.for_bucket("acme-inbox"), "HeadBucket", {"Bucket": "acme-inbox"}
            )
        )
        == hosts["s3"]
    )
    return hosts


def hosts_of(s3: str, sqs: str, sts: str) -> dict[str, str]:
    return {"s3": s3, "sqs_receive": sqs, "sqs_control": sqs, "sts": sts}


@pytest.mark.parametrize(
    ("region", "aws", "expected"),
    [
        pytest.param(
            "eu-west-1",
            AwsConfig(),
            hosts_of(
                "acme-inbox.s3.eu-west-1.amazonaws.com",
                "sqs.eu-west-1.amazonaws.com",
                "sts.eu-west-1.amazonaws.com",
            ),
            id="default",
        ),
        pytest.param(
            "eu-west-1",
            AwsConfig(use_fips_endpoint=True),
            hosts_of(
                "acme-inbox.s3-fips.eu-west-1.amazonaws.com",
                "sqs-fips.eu-west-1.amazonaws.com",
                "sts-fips.eu-west-1.amazonaws.com",
            ),
            id="fips",
        ),
        pytest.param(
            "us-east-1",
            AwsConfig(use_fips_endpoint=True),
            hosts_of(
                "acme-inbox.s3-fips.us-east-1.amazonaws.com",
                "sqs-fips.us-east-1.amazonaws.com",
                "sts-fips.us-east-1.amazonaws.com",
            ),
            id="fips-us-east-1",
        ),
        pytest.param(
            "eu-west-1",
            AwsConfig(use_dualstack_endpoint=True),
            hosts_of(
                "acme-inbox.s3.dualstack.eu-west-1.amazonaws.com",
                "sqs.eu-west-1.api.aws",
                "sts.eu-west-1.api.aws",
            ),
            id="dualstack",
        ),
        pytest.param(
            "eu-west-1",
            AwsConfig(use_fips_endpoint=True, use_dualstack_endpoint=True),
            hosts_of(
                "acme-inbox.s3-fips.dualstack.eu-west-1.amazonaws.com",
                "sqs-fips.eu-west-1.api.aws",
                "sts-fips.eu-west-1.api.aws",
            ),
            id="fips-dualstack",
        ),
        pytest.param(
            "us-east-1",
            AwsConfig(),
            hosts_of(
                "acme-inbox.s3.amazonaws.com",
                "sqs.us-east-1.amazonaws.com",
                "sts.us-east-1.amazonaws.com",
            ),
            id="sts-regional-us-east-1",
        ),
        pytest.param(
            "eu-west-1",
            AwsConfig(sts_regional_endpoints="legacy"),
            hosts_of(
                "acme-inbox.s3.eu-west-1.amazonaws.com",
                "sqs.eu-west-1.amazonaws.com",
                "sts.amazonaws.com",
            ),
            id="sts-legacy-global",
        ),
        pytest.param(
            "af-south-1",  # launched after regional STS: legacy has no global endpoint for it
            AwsConfig(sts_regional_endpoints="legacy"),
            hosts_of(
                "acme-inbox.s3.af-south-1.amazonaws.com",
                "sqs.af-south-1.amazonaws.com",
                "sts.af-south-1.amazonaws.com",
            ),
            id="sts-legacy-opt-in-region",
        ),
        pytest.param(
            "eu-west-1",
            AwsConfig(sts_regional_endpoints="legacy", use_fips_endpoint=True),
            hosts_of(
                "acme-inbox.s3-fips.eu-west-1.amazonaws.com",
                "sqs-fips.eu-west-1.amazonaws.com",
                "sts-fips.eu-west-1.amazonaws.com",
            ),
            id="sts-legacy-fips",
        ),
    ],
)
def test_each_client_resolves_the_endpoint_the_flags_ask_for(
    region: str, aws: AwsConfig, expected: dict[str, str]
) -> None:
    assert every_host(config_for(region, aws)) == expected


FLAGS = AwsConfig(
    use_fips_endpoint=True, use_dualstack_endpoint=True, sts_regional_endpoints="legacy"
)


def test_an_endpoint_url_is_used_as_given_and_the_flags_ignored() -> None:
    assert every_host(config_for("eu-west-1", FLAGS, endpoint_url="http://127.0.0.1:5000")) == (
        hosts_of("127.0.0.1:5000", "127.0.0.1:5000", "127.0.0.1:5000")
    )


def test_the_flags_still_apply_to_services_without_an_endpoint_url() -> None:
    minio = config_for("eu-west-1", FLAGS, s3_endpoint_url="https://minio.example:9000")
    assert every_host(minio) == hosts_of(
        "minio.example:9000", "sqs-fips.eu-west-1.api.aws", "sts-fips.eu-west-1.api.aws"
    )
    vpce = "vpce-0123.sts.eu-west-1.vpce.amazonaws.com"
    sts_only = config_for(
        "eu-west-1",
        AwsConfig(use_fips_endpoint=True, sts_endpoint_url=f"https://{vpce}"),
    )
    assert every_host(sts_only) == hosts_of(
        "acme-inbox.s3-fips.eu-west-1.amazonaws.com", "sqs-fips.eu-west-1.amazonaws.com", vpce
    )


def test_proxy_and_ca_bundle_reach_every_client_and_the_role_fetchers_sts(tmp_path: Path) -> None:
    """The options each client was built with (the traffic is in the integration tests)."""
    bundle = tmp_path / "ca.pem"
    proxy = "http://user:pw@127.0.0.1:3128"
    config = config_for(
        "eu-west-1",
        AwsConfig(ca_bundle=bundle, proxy_url=proxy, proxy_ca_bundle=bundle),
    )
    aws = Aws(config, environ={})
    sts = aws._sts_creator()("sts", aws_access_key_id="AKIAEXAMPLE", aws_secret_access_key="x")
    for client in (aws.client("s3"), aws.client("sqs"), sts):
        assert client.meta.config.proxies == {"http": proxy, "https": proxy}
        assert client.meta.config.proxies_config == {"proxy_ca_bundle": str(bundle)}
        assert client._endpoint.http_session._verify == str(bundle)


def test_an_unusable_ca_bundle_stops_the_start(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    missing = tmp_path / "missing.pem"
    config = config_for(
        "eu-west-1", AwsConfig(ca_bundle=missing, proxy_url="http://p:1", proxy_ca_bundle=garbage)
    )
    with pytest.raises(ConfigError) as raised:
        make_clients(config, environ={})
    assert raised.value.problems == (
        f"aws.ca_bundle: {missing}: cannot be read (No such file or directory)",
        f"aws.proxy_ca_bundle: {garbage}: holds no usable PEM certificate "
        "(NO_CERTIFICATE_OR_CRL_FOUND)",
    )
    assert ca_bundle_problems(AwsConfig()) == []


def test_proxy_credentials_are_redacted_and_never_shown() -> None:
    assert proxy_secrets("http://proxy:3128") == ()
    assert proxy_secrets("http://svc:p%40ss%3Aword@proxy:3128") == (
        "p%40ss%3Aword",
        "p@ss:word",
        "svc:p%40ss%3Aword",
    )
    assert shown_proxy("http://svc:p%40ss@proxy.example:3128") == (
        "http://proxy.example:3128 (with credentials)"
    )
    assert shown_proxy("https://proxy.example") == "https://proxy.example"


def describe(config: Config) -> str:
    clients = make_check_clients(config, environ={})
    bucket = next(iter(config.s3_bucket_name), "")
    result = describe_network(
        config, clients.aws, s3=clients.s3.for_bucket(bucket), sqs=clients.sqs
    )
    return f"{result.verdict.value} {result.detail}"


def test_check_describes_the_endpoints_in_effect() -> None:
    config = config_for(
        "us-east-1",
        AwsConfig(use_fips_endpoint=True, proxy_url="http://svc:hunter2hunter2@proxy.example:3128"),
        s3_bucket_name=("acme-inbox",),
    )
    assert describe(config) == (
        "ok S3 https://acme-inbox.s3-fips.us-east-1.amazonaws.com; "
        "SQS https://sqs-fips.us-east-1.amazonaws.com; "
        "STS https://sts-fips.us-east-1.amazonaws.com (sts_regional_endpoints: regional); "
        "FIPS endpoints; proxy http://proxy.example:3128 (with credentials) for every call "
        "(aws.proxy_url; HTTPS_PROXY and NO_PROXY are not read); botocore's default CA "
        "certificates"
    )
    legacy = config_for(
        "eu-west-1",
        AwsConfig(use_dualstack_endpoint=True, sts_regional_endpoints="legacy"),
        s3_endpoint_url="https://minio.example:9000",
    )
    assert describe(legacy) == (
        "ok S3 https://minio.example:9000; SQS https://sqs.eu-west-1.api.aws; "
        "STS https://sts.eu-west-1.api.aws (sts_regional_endpoints: legacy); "
        "dual-stack endpoints (not for S3: endpoint URL set); "
        "no proxy (none configured, none in the environment); botocore's default CA certificates"
    )


def test_check_describes_the_environments_proxy_as_botocore_applies_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://bob:hunter2hunter2@corp-proxy:8080")
    monkeypatch.setenv("NO_PROXY", "sts.eu-west-1.amazonaws.com")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(tmp_path / "env-ca.pem"))
    assert describe(config_for("eu-west-1")) == (
        "ok S3 https://s3.eu-west-1.amazonaws.com; SQS https://sqs.eu-west-1.amazonaws.com; "
        "STS https://sts.eu-west-1.amazonaws.com (sts_regional_endpoints: regional); "
        "proxy http://corp-proxy:8080 (with credentials) from the environment for S3, SQS; "
        "no proxy for STS (NO_PROXY); "
        f"CA certificates {tmp_path / 'env-ca.pem'} (AWS_CA_BUNDLE or the AWS config file)"
    )
