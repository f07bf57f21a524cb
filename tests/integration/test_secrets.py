"""Credentials never reach the daemon's output: recognisable values in AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (the emulator accepts any), ``log_level: debug``,
and every path that writes something unusual: downloads, dead letters, retries, a reload, an
unreachable endpoint, endpoints that refuse the request the way AWS does, a config error, a
kill -9 and restart, a forced exit on a second signal. Checked in stdout, stderr and the
dead-letter queue's message attributes. The assumed role's credentials (every set moto issued,
read from its backend) and the SSE-C key are checked there too, and in an ``on_download``
hook's environment, the metrics and the STATUS= lines. (The journal is the same stdout under
systemd; a journald check needs the system tests.)
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.daemon import (
    DaemonProcess,
    TcpForwarder,
    attribute,
    closed_port,
    put_objects,
    receive_all,
    run_cli,
    s3_notification_body,
    temp_files,
    via_port,
    wait_queue_empty,
    write_config,
)
from tests.support.emulator import Emulator, Pipeline
from tests.support.notify import NotifySocket
from tests.support.sts import assumed_roles

pytestmark = pytest.mark.integration

KEY_ID = "AKIACANARY7Q3ZX9PLMT"
SECRET = "canary-secret-Zp4Kq9Wm2Rt7Yx1Bn6Vc3Lh8Dj5F"
TOKEN = "canary-token-IQoJb3JpZ2luX2VjEDcaCXVzLWVhc3QtMSJHMEUCIQDcanaryXk9TokenTailQ7w3"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": KEY_ID,
    "AWS_SECRET_ACCESS_KEY": SECRET,
    "AWS_SESSION_TOKEN": TOKEN,
}
# Whole values, their recognisable prefixes, and their tails (a value cut or re-wrapped).
NEEDLES = (
    *(KEY_ID, SECRET, TOKEN),
    *("AKIACANARY", "canary-secret", "canary-token"),
    *(SECRET[-20:], TOKEN[-24:], KEY_ID[-10:]),
)
# What a logged request header or presigned URL would look like.
HEADER_SHAPES = re.compile(r"Credential=|X-Amz-Security-Token|x-amz-security-token|Signature=")


def leaks(texts: list[str]) -> list[str]:
    """Every text that carries a credential or a request-signing header, cut for display."""
    return [t[:400] for t in texts if any(n in t for n in NEEDLES) or HEADER_SHAPES.search(t)]


def daemon_output(daemon: DaemonProcess) -> list[str]:
    """Everything the daemon wrote: each stdout line (as parsed, re-serialised) and stderr."""
    lines = [json.dumps(r, ensure_ascii=False) for r in daemon.events()]
    return [*lines, *daemon.non_json, daemon.stderr]


def assert_no_leak(daemon: DaemonProcess) -> None:
    found = leaks(daemon_output(daemon))
    assert found == [], found


def _emulator_address(emulator: Emulator) -> tuple[str, int]:
    target = urlsplit(emulator.endpoint)
    assert target.hostname is not None
    assert target.port is not None
    return target.hostname, target.port


def _dead_letters(emulator: Emulator, dlq_url: str, count: int) -> list[dict[str, Any]]:
    messages = receive_all(emulator.client("sqs"), dlq_url, count=count, timeout=30)
    for message in messages:
        found = leaks([json.dumps(message.get("MessageAttributes", {}))])
        assert found == [], found
    return messages


# ---- a fake AWS that refuses requests the way AWS does ---------------------------------------


class _RefusingHandler(BaseHTTPRequestHandler):
    """S3 GETs: ``denied/...`` AccessDenied, ``badsig/...`` SignatureDoesNotMatch (with the
    AWSAccessKeyId and CanonicalRequest elements S3 adds); every SQS call (POST):
    SignatureDoesNotMatch whose *message* carries the canonical request, headers and session
    token included, as AWS's query-protocol services write it."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _canonical(self, method: str) -> str:
        signed = ("content-type", "host", "x-amz-date", "x-amz-security-token", "x-amz-target")
        headers = "".join(
            f"{name.lower()}:{value}\n"
            for name, value in self.headers.items()
            if name.lower() in signed
        )
        return f"{method}\n{self.path}\n\n{headers}\n{';'.join(signed)}\nUNSIGNED-PAYLOAD"

    def _key_id(self) -> str:
        match = re.search(r"Credential=([^/,]+)/", self.headers.get("Authorization", ""))
        return match.group(1) if match else ""

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-amz-request-id", "FAKE0000")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if "/denied/" in self.path:
            code, message, extra = "AccessDenied", "Access Denied", ""
        elif "/badsig/" in self.path:
            code = "SignatureDoesNotMatch"
            message = (
                "The request signature we calculated does not match the signature you "
                "provided. Check your key and signing method."
            )
            extra = (
                f"<AWSAccessKeyId>{self._key_id()}</AWSAccessKeyId>"
                f"<CanonicalRequest>{self._canonical('GET')}</CanonicalRequest>"
                f"<SignatureProvided>{self.headers.get('Authorization', '')}</SignatureProvided>"
            )
        else:
            code, message, extra = "NoSuchKey", "The specified key does not exist.", ""
        status = 404 if code == "NoSuchKey" else 403
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message>{extra}<RequestId>FAKE0000</RequestId>"
            "<HostId>fake</HostId></Error>"
        )
        self._send(status, body.encode(), "application/xml")

    do_HEAD = do_GET

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        message = (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. Consult the service "
            "documentation for details.\n\nThe Canonical String for this request should have "
            f"been\n'{self._canonical('POST')}'\n\nThe String-to-Sign should have been\n"
            "'AWS4-HMAC-SHA256\n20260301T120000Z\n20260301/us-east-1/sqs/aws4_request\nabc'\n"
        )
        if self.headers.get("X-Amz-Target"):  # SQS's JSON protocol (boto3 >= 1.34)
            body = json.dumps(
                {"__type": "com.amazon.coral.service#SignatureDoesNotMatch", "message": message}
            )
            self._send(
                400,
                body.encode(),
                "application/x-amz-json-1.0",
                x_amzn_query_error="SignatureDoesNotMatch;Sender",
            )
            return
        escaped = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        body = (
            '<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type>'
            f"<Code>SignatureDoesNotMatch</Code><Message>{escaped}</Message></Error>"
            "<RequestId>FAKE0000</RequestId></ErrorResponse>"
        )
        self._send(403, body.encode(), "text/xml")


