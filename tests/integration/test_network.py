"""Regulated networks, against real local servers: the daemon and ``s3sqsd check`` through a
forward proxy (``aws.proxy_url``), to an emulator behind TLS signed by a CA made at test time
(``aws.ca_bundle``), and through an ``https://`` proxy with a CA of its own
(``aws.proxy_ca_bundle``). Nothing is stubbed on the way: the proxy is tests/support/
faultproxy.py in forward mode, the TLS fronts are tests/support/tls.py, all on 127.0.0.1.

With ``aws.role_arn`` set, the STS client that assumes the role goes the same way (AssumeRole
through the proxy; STS over TLS checked against the CA bundle), so a role that is assumed and
used proves the options reached that client too.

The proxy's password is a canary: it must never appear in what the daemon or the check print.
Where botocore reads ``HTTPS_PROXY``/``NO_PROXY`` (no ``proxy_url``) and where it does not
(``proxy_url`` set) is pinned with the daemon's own clients, in this process.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from s3sqsd.aws import make_clients
from s3sqsd.config import load_config
from tests.support.daemon import (
    DaemonProcess,
    closed_port,
    final_path,
    run_cli,
    write_config,
)
from tests.support.emulator import ACCOUNT, Emulator, Pipeline
from tests.support.faultproxy import FaultProxy, proxy_for
from tests.support.tls import TestCA, TlsFront

pytestmark = pytest.mark.integration

PROXY_USER = "s3sqsd-fleet"
PROXY_PASSWORD = "canary-proxy-Vb7Qx2Lm9Tz4"
PROXY_AUTHORIZATION = (
    "Basic " + base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
)
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/s3sqsd-reader"
# The shell running pytest must not choose a proxy for the subprocesses.
NO_PROXY_ENV: dict[str, str | None] = {
    name: None
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
}


def authority(url: str) -> str:
    return urlsplit(url).netloc


def proxy_url(proxy: FaultProxy | TlsFront, scheme: str = "http") -> str:
    return f"{scheme}://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{proxy.port}"


def printed(daemon: DaemonProcess) -> str:
    """Everything the daemon wrote, stdout records and stderr."""
    records = [json.dumps(r, ensure_ascii=False) for r in daemon.events()]
    return "\n".join([*records, *daemon.non_json, daemon.stderr])


def assert_password_hidden(text: str) -> None:
    assert PROXY_PASSWORD not in text
    assert PROXY_PASSWORD[-10:] not in text
    assert PROXY_AUTHORIZATION.split()[1] not in text


def check(tmp_path: Path, config: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    """``s3sqsd check``: (exit status, {check name: "verdict detail"} of the first line of each
    name, everything printed)."""
    path = write_config(tmp_path / "check.yaml", config)
    result = run_cli(["check", "--config", str(path)], env=NO_PROXY_ENV, timeout=90)
    lines: dict[str, str] = {}
    for text in result.stdout.splitlines()[:-1]:
        verdict, name, detail = text.split(None, 2)
        lines.setdefault(name, f"{verdict} {detail}")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, lines, result.stdout + result.stderr


def download_one(
    emulator: Emulator, pipeline: Pipeline, daemon: DaemonProcess, folder: Path, key: str
) -> None:
    body = f"through the regulated network: {key}".encode()
    emulator.client("s3").put_object(Bucket=pipeline.bucket, Key=key, Body=body)
    daemon.wait_for_event("object.downloaded", key=key, timeout=40)
    assert final_path(folder, key).read_bytes() == body


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    with proxy_for(emulator, seed=1) as made:
        yield made


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


@pytest.fixture
def tls_front(emulator: Emulator, ca: TestCA) -> Iterator[TlsFront]:
    """The emulator as ``https://127.0.0.1:PORT``, with a certificate of ``ca``."""
    target = urlsplit(emulator.endpoint)
    assert target.hostname is not None
    assert target.port is not None
    cert, key = ca.issue("emulator")
    with TlsFront((target.hostname, target.port), cert=cert, key=key) as front:
        yield front


# ---- the proxy ---------------------------------------------------------------------------------


