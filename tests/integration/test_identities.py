"""Roles (``aws.role_arn``, ``aws.sqs``, ``routes[i].aws``) through the real daemon.

Every request the daemon makes goes through a recording proxy in front of moto (S3, SQS and
STS alike: ``endpoint_url`` is the proxy's); each request's access key id says who signed it,
and moto's ``GetCallerIdentity`` says which role those keys belong to (tests/support/sts.py).
So the tests prove, call by call, which identity reached which bucket and the queue, and what
the ``AssumeRole`` calls asked for. The tests' own setup calls go straight to moto.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.daemon import (
    DaemonProcess,
    announce,
    put_objects,
    run_cli,
    visible_files,
    wait_queue_empty,
    write_config,
)
from tests.support.emulator import ACCOUNT, Emulator, wait_until
from tests.support.emulator_server import EmulatorProcess
from tests.support.faultproxy import FaultProxy, proxy_for
from tests.support.sts import HOST_KEY_ID, Identities, assume_role_calls, by_service

pytestmark = pytest.mark.integration

READER = f"arn:aws:iam::{ACCOUNT}:role/s3sqsd-reader"
QUEUE = f"arn:aws:iam::{ACCOUNT}:role/s3sqsd-queue"
PARTNER = f"arn:aws:iam::{ACCOUNT}:role/s3sqsd-partner"
HOST_ARN = f"arn:aws:sts::{ACCOUNT}:user/moto"  # what moto calls keys it never issued


def assumed(role_arn: str, session: str) -> str:
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_arn.rsplit('/', 1)[1]}/{session}"


def default_session() -> str:
    """``s3sqsd-<host name>``, as the docs promise (this host's name has no odd characters)."""
    host = socket.gethostname()
    assert all(ch.isalnum() or ch in ".-_" for ch in host), host
    return f"s3sqsd-{host}"[:64]


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    with proxy_for(emulator, seed=16) as recording:
        yield recording


@pytest.fixture
def identities(emulator: Emulator) -> Identities:
    return Identities(emulator.endpoint)


def on_bucket(events: list[Any], bucket: str) -> list[Any]:
    return [e for e in events if e.path.lstrip("/").split("/", 1)[0] == bucket]


def test_a_role_signs_every_s3_and_sqs_call(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    proxy: FaultProxy,
    identities: Identities,
) -> None:
    """``aws.role_arn`` with an external id: one AssumeRole, made with the host's own keys and
    the configured parameters (RoleSessionName defaults to ``s3sqsd-<host name>``); every
    ReceiveMessage, DeleteMessage, HeadObject and GetObject is signed by the role's keys."""
    pipeline = emulator.pipeline()
    config = make_config(
        pipeline,
        endpoint_url=proxy.url,
        aws={"role_arn": READER, "external_id": "feed-7f3a", "duration_seconds": 3600},
    )
    daemon = spawn_daemon(config)
    objects = {"a.txt": b"alpha", "dir/b.bin": b"bravo" * 100}
    put_objects(emulator.client("s3"), pipeline.bucket, objects)
    daemon.wait_for_event("object.downloaded", count=2, timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert daemon.stop() == 0
    assert visible_files(download_folder) == objects
    assert daemon.problems() == []

    events = proxy.events()
    calls = assume_role_calls(events)
    assert calls == [
        {
            "Action": "AssumeRole",
            "Version": "2011-06-15",
            "RoleArn": READER,
            "RoleSessionName": default_session(),
            "DurationSeconds": "3600",
            "ExternalId": "feed-7f3a",
        }
    ]
    (assume,) = by_service(events, "sts", operation="AssumeRole")
    assert assume.access_key_id() == HOST_KEY_ID  # assumed from the host's own credentials
    s3_calls = by_service(events, "s3")
    sqs_calls = by_service(events, "sqs")
    assert {e.operation for e in s3_calls} >= {"GetObject"}
    assert {e.operation for e in sqs_calls} >= {"ReceiveMessage"}
    assert identities.of(s3_calls + sqs_calls) == {assumed(READER, default_session())}


def test_aws_sqs_is_the_queue_s_role_only(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    proxy: FaultProxy,
    identities: Identities,
) -> None:
    """``aws.sqs`` alone: the queue is reached as that role (with its own session name), the
    bucket with the host's own credentials."""
    pipeline = emulator.pipeline()
    config = make_config(
        pipeline,
        endpoint_url=proxy.url,
        aws={"sqs": {"role_arn": QUEUE, "role_session_name": "feed-queue"}},
    )
    daemon = spawn_daemon(config)
    put_objects(emulator.client("s3"), pipeline.bucket, {"q.txt": b"queued"})
    daemon.wait_for_event("object.downloaded", timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert daemon.stop() == 0
    assert visible_files(download_folder) == {"q.txt": b"queued"}

    events = proxy.events()
    assert [c["RoleArn"] for c in assume_role_calls(events)] == [QUEUE]
    assert [c["RoleSessionName"] for c in assume_role_calls(events)] == ["feed-queue"]
    assert identities.of(by_service(events, "sqs")) == {assumed(QUEUE, "feed-queue")}
    s3_calls = by_service(events, "s3")
    assert s3_calls
    assert {e.access_key_id() for e in s3_calls} == {HOST_KEY_ID}
    assert identities.of(s3_calls) == {HOST_ARN}


def test_a_route_s_role_is_its_bucket_s_only(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    tmp_path: Path,
    proxy: FaultProxy,
    identities: Identities,
) -> None:
    """``routes[i].aws`` gives the route's bucket its own role; the other bucket and the queue
    keep the top-level role. Each role is assumed once, with its own parameters."""
    pipeline = emulator.pipeline()
    s3 = emulator.client("s3")
    partner_bucket = emulator.unique("partner")
    s3.create_bucket(Bucket=partner_bucket)
    partner_folder = tmp_path / "partner"
    config = make_config(
        pipeline,
        endpoint_url=proxy.url,
        download_folder=None,
        s3_bucket_name=[pipeline.bucket, partner_bucket],
        aws={"role_arn": READER},
        routes=[
            {
                "bucket": partner_bucket,
                "download_folder": str(partner_folder),
                "aws": {"role_arn": PARTNER, "external_id": "partner-ext"},
            },
            {"bucket": pipeline.bucket, "download_folder": str(download_folder)},
        ],
    )
    daemon = spawn_daemon(config)
    put_objects(s3, pipeline.bucket, {"own.txt": b"own"})
    data = b"from the partner"
    put_objects(s3, partner_bucket, {"p/x.txt": data})
    announce(emulator.client("sqs"), pipeline.queue_url, partner_bucket, "p/x.txt", data)
    daemon.wait_for_event("object.downloaded", count=2, timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert daemon.stop() == 0
    assert visible_files(download_folder) == {"own.txt": b"own"}
    assert visible_files(partner_folder) == {"p/x.txt": data}
    assert daemon.problems() == []

    events = proxy.events()
    calls = sorted(assume_role_calls(events), key=lambda c: c["RoleArn"])
    assert [(c["RoleArn"], c.get("ExternalId")) for c in calls] == [
        (PARTNER, "partner-ext"),
        (READER, None),
    ]
    s3_calls = by_service(events, "s3")
    reader = assumed(READER, default_session())
    assert identities.of(on_bucket(s3_calls, partner_bucket)) == {
        assumed(PARTNER, default_session())
    }
    assert identities.of(on_bucket(s3_calls, pipeline.bucket)) == {reader}
    assert identities.of(by_service(events, "sqs")) == {reader}


def test_credentials_refresh_before_they_expire_without_a_restart(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    proxy: FaultProxy,
    identities: Identities,
) -> None:
    """``duration_seconds: 900`` is inside botocore's 15-minute advisory refresh window, so
    each use of the credentials assumes the role again: one process signs its calls with one
    set of keys after another (every set the role's), and keeps downloading throughout."""
    pipeline = emulator.pipeline()
    config = make_config(
        pipeline, endpoint_url=proxy.url, aws={"role_arn": READER, "duration_seconds": 900}
    )
    daemon = spawn_daemon(config)
    put_objects(emulator.client("s3"), pipeline.bucket, {"first.txt": b"1"})
    daemon.wait_for_event("object.downloaded", timeout=30)

    def signing_keys() -> set[str]:
        signed = by_service(proxy.events(), "s3") + by_service(proxy.events(), "sqs")
        return {key for e in signed if (key := e.access_key_id()) is not None}

    wait_until(lambda: len(signing_keys()) >= 4, timeout=30, what="four sets of keys in use")
    put_objects(emulator.client("s3"), pipeline.bucket, {"second.txt": b"2"})
    daemon.wait_for_event("object.downloaded", key="second.txt", timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert daemon.running
    assert len(daemon.events("daemon.ready")) == 1
    assert daemon.stop() == 0
    assert visible_files(download_folder) == {"first.txt": b"1", "second.txt": b"2"}
    assert daemon.problems() == []

    events = proxy.events()
    calls = assume_role_calls(events)
    assert len(calls) >= 4
    assert {c["DurationSeconds"] for c in calls} == {"900"}
    keys = signing_keys()
    assert HOST_KEY_ID not in keys
    assert {identities.arn(key) for key in keys} == {assumed(READER, default_session())}
    gets = by_service(events, "s3", operation="GetObject")
    first_get, second_get = (
        next(e for e in gets if e.path.endswith(name)) for name in ("first.txt", "second.txt")
    )
    assert first_get.access_key_id() != second_get.access_key_id()


# ---- s3sqsd check --------------------------------------------------------------------------


def check_lines(
    tmp_path: Path, config: dict[str, Any], env: dict[str, str | None] | None = None
) -> tuple[int, list[tuple[str, str, str]], str]:
    """Run ``s3sqsd check``: (exit status, each line's (verdict, name, detail), stderr)."""
    path = write_config(tmp_path / "check.yaml", config)
    result = run_cli(["check", "--config", str(path)], env=env, timeout=60)
    lines = []
    for text in result.stdout.splitlines()[:-1]:
        verdict, name, detail = text.split(None, 2)
        lines.append((verdict, name, detail))
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, lines, result.stderr


def test_check_names_the_identity_of_the_queue_and_each_bucket(
    emulator: Emulator, make_config: Callable[..., dict[str, Any]], tmp_path: Path
) -> None:
    """One ``identity`` line per identity, with the ARN STS answers after assuming: the
    top-level role (other buckets), the queue's role, a route's role."""
    pipeline = emulator.pipeline()
    partner_bucket = emulator.unique("partner")
    emulator.client("s3").create_bucket(Bucket=partner_bucket)
    config = make_config(
        pipeline,
        download_folder=None,
        s3_bucket_name=[pipeline.bucket, partner_bucket],
        aws={"role_arn": READER, "sqs": {"role_arn": QUEUE, "role_session_name": "feed-queue"}},
        routes=[
            {
                "bucket": partner_bucket,
                "download_folder": str(tmp_path / "partner"),
                "aws": {"role_arn": PARTNER, "role_session_name": "partner-feed"},
            },
            {"bucket": pipeline.bucket, "download_folder": str(tmp_path / "own")},
        ],
    )
    status, lines, _ = check_lines(tmp_path, config)
    identity = [detail for verdict, name, detail in lines if name == "identity"]
    assert identity == [
        f"other buckets: role {READER}, as {assumed(READER, default_session())}",
        f"queue: role {QUEUE}, as {assumed(QUEUE, 'feed-queue')}",
        f"bucket {partner_bucket}: role {PARTNER}, as {assumed(PARTNER, 'partner-feed')}",
    ]
    assert [v for v, name, _ in lines if name == "identity"] == ["ok"] * 3
    assert status == 0, lines


@pytest.fixture
def iam_enforcing() -> Iterator[EmulatorProcess]:
    """A moto server of its own that checks IAM policies (after the setup made here)."""
    server = EmulatorProcess(plain=True)
    try:
        yield server
    finally:
        server.stop()


def enforce_iam(server: EmulatorProcess) -> None:
    """From now on every call needs an IAM user's keys and a policy allowing it (moto's
    ``INITIAL_NO_AUTH_ACTION_COUNT``, set through its ``/moto-api/reset-auth``)."""
    target = urlsplit(server.endpoint)
    connection = http.client.HTTPConnection(target.netloc, timeout=10)
    try:
        connection.request(
            "POST", "/moto-api/reset-auth", body=b"0", headers={"Content-Type": "text/plain"}
        )
        assert json.loads(connection.getresponse().read())["status"] == "ok"
    finally:
        connection.close()


def test_check_fails_a_role_that_cannot_be_assumed_naming_its_key(
    iam_enforcing: EmulatorProcess, tmp_path: Path
) -> None:
    """The host's IAM user may use S3, SQS and GetCallerIdentity but not ``sts:AssumeRole``:
    moto refuses both roles (AccessDenied), and check prints a FAIL per role that names its
    config key and the role, and exits 1; the host's own identity is still shown."""
    server = iam_enforcing
    pipeline = server.pipeline()
    partner_bucket = server.unique("partner")
    server.client("s3").create_bucket(Bucket=partner_bucket)
    iam = server.client("iam")
    iam.create_user(UserName="feed-host")
    allowed = ["s3:*", "sqs:*", "sts:GetCallerIdentity"]
    iam.put_user_policy(
        UserName="feed-host",
        PolicyName="no-assume-role",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": allowed, "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="feed-host")["AccessKey"]
    enforce_iam(server)
    config = {
        "aws_region": "us-east-1",
        "sqs_queue_url": pipeline.queue_url,
        "endpoint_url": server.endpoint,
        "s3_bucket_name": [pipeline.bucket, partner_bucket],
        "aws": {"sqs": {"role_arn": QUEUE}},
        "routes": [
            {
                "bucket": partner_bucket,
                "download_folder": str(tmp_path / "partner"),
                "aws": {"role_arn": PARTNER},
            },
            {"bucket": pipeline.bucket, "download_folder": str(tmp_path / "own")},
        ],
    }
    env: dict[str, str | None] = {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        "AWS_SESSION_TOKEN": None,
    }
    status, lines, _ = check_lines(tmp_path, config, env)
    identity = [(v, detail) for v, name, detail in lines if name == "identity"]
    host = f"arn:aws:iam::{ACCOUNT}:user/feed-host"
    assert identity[0] == ("ok", f"other buckets: the host's own credentials, as {host}")
    refused = identity[1:]
    assert [v for v, _ in refused] == ["FAIL", "FAIL"]
    assert refused[0][1].startswith(f"queue: cannot assume {QUEUE} (aws.sqs.role_arn): ")
    assert refused[1][1].startswith(
        f"bucket {partner_bucket}: cannot assume {PARTNER} (routes[0].aws.role_arn): "
    )
    assert all("AccessDenied" in detail for _, detail in refused)
    assert status == 1
    assert key["SecretAccessKey"] not in "\n".join(detail for _, _, detail in lines)