@pytest.fixture
def refusing_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="refusing-aws", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ---- the tests ------------------------------------------------------------------------------


def _spawn(
    spawn_daemon: Callable[..., DaemonProcess], config: dict[str, Any], **kwargs: Any
) -> DaemonProcess:
    return spawn_daemon({**config, "log_level": "debug"}, env=dict(CREDENTIALS), **kwargs)


def test_busy_run_at_debug_level(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """Downloads, a garbage body, a hostile key, a foreign bucket, a missing object retried
    until dead-lettered, a reload and a stop: nothing of the credentials in the output or in
    the dead-letter attributes."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    sqs = emulator.client("sqs")
    config = make_config(
        pipeline,
        dead_letter_queue_url=pipeline.dlq_url,
        retry={"max_attempts": 2, "base_delay_seconds": 1, "max_delay_seconds": 2},
    )
    daemon = _spawn(spawn_daemon, config)
    daemon.wait_for_event("daemon.ready", timeout=30)
    put_objects(emulator.client("s3"), pipeline.bucket, {"ok/one.txt": b"one", "two": b"2"})
    bad = [
        "garbage { not json",
        s3_notification_body(pipeline.bucket, "..%2F..%2Fescape"),
        s3_notification_body("someone-elses-bucket", "x"),
        s3_notification_body(pipeline.bucket, "never/uploaded.txt"),
    ]
    for body in bad:
        sqs.send_message(QueueUrl=pipeline.queue_url, MessageBody=body)
    daemon.wait_for_event("message.dead_lettered", count=len(bad), timeout=60)
    daemon.wait_for_event("object.downloaded", count=2, timeout=30)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_event("config.reloaded", timeout=30)
    wait_queue_empty(emulator, pipeline.queue_url)
    assert daemon.stop() == 0
    assert daemon.events("message.received"), "debug lines were not written"
    assert daemon.events("message.retry")
    assert_no_leak(daemon)
    reasons = {attribute(m, "s3sqsd.reason") for m in _dead_letters(emulator, pipeline.dlq_url, 4)}
    assert reasons == {"bad_message", "unsafe_key", "bucket_not_allowed", "too_many_attempts"}


PROXY_PASSWORD = "canary-proxy-pass-Hq2Wv8"


@pytest.mark.parametrize("via", ["direct", "proxy-with-password"])
def test_unreachable_endpoint(
    via: str,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
) -> None:
    """Nothing listens at the endpoint, or at the HTTP proxy, whose URL carries a password."""
    pipeline = emulator.pipeline()
    port = closed_port()
    config = make_config(
        pipeline,
        endpoint_url=f"http://127.0.0.1:{port}",
        sqs_queue_url=via_port(pipeline.queue_url, port),
    )
    env: dict[str, str] = {}
    if via == "proxy-with-password":
        proxy = f"http://s3sqsd:{PROXY_PASSWORD}@127.0.0.1:{closed_port()}"
        env = {"HTTP_PROXY": proxy, "http_proxy": proxy, "NO_PROXY": "", "no_proxy": ""}
    daemon = spawn_daemon({**config, "log_level": "debug"}, env={**CREDENTIALS, **env})
    failed = daemon.wait_for_event("sqs.receive.failed", timeout=30)
    assert "connect" in failed["error"]
    time.sleep(2.0)
    assert daemon.stop() == 0
    assert_no_leak(daemon)
    assert [t for t in daemon_output(daemon) if PROXY_PASSWORD in t] == []


def test_queue_refusing_the_signature(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    refusing_endpoint: str,
) -> None:
    """SQS answers SignatureDoesNotMatch (a wrong secret key, say) and, as AWS does, quotes
    the canonical request in the error message: the daemon logs the failure without it."""
    pipeline = emulator.pipeline()
    port = urlsplit(refusing_endpoint).port
    assert port is not None
    config = make_config(
        pipeline,
        endpoint_url=refusing_endpoint,
        sqs_queue_url=via_port(pipeline.queue_url, port),
    )
    daemon = _spawn(spawn_daemon, config)
    failed = daemon.wait_for_event("sqs.receive.failed", timeout=30)
    assert failed["code"] == "SignatureDoesNotMatch"
    time.sleep(1.0)
    assert daemon.stop() == 0
    assert_no_leak(daemon)


def test_objects_refused_by_s3(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    refusing_endpoint: str,
) -> None:
    """S3 answers AccessDenied (dead-lettered at once) and SignatureDoesNotMatch with the
    key id and canonical request in extra XML elements (retried, then dead-lettered)."""
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    sqs = emulator.client("sqs")
    config = make_config(
        pipeline,
        s3_endpoint_url=refusing_endpoint,
        dead_letter_queue_url=pipeline.dlq_url,
        retry={"max_attempts": 2, "base_delay_seconds": 1, "max_delay_seconds": 2},
    )
    for key in ("denied/report.csv", "badsig/report.csv"):
        sqs.send_message(
            QueueUrl=pipeline.queue_url, MessageBody=s3_notification_body(pipeline.bucket, key)
        )
    daemon = _spawn(spawn_daemon, config)
    daemon.wait_for_event("message.dead_lettered", count=2, timeout=60)
    assert daemon.stop() == 0
    assert_no_leak(daemon)
    dead = _dead_letters(emulator, pipeline.dlq_url, 2)
    reasons = sorted(attribute(m, "s3sqsd.reason") or "" for m in dead)
    assert reasons == ["object_inaccessible", "too_many_attempts"]
    assert any("SignatureDoesNotMatch" in (attribute(m, "s3sqsd.error") or "") for m in dead)


@pytest.mark.parametrize("case", ["invalid-value", "credentials-in-the-file"])
def test_config_errors(
    case: str,
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    """Exit 78 on a bad config, from the daemon and from check-config; with the credentials
    in the environment, and with an operator who pasted them into the file (refused as
    unknown keys, their values not quoted back)."""
    config = make_config(emulator.pipeline())
    if case == "invalid-value":
        config["workers"] = "many"
    else:
        config["aws_access_key_id"] = KEY_ID
        config["aws_secret_access_key"] = SECRET
        config["aws_session_token"] = TOKEN
    daemon = _spawn(spawn_daemon, config)
    assert daemon.wait_exit(timeout=30) == 78
    assert daemon.events("config.invalid")
    assert_no_leak(daemon)
    path = write_config(tmp_path / "check.yaml", {**config, "log_level": "debug"})
    result = run_cli(["check-config", "--config", str(path)], env=dict(CREDENTIALS))
    assert result.returncode == 78
    assert leaks([result.stdout, result.stderr]) == []


def _slow_pipeline(
    emulator: Emulator, make_config: Callable[..., dict[str, Any]], forwarder: TcpForwarder
) -> tuple[Pipeline, dict[str, Any]]:
    pipeline = emulator.pipeline()
    config = make_config(pipeline, s3_endpoint_url=forwarder.url, shutdown_timeout_seconds=30)
    put_objects(emulator.client("s3"), pipeline.bucket, {"slow/big.bin": os.urandom(3 << 20)})
    return pipeline, config


def test_kill_9_and_restart(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    """SIGKILL in the middle of a download (a temp file is left), then a restart that sweeps
    it and finishes the download: neither run says anything about the credentials."""
    with TcpForwarder(_emulator_address(emulator), rate=512 * 1024) as forwarder:
        pipeline, config = _slow_pipeline(emulator, make_config, forwarder)
        first = _spawn(spawn_daemon, config)
        first.wait_for(lambda: temp_files(download_folder), timeout=30, what="a temp file")
        first.kill9()
        assert temp_files(download_folder)
        forwarder.rate = None
        second = _spawn(spawn_daemon, config)
        swept = second.wait_for_event("temp.swept", timeout=30)
        assert int(swept["count"]) >= 1
        second.wait_for_event("object.downloaded", key="slow/big.bin", timeout=60)
        wait_queue_empty(emulator, pipeline.queue_url)
        assert second.stop() == 0
    assert_no_leak(first)
    assert_no_leak(second)


def test_forced_exit_on_a_second_signal(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
) -> None:
    with TcpForwarder(_emulator_address(emulator), rate=512 * 1024) as forwarder:
        _, config = _slow_pipeline(emulator, make_config, forwarder)
        daemon = _spawn(spawn_daemon, config)
        daemon.wait_for(lambda: temp_files(download_folder), timeout=30, what="a temp file")
        daemon.terminate()
        daemon.wait_for_event("daemon.stopping", timeout=10)
        daemon.terminate()
        assert daemon.wait_exit(timeout=10) == 1
    assert daemon.events("daemon.forced_exit")
    assert_no_leak(daemon)


# ---- assumed-role credentials and the SSE-C key ------------------------------------------------

SSE_C_KEY = b"canary-ssec-Zp4Kq9Wm2Rt7Yx1Bn6Vc"
ROLE_ARN = "arn:aws:iam::123456789012:role/s3sqsd-canary"


def _scrape(url: str) -> str:
    target = urlsplit(url)
    connection = http.client.HTTPConnection(target.netloc, timeout=5)
    try:
        connection.request("GET", target.path)
        return connection.getresponse().read().decode()
    finally:
        connection.close()


def test_assumed_role_credentials_and_the_sse_c_key_never_leak(
    emulator: Emulator,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    notify_socket: NotifySocket,
    download_folder: Path,
    tmp_path: Path,
) -> None:
    """A role refreshed on every use (``duration_seconds: 900``: dozens of secret keys and
    session tokens) and an SSE-C key sent on every GET; debug logs, downloads with an
    ``on_download`` hook, a failing download dead-lettered, metrics and STATUS=. No secret
    key, session token or access key id moto issued for the role, no form of the SSE-C key
    (raw, base64, hex) and none of the host's credentials appear in the output, the hook's
    environment, the metrics, the STATUS= lines or the dead letters."""
    assert len(SSE_C_KEY) == 32
    pipeline = emulator.pipeline()
    assert pipeline.dlq_url is not None
    key_path = tmp_path / "sse-c.key"
    key_path.write_bytes(SSE_C_KEY)
    key_path.chmod(0o400)
    hook_env = tmp_path / "hook-env.txt"
    session = f"canary-{os.getpid()}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(
        pipeline,
        dead_letter_queue_url=pipeline.dlq_url,
        retry={"max_attempts": 2, "base_delay_seconds": 1, "max_delay_seconds": 2},
        aws={"role_arn": ROLE_ARN, "role_session_name": session, "duration_seconds": 900},
        sse_customer_key_file=str(key_path),
        on_download={"command": ["/bin/sh", "-c", f"env >> {hook_env}"], "timeout_seconds": 10},
        metrics={"listen": f"127.0.0.1:{port}"},
    )
    daemon = _spawn(spawn_daemon, config, notify=notify_socket)
    daemon.wait_for_event("daemon.ready", timeout=30)
    put_objects(emulator.client("s3"), pipeline.bucket, {"one.txt": b"one", "d/two": b"two"})
    emulator.client("sqs").send_message(
        QueueUrl=pipeline.queue_url,
        MessageBody=s3_notification_body(pipeline.bucket, "never/uploaded.txt"),
    )
    daemon.wait_for_event("object.downloaded", count=2, timeout=30)
    daemon.wait_for_event("message.dead_lettered", timeout=60)
    wait_queue_empty(emulator, pipeline.queue_url)
    metrics = _scrape(f"http://127.0.0.1:{port}/metrics")
    assert "s3sqsd_objects_downloaded_total 2.0" in metrics
    assert daemon.stop() == 0
    assert daemon.events("message.received"), "debug lines were not written"

    issued = [r for r in assumed_roles() if r.session_name == session]
    assert len(issued) >= 3, "the role was not refreshed"
    secrets = {
        "sse-c raw": SSE_C_KEY.decode(),
        "sse-c base64": base64.b64encode(SSE_C_KEY).decode(),
        "sse-c hex": SSE_C_KEY.hex(),
        "sse-c HEX": SSE_C_KEY.hex().upper(),
    }
    for n, role in enumerate(issued):
        secrets[f"secret key {n}"] = role.secret_access_key
        secrets[f"session token {n}"] = role.session_token
        secrets[f"session token {n} tail"] = role.session_token[-24:]
        secrets[f"access key id {n}"] = role.access_key_id
    hook_environment = hook_env.read_text()
    assert "S3SQSD_" in hook_environment, "the hook did not run"
    dead = _dead_letters(emulator, pipeline.dlq_url, 1)
    places = {
        "output": "\n".join(daemon_output(daemon)),
        "hook environment": hook_environment,
        "metrics": metrics,
        "STATUS=": "\n".join(notify_socket.messages()),
        "dead letters": json.dumps(dead),
    }
    assert notify_socket.values("STATUS")
    found = [
        f"{what} in {where}"
        for where, text in places.items()
        for what, secret in secrets.items()
        if secret in text
    ]
    assert found == []
    assert [where for where, text in places.items() if leaks([text])] == []