def test_every_call_goes_through_the_proxy_and_its_password_is_never_shown(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    proxy: FaultProxy,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline()
    config = make_config(pipeline, aws={"proxy_url": proxy_url(proxy), "role_arn": ROLE_ARN})
    daemon = spawn_daemon(config, env=NO_PROXY_ENV)
    download_one(emulator, pipeline, daemon, download_folder, "via-proxy/report.csv")

    seen = proxy.events()
    calls = {(event.service, event.operation) for event in seen}
    # S3, SQS, and the STS client that assumed the role: all through the proxy, all with its
    # credentials, each asking for the emulator by absolute URI.
    assert {("sts", "AssumeRole"), ("s3", "GetObject"), ("sqs", "ReceiveMessage")} <= calls
    assert {event.proxied for event in seen} == {authority(emulator.endpoint)}
    assert {event.proxy_authorization for event in seen} == {PROXY_AUTHORIZATION}
    assert_password_hidden(printed(daemon))
    assert daemon.stop() == 0

    before = len(proxy.events())
    status, lines, output = check(tmp_path, config)
    assert status == 0, output
    assert (
        f"proxy http://127.0.0.1:{proxy.port} (with credentials) for every call"
        in (lines["network"])
    )
    assert lines["identity"].startswith(f"ok queue, buckets: role {ROLE_ARN}, as arn:aws:sts::")
    assert_password_hidden(output)
    checked = {(e.service, e.operation) for e in proxy.events()[before:]}
    assert {("sts", "AssumeRole"), ("sts", "GetCallerIdentity"), ("s3", "HeadBucket")} <= checked

    # Without proxy_url, the proxy sees nothing.
    before = len(proxy.events())
    del config["aws"]["proxy_url"]
    status, lines, output = check(tmp_path, config)
    assert status == 0, output
    assert "no proxy (none configured, none in the environment)" in lines["network"]
    assert len(proxy.events()) == before


def test_a_proxy_that_is_down_is_reported_without_its_password(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
) -> None:
    config = make_config(
        emulator.pipeline(),
        aws={"proxy_url": f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{closed_port()}"},
    )
    daemon = spawn_daemon(config, env=NO_PROXY_ENV)
    failed = daemon.wait_for_event("sqs.receive.failed", timeout=30)
    assert "proxy" in failed["error"].lower()
    assert_password_hidden(printed(daemon))


def test_botocore_reads_https_proxy_and_no_proxy_only_without_proxy_url(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    proxy: FaultProxy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon's own clients (make_clients), real calls to the emulator, HTTP_PROXY naming a
    second proxy: without ``proxy_url`` it is used unless NO_PROXY names the endpoint's host;
    with ``proxy_url``, the environment is not read at all (NO_PROXY included)."""
    pipeline = emulator.pipeline()
    for name in NO_PROXY_ENV:
        monkeypatch.delenv(name, raising=False)

    def calls(config: dict[str, Any]) -> None:
        clients = make_clients(load_config(write_config(tmp_path / "c.yaml", config)))
        clients.sqs_control.get_queue_attributes(QueueUrl=pipeline.queue_url)
        clients.s3.head_bucket(Bucket=pipeline.bucket)

    with proxy_for(emulator, seed=2) as environment_proxy:
        monkeypatch.setenv("HTTP_PROXY", environment_proxy.url)

        def used() -> dict[str, int]:
            return {
                "environment": len(environment_proxy.events()),
                "aws.proxy_url": len(proxy.events()),
            }

        calls(make_config(pipeline))
        assert used() == {"environment": 2, "aws.proxy_url": 0}
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        calls(make_config(pipeline))
        assert used() == {"environment": 2, "aws.proxy_url": 0}
        calls(make_config(pipeline, aws={"proxy_url": proxy_url(proxy)}))
        assert used() == {"environment": 2, "aws.proxy_url": 2}
        monkeypatch.delenv("NO_PROXY")
        calls(make_config(pipeline, aws={"proxy_url": proxy_url(proxy)}))
        assert used() == {"environment": 2, "aws.proxy_url": 4}


# ---- TLS: the CA bundle --------------------------------------------------------------------------


def test_a_tls_endpoint_signed_by_the_configured_ca_is_trusted(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    tls_front: TlsFront,
    ca: TestCA,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline()
    config = make_config(
        pipeline,
        endpoint_url=tls_front.url,
        aws={"ca_bundle": str(ca.ca_pem), "role_arn": ROLE_ARN},
    )
    daemon = spawn_daemon(config, env=NO_PROXY_ENV)
    # The role is assumed over TLS too: STS's client was given the bundle as well.
    download_one(emulator, pipeline, daemon, download_folder, "over-tls/doc.pdf")
    assert tls_front.handshakes >= 2
    assert tls_front.handshake_failures == 0
    assert daemon.stop() == 0

    status, lines, output = check(tmp_path, config)
    assert status == 0, output
    assert lines["network"].startswith(f"ok S3 {tls_front.url}; SQS {tls_front.url}; STS")
    assert f"CA certificates {ca.ca_pem} (aws.ca_bundle)" in lines["network"]
    assert lines["identity"].startswith(f"ok queue, buckets: role {ROLE_ARN}")


def test_without_the_ca_bundle_the_tls_endpoint_is_refused_clearly(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    tls_front: TlsFront,
    tmp_path: Path,
) -> None:
    pipeline = emulator.pipeline()
    config = make_config(pipeline, endpoint_url=tls_front.url)
    daemon = spawn_daemon(config, env=NO_PROXY_ENV)
    failed = daemon.wait_for_event("sqs.receive.failed", timeout=30)
    assert "CERTIFICATE_VERIFY_FAILED" in failed["error"]
    assert tls_front.handshake_failures >= 1

    status, lines, output = check(tmp_path, config)
    assert status == 1, output
    assert lines["network"].endswith("botocore's default CA certificates")
    assert lines["queue"].startswith("FAIL")
    assert "CERTIFICATE_VERIFY_FAILED" in lines["queue"]


def test_an_unusable_ca_bundle_stops_the_daemon_and_fails_the_check(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    not_pem = tmp_path / "corporate-ca.pem"
    not_pem.write_text("this is not a certificate\n")
    config = make_config(emulator.pipeline(), aws={"ca_bundle": str(not_pem)})
    daemon = spawn_daemon(config, env=NO_PROXY_ENV)
    assert daemon.wait_exit(30) == 78
    (invalid,) = daemon.events("config.invalid")
    assert invalid["config_key"] == "aws.ca_bundle"
    assert f"aws.ca_bundle: {not_pem}: holds no usable PEM certificate" in invalid["message"]

    status, lines, output = check(tmp_path, config)
    assert status == 1, output
    assert lines["network"] == (
        f"FAIL aws.ca_bundle: {not_pem}: holds no usable PEM certificate "
        "(NO_CERTIFICATE_OR_CRL_FOUND)"
    )
    config["aws"] = {"ca_bundle": str(tmp_path / "missing.pem")}
    status, lines, output = check(tmp_path, config)
    assert lines["network"] == (
        f"FAIL aws.ca_bundle: {tmp_path / 'missing.pem'}: cannot be read "
        "(No such file or directory)"
    )


# ---- an https:// proxy with a CA of its own ------------------------------------------------------


def test_an_https_proxy_is_trusted_by_its_own_ca_bundle(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    tls_front: TlsFront,
    ca: TestCA,
    tmp_path: Path,
) -> None:
    """check -> TLS (the proxy's CA) -> CONNECT -> TLS (the endpoint's CA) -> emulator."""
    proxy_ca = TestCA(tmp_path / "proxy-ca", name="s3sqsd test proxy CA")
    cert, key = proxy_ca.issue("proxy")
    with (
        FaultProxy(("127.0.0.1", tls_front.port), seed=3) as tunnel,
        TlsFront(("127.0.0.1", tunnel.port), cert=cert, key=key) as https_proxy,
    ):
        aws = {
            "ca_bundle": str(ca.ca_pem),
            "proxy_url": proxy_url(https_proxy, "https"),
            "proxy_ca_bundle": str(proxy_ca.ca_pem),
        }
        config = make_config(emulator.pipeline(), endpoint_url=tls_front.url, aws=aws)
        status, lines, output = check(tmp_path, config)
        assert status == 0, output
        assert f"proxy CA certificates {proxy_ca.ca_pem} (aws.proxy_ca_bundle)" in lines["network"]
        assert {e.operation for e in tunnel.events()} == {"CONNECT"}
        assert {e.proxied for e in tunnel.events()} == {f"127.0.0.1:{tls_front.port}"}
        assert_password_hidden(output)

        del aws["proxy_ca_bundle"]  # the proxy's certificate is not from the endpoints' CA
        status, lines, output = check(tmp_path, config)
        assert status == 1, output
        assert lines["queue"].startswith("FAIL")
        assert https_proxy.handshake_failures >= 1
        assert_password_hidden(output)
