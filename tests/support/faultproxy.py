"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1, between s3sqsd (or any boto3 client) and the
emulator.

Point a client's ``endpoint_url`` at ``FaultProxy.url``. Each request is parsed far enough to
name its AWS operation:

- the service comes from the SigV4 credential scope (``.../us-east-1/sqs/aws4_request``), with
  the request's shape as a fallback;
- SQS: the ``X-Amz-Target`` header (``AmazonSQS.ReceiveMessage``, JSON protocol, botocore >=
  1.31) or ``Action=`` in the form body (query protocol, Debian bookworm's botocore 1.29);
- S3: method + path (+ sub-resource): ``GET /bucket/key`` is GetObject, ``HEAD`` HeadObject,
  ``PUT`` PutObject, ``GET /bucket`` ListObjects, and so on.

``Rule`` objects then decide what happens to matching requests, by probability or for the next
N matches: answer with an AWS-shaped 500/503 error in the operation's protocol (XML for S3 and
query SQS, JSON for JSON SQS) without forwarding, forward and reset the connection before any
response byte (the request took effect, its answer is lost), reset it before forwarding, reset
it in the middle of the response body, end the body early below its Content-Length, flip one
byte of the body, or add latency. Everything else is relayed unchanged.

HTTP handling, fitted to what the emulator (werkzeug) sends and clients send: requests are
framed by Content-Length or chunked transfer encoding; ``Expect: 100-continue`` is answered by
the proxy itself; upstream responses are framed by Content-Length, chunked (re-framed with a
Content-Length) or connection close. werkzeug answers every request with ``Connection: close``;
the proxy drops that header and keeps the client's connection alive (as AWS does), opening one
upstream connection per request. Responses to HEAD, 1xx, 204 and 304 have no body.

It is also a forward proxy for that one upstream, as a client's ``proxies`` (botocore's
``Config(proxies=...)``, s3sqsd's ``aws.proxy_url``) uses it: a request in absolute form
(``GET http://127.0.0.1:PORT/bucket/key``) is relayed in origin form, and ``CONNECT host:port``
opens a tunnel (an ``https://`` endpoint behind the proxy); either is refused with 502 for any
other authority than the upstream's, so nothing leaves 127.0.0.1. ``Proxy-Authorization`` is
taken off the forwarded request and kept on its ``Event``, with the authority asked for.

``stop_listening()`` / ``start_listening()`` take the endpoint away and bring it back on the
same port (connections are refused meanwhile; open ones are reset), for outage tests.

Every decision is counted (``counts``, ``faults``) so a test can prove a fault really happened,
and every request is recorded (``events``: its operation, its headers and, but for S3, its body)
so a test can prove what a client sent and with which access key it signed.
Random choices come from one seeded ``random.Random``. Bounded: one thread per connection,
sockets with timeouts, and ``close()`` ends everything.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

# Fault names.
INTERNAL_ERROR = "internal_error"  # HTTP 500 InternalError, not forwarded
SLOW_DOWN = "slow_down"  # HTTP 503 SlowDown (S3) / ServiceUnavailable (SQS), not forwarded
RESET_BEFORE_REQUEST = "reset_before_request"  # RST before forwarding: nothing happened
RESET_BEFORE_RESPONSE = "reset_before_response"  # forwarded, then RST: the answer is lost
RESET_MID_BODY = "reset_mid_body"  # headers and part of the body, then RST
TRUNCATE_BODY = "truncate_body"  # headers and part of the body, then a clean close (FIN)
FLIP_BYTE = "flip_byte"  # one body byte XORed with ``mask``; length unchanged
LATENCY = "latency"  # wait ``delay`` seconds, then relay unchanged

FAULTS = (
    INTERNAL_ERROR,
    SLOW_DOWN,
    RESET_BEFORE_REQUEST,
    RESET_BEFORE_RESPONSE,
    RESET_MID_BODY,
    TRUNCATE_BODY,
    FLIP_BYTE,
    LATENCY,
)
BODY_FAULTS = frozenset({RESET_MID_BODY, TRUNCATE_BODY, FLIP_BYTE})
HARD_FAULTS = tuple(f for f in FAULTS if f != LATENCY)  # every fault but latency: failures

MAX_HEADER_BYTES = 64 * 1024
MAX_BUFFERED_BODY = 64 * 1024 * 1024  # chunked or close-delimited bodies are buffered
CHUNK = 64 * 1024
CLIENT_IDLE_TIMEOUT = 120.0  # a keep-alive client connection idle this long is closed
UPSTREAM_TIMEOUT = 120.0  # longer than any long poll the tests use

_SCOPE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/,\s]+/([a-z0-9-]+)/aws4_request")
_KEY_ID = re.compile(r"Credential=([^/,\s]+)/")


class _Closed(Exception):
    """The peer closed the connection (or it broke) where a message was expected."""


@dataclass
class Rule:
    """What to do to requests of ``operation`` (``"*"``: any) of ``service`` (None: any).

    ``fault`` is one name or several (one is drawn per faulted request). A request is faulted
    with ``probability``; ``count`` (None: unlimited) caps how many times the rule fires, so
    ``count=3, probability=1`` means "the next 3 requests". ``match`` restricts the rule to
    requests whose decoded path (S3) or body (SQS) contains it, e.g. one object's key.
    ``delay`` is the latency fault's wait (and is also waited before any other fault).
    ``code`` overrides the error code of the error faults; ``mask`` is what a byte flip XORs.
    """

    operation: str
    fault: str | Sequence[str]
    probability: float = 1.0
    count: int | None = None
    service: str | None = None
    match: str | None = None
    delay: float = 0.0
    code: str | None = None
    mask: int = 0xFF
    fired: int = 0

    def __post_init__(self) -> None:
        names = (self.fault,) if isinstance(self.fault, str) else tuple(self.fault)
        unknown = [name for name in names if name not in FAULTS]
        if unknown or not names:
            raise ValueError(f"unknown fault(s) {unknown or names!r}; known: {FAULTS}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if not 1 <= self.mask <= 0xFF:
            raise ValueError("mask must be within [1, 255]")

    @property
    def faults(self) -> tuple[str, ...]:
        return (self.fault,) if isinstance(self.fault, str) else tuple(self.fault)

    @property
    def exhausted(self) -> bool:
        return self.count is not None and self.fired >= self.count


@dataclass
class Request:
    """One parsed client request."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    service: str = ""
    operation: str = ""
    protocol: str = ""  # "rest-xml" (S3), "json" or "query" (SQS)
    path: str = ""  # decoded path, for ``Rule.match``
    proxied: str | None = None  # the authority of an absolute-form or CONNECT request
    proxy_authorization: str | None = None  # its Proxy-Authorization header

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


@dataclass
class Decision:
    fault: str | None
    rule: Rule | None
    delay: float = 0.0
    fraction: float = 0.5  # where in the body a body fault strikes, as a fraction of it


@dataclass
class Event:
    """One request as the proxy saw it (kept for the last ``history`` requests)."""

    at: float  # time.monotonic(), comparable with the harness's record times
    service: str
    operation: str
    path: str
    fault: str | None
    status: int | None = None
    # The request's headers (names lower-cased) and, for a service other than S3, its body
    # (an SQS or STS form or JSON document): what a test checks was sent.
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    proxied: str | None = None  # forward proxy use: the authority asked for (None: not)
    proxy_authorization: str | None = None

    def access_key_id(self) -> str | None:
        """The access key id that signed the request (from its SigV4 ``Credential=``)."""
        match = _KEY_ID.search(self.headers.get("authorization", ""))
        return match.group(1) if match else None


@dataclass
class _Stats:
    counts: Counter[str] = field(default_factory=Counter)
    faults: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)


class _Conn:
    """A socket with a read buffer: lines, exact reads, and abrupt resets."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(CHUNK)
        except (OSError, TimeoutError):
            return False
        if not data:
            return False
        self.buffer += data
        return True

    def readline(self, *, limit: int = MAX_HEADER_BYTES) -> bytes:
        while True:
            index = self.buffer.find(b"\n")
            if index >= 0:
                line = bytes(self.buffer[: index + 1])
                del self.buffer[: index + 1]
                return line
            if len(self.buffer) > limit or not self._fill():
                raise _Closed

    def read_exact(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not self._fill():
                raise _Closed
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def read_some(self, most: int) -> bytes:
        """Up to ``most`` bytes (b"" at end of stream)."""
        if not self.buffer and not self._fill():
            return b""
        data = bytes(self.buffer[:most])
        del self.buffer[:most]
        return data

    def sendall(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (OSError, TimeoutError) as exc:
            raise _Closed from exc

    def reset(self) -> None:
        """Close with RST (SO_LINGER 0) rather than FIN.

        ``shutdown(SHUT_RD)`` first: a close() alone from another thread does not wake a
        thread blocked in recv() on this socket, and the kernel keeps the connection open
        (no RST) until that recv returns, which would leave the peer with a silent,
        black-holed connection instead of a reset one.
        """
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RD)
        with contextlib.suppress(OSError):
            self.sock.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            self.sock.close()


def _read_headers(conn: _Conn) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    total = 0
    while True:
        line = conn.readline()
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise _Closed
        if line in (b"\r\n", b"\n"):
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))


def _get(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers:
        if key.lower() == lowered:
            return value
    return None


def _without(headers: Iterable[tuple[str, str]], *names: str) -> list[tuple[str, str]]:
    drop = {name.lower() for name in names}
    return [(k, v) for k, v in headers if k.lower() not in drop]


def _read_chunked(conn: _Conn) -> bytes:
    """Decode a chunked body (trailers dropped); at most MAX_BUFFERED_BODY bytes."""
    body = bytearray()
    while True:
        size_line = conn.readline().split(b";", 1)[0].strip()
        try:
            size = int(size_line, 16)
        except ValueError as exc:
            raise _Closed from exc
        if size == 0:
            while conn.readline() not in (b"\r\n", b"\n"):
                pass
            return bytes(body)
        body += conn.read_exact(size)
        conn.read_exact(2)  # CRLF after each chunk
        if len(body) > MAX_BUFFERED_BODY:
            raise _Closed


def _serialise(start: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [start, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


# ---- naming the operation ---------------------------------------------------------------------

_S3_BUCKET_SUBRESOURCES = {
    "notification": "BucketNotificationConfiguration",
    "versioning": "BucketVersioning",
    "policy": "BucketPolicy",
    "acl": "BucketAcl",
    "location": "BucketLocation",
    "tagging": "BucketTagging",
    "lifecycle": "BucketLifecycleConfiguration",
    "cors": "BucketCors",
    "encryption": "BucketEncryption",
}


def s3_operation(method: str, target: str) -> tuple[str, str]:
    """(operation, decoded path) for an S3 path-style request."""
    parts = urlsplit(target)
    path = unquote(parts.path)
    query = parse_qs(parts.query, keep_blank_values=True)
    segments = path.lstrip("/").split("/", 1)
    bucket = segments[0]
    key = segments[1] if len(segments) > 1 else ""
    if not bucket:
        return ("ListBuckets" if method == "GET" else f"{method}Service"), path
    if not key:
        for name, noun in _S3_BUCKET_SUBRESOURCES.items():
            if name in query:
                verb = {"GET": "Get", "PUT": "Put", "DELETE": "Delete"}.get(method, method)
                return f"{verb}{noun}", path
        if method == "GET":
            if "versions" in query:
                return "ListObjectVersions", path
            if "uploads" in query:
                return "ListMultipartUploads", path
            return ("ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"), path
        if method == "POST" and "delete" in query:
            return "DeleteObjects", path
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
            method, f"{method}Bucket"
        ), path
    if "uploadId" in query:
        if method == "PUT":
            return "UploadPart", path
        if method == "POST":
            return "CompleteMultipartUpload", path
        if method == "DELETE":
            return "AbortMultipartUpload", path
        return "ListParts", path
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload", path
    if "tagging" in query:
        return {"GET": "GetObjectTagging", "PUT": "PutObjectTagging"}.get(
            method, "DeleteObjectTagging"
        ), path
    return {
        "GET": "GetObject",
        "HEAD": "HeadObject",
        "PUT": "PutObject",
        "DELETE": "DeleteObject",
    }.get(method, f"{method}Object"), path


def identify(request: Request) -> None:
    """Fill in service, operation, protocol and path."""
    auth = request.header("Authorization") or ""
    match = _SCOPE.search(auth)
    service = match.group(1) if match else ""
    target = request.header("X-Amz-Target")
    content_type = (request.header("Content-Type") or "").lower()
    if not service:
        service = "sqs" if target is not None or b"Action=" in request.body[:4096] else "s3"
    request.service = service
    if service == "s3":
        operation, path = s3_operation(request.method, request.target)
        if request.method == "PUT" and request.header("x-amz-copy-source") is not None:
            operation = "CopyObject"
        request.operation, request.path, request.protocol = operation, path, "rest-xml"
        return
    if target is not None:
        request.operation = target.rsplit(".", 1)[-1]
        request.protocol = "json"
    elif "x-www-form-urlencoded" in content_type or b"Action=" in request.body[:4096]:
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        request.operation = form.get("Action", ["Unknown"])[0]
        request.protocol = "query"
    else:
        request.operation = "Unknown"
        request.protocol = "json" if "json" in content_type else "query"
    request.path = request.body.decode("utf-8", "replace")


# ---- AWS-shaped error responses -----------------------------------------------------------------

_INTERNAL_TEXT = "We encountered an internal error. Please try again."
_DEFAULT_CODES = {
    ("s3", INTERNAL_ERROR): (500, "InternalError", _INTERNAL_TEXT),
    ("s3", SLOW_DOWN): (503, "SlowDown", "Please reduce your request rate."),
    ("sqs", INTERNAL_ERROR): (500, "InternalError", _INTERNAL_TEXT),
    ("sqs", SLOW_DOWN): (503, "ServiceUnavailable", "The service is unavailable. Retry later."),
}
_REASONS = {500: "Internal Server Error", 503: "Service Unavailable"}


def error_response(request: Request, fault: str, code: str | None = None) -> bytes:
    """A complete HTTP response for an error fault, in the request's protocol."""
    status, default_code, text = _DEFAULT_CODES[("s3" if request.service == "s3" else "sqs", fault)]
    code = code or default_code
    request_id = uuid.uuid4().hex
    headers: list[tuple[str, str]] = [("x-amzn-requestid", request_id)]
    if request.protocol == "json":
        body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": text}).encode()
        headers += [
            ("Content-Type", "application/x-amz-json-1.0"),
            ("x-amzn-query-error", f"{code};Receiver"),
        ]
    elif request.protocol == "query":
        body = (
            '<?xml version="1.0"?><ErrorResponse xmlns="http://queue.amazonaws.com/doc/'
            f'2012-11-05/"><Error><Type>Receiver</Type><Code>{code}</Code><Message>{text}'
            f"</Message><Detail/></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers.append(("Content-Type", "text/xml"))
    else:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>'
            f"{code}</Code><Message>{text}</Message><RequestId>{request_id}</RequestId>"
            "<HostId>faultproxy</HostId></Error>"
        ).encode()
        headers += [("Content-Type", "application/xml"), ("x-amz-request-id", request_id)]
    headers.append(("Content-Length", str(len(body))))
    return _serialise(f"HTTP/1.1 {status} {_REASONS[status]}", headers) + body


# ---- the proxy ---------------------------------------------------------------------------------


class FaultProxy:
    """The proxy: ``FaultProxy(("127.0.0.1", emulator_port), seed=1)``; use as a context."""

    def __init__(
        self,
        target: tuple[str, int],
        *,
        seed: int | None = 0,
        listen_port: int = 0,
        history: int = 10_000,
    ) -> None:
        self.target = target
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._stats = _Stats()
        self._events: list[Event] = []
        self._history = history
        self._stop = threading.Event()
        self._conns: set[_Conn] = set()
        self._threads: set[threading.Thread] = set()
        self._server: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self.port = listen_port
        self.connections = 0  # client connections accepted
        self.start_listening()
        self.url = f"http://127.0.0.1:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------

    def start_listening(self) -> None:
        """Listen (again) on ``self.port`` (0 the first time: the OS picks)."""
        if self._server is not None:
            return
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(128)
        server.settimeout(0.2)
        self.port = int(server.getsockname()[1])
        self._server = server
        stop = threading.Event()
        self._accept_stop = stop
        self._accepter = threading.Thread(
            target=self._accept, args=(server, stop), name="faultproxy-accept", daemon=True
        )
        self._accepter.start()

    def stop_listening(self) -> None:
        """Refuse new connections and reset the open ones (an endpoint outage)."""
        server, self._server = self._server, None
        if server is None:
            return
        self._accept_stop.set()
        if self._accepter is not None:
            self._accepter.join(timeout=2)
        server.close()
        self.drop_connections()

    def drop_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.reset()

    def close(self) -> None:
        self._stop.set()
        self.stop_listening()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout=2)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rules and figures ------------------------------------------------------------------

    def add_rule(self, rule: Rule | None = None, /, **fields: Any) -> Rule:
        """Add ``rule`` (or ``Rule(**fields)``); rules are tried in the order added."""
        if rule is None:
            rule = Rule(**fields)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    @property
    def counts(self) -> Counter[str]:
        """Requests seen per operation."""
        with self._lock:
            return Counter(self._stats.counts)

    @property
    def faults(self) -> Counter[tuple[str, str]]:
        """Faults applied, per (operation, fault)."""
        with self._lock:
            return Counter(self._stats.faults)

    @property
    def skipped(self) -> Counter[tuple[str, str]]:
        """Body faults drawn for a response with no body to spoil (e.g. an empty object)."""
        with self._lock:
            return Counter(self._stats.skipped)

    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)

    def _record(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
            if len(self._events) > self._history:
                del self._events[: len(self._events) - self._history]

    def _decide(self, request: Request) -> Decision:
        with self._lock:
            self._stats.counts[request.operation] += 1
            for rule in self._rules:
                if rule.exhausted:
                    continue
                if rule.service is not None and rule.service != request.service:
                    continue
                if rule.operation not in ("*", request.operation):
                    continue
                if rule.match is not None and rule.match not in request.path:
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                rule.fired += 1
                fault = self._rng.choice(rule.faults)
                self._stats.faults[(request.operation, fault)] += 1
                return Decision(fault, rule, rule.delay, self._rng.uniform(0.05, 0.95))
        return Decision(None, None)

    def _skip(self, request: Request, fault: str) -> None:
        with self._lock:
            self._stats.skipped[(request.operation, fault)] += 1

    # -- serving ----------------------------------------------------------------------------

    def _accept(self, server: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set() and not self._stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(
                target=self._serve, args=(client,), name="faultproxy-conn", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
                self.connections += 1
            thread.start()

    def _serve(self, client_sock: socket.socket) -> None:
        client_sock.settimeout(CLIENT_IDLE_TIMEOUT)
        conn = _Conn(client_sock)
        with self._lock:
            self._conns.add(conn)
        try:
            while not self._stop.is_set():
                try:
                    keep = self._one_exchange(conn)
                except _Closed:
                    keep = False
                if not keep:
                    break
        finally:
            conn.close()
            with self._lock:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())

    def _read_request(self, conn: _Conn) -> Request | None:
        line = b""
        while not line.strip():  # tolerate stray CRLFs between requests
            try:
                line = conn.readline()
            except _Closed:
                return None
        try:
            method, target, version = line.decode("latin-1").split()
        except ValueError as exc:
            raise _Closed from exc
        headers = _read_headers(conn)
        proxied, proxy_authorization = None, _get(headers, "Proxy-Authorization")
        if method == "CONNECT":
            proxied = target
        elif target.startswith(("http://", "https://")):  # absolute form: used as a proxy
            parts = urlsplit(target)
            proxied = parts.netloc
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if proxied is not None:
            headers = _without(headers, "Proxy-Authorization", "Proxy-Connection")
        if (_get(headers, "Expect") or "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            headers = _without(headers, "Expect")
        if "chunked" in (_get(headers, "Transfer-Encoding") or "").lower():
            body = _read_chunked(conn)
            headers = _without(headers, "Transfer-Encoding")
            headers.append(("Content-Length", str(len(body))))
        else:
            body = conn.read_exact(int(_get(headers, "Content-Length") or "0"))
        request = Request(method, target, version, headers, body)
        request.proxied, request.proxy_authorization = proxied, proxy_authorization
        if method != "CONNECT":
            identify(request)
        return request

    def _one_exchange(self, client: _Conn) -> bool:
        """Serve one request; True to keep the client connection for another."""
        request = self._read_request(client)
        if request is None:
            return False
        if request.proxied is not None and request.proxied != f"{self.target[0]}:{self.target[1]}":
            self._record(self._event(request, None, status=502))
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return False
        if request.method == "CONNECT":
            self._tunnel(client, request)
            return False
        decision = self._decide(request)
        event = self._event(request, decision.fault)
        self._record(event)
        if decision.delay > 0:
            self._stop.wait(decision.delay)
        fault = decision.fault
        if fault in (INTERNAL_ERROR, SLOW_DOWN):
            assert decision.rule is not None
            response = error_response(request, fault, decision.rule.code)
            event.status = int(response.split(b" ", 2)[1])
            client.sendall(response)
            return True
        if fault == RESET_BEFORE_REQUEST:
            client.reset()
            return False
        client_wants_close = (request.header("Connection") or "").lower() == "close"
        upstream = self._connect()
        if upstream is None:
            client.reset()
            return False
        try:
            headers = [*_without(request.headers, "Connection"), ("Connection", "close")]
            upstream.sendall(
                _serialise(f"{request.method} {request.target} {request.version}", headers)
                + request.body
            )
            status, reason, resp_headers = self._read_response_head(upstream)
            event.status = status
            if fault == RESET_BEFORE_RESPONSE:
                client.reset()
                return False
            return (
                self._relay_response(
                    request, decision, client, upstream, status, reason, resp_headers
                )
                and not client_wants_close
            )
        finally:
            upstream.close()
            with self._lock:
                self._conns.discard(upstream)

    @staticmethod
    def _event(request: Request, fault: str | None, status: int | None = None) -> Event:
        operation = request.operation or request.method
        path = request.path if request.method != "CONNECT" else request.target
        return Event(
            time.monotonic(),
            request.service,
            operation,
            path[:200],
            fault,
            status=status,
            proxied=request.proxied,
            proxy_authorization=request.proxy_authorization,
            headers={name.lower(): value for name, value in request.headers},
            body=b"" if request.service == "s3" else request.body,
        )

    def _tunnel(self, client: _Conn, request: Request) -> None:
        """``CONNECT``: relay bytes both ways until either side closes (no faults inside)."""
        upstream = self._connect()
        event = self._event(request, None, status=200 if upstream else 502)
        self._record(event)
        if upstream is None:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            return
        try:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if client.buffer:
                upstream.sendall(bytes(client.buffer))
                client.buffer.clear()
            back = threading.Thread(
                target=_splice, args=(upstream, client), name="faultproxy-tunnel", daemon=True
            )
            back.start()
            _splice(client, upstream)
            back.join(timeout=UPSTREAM_TIMEOUT)
        finally:
            upstream.close()
            with self._lock:
                self._conns.discard(upstream)

    def _connect(self) -> _Conn | None:
        try:
            sock = socket.create_connection(self.target, timeout=5)
        except OSError:
            return None
        sock.settimeout(UPSTREAM_TIMEOUT)
        conn = _Conn(sock)
        with self._lock:
            self._conns.add(conn)
        return conn

    @staticmethod
    def _read_response_head(upstream: _Conn) -> tuple[int, str, list[tuple[str, str]]]:
        while True:
            line = upstream.readline().decode("latin-1").rstrip("\r\n")
            parts = line.split(" ", 2)
            try:
                status = int(parts[1])
            except (IndexError, ValueError) as exc:
                raise _Closed from exc
            reason = parts[2] if len(parts) > 2 else ""
            headers = _read_headers(upstream)
            if 100 <= status < 200:
                continue  # the proxy answered Expect itself; interim responses are dropped
            return status, reason, headers

    def _relay_response(
        self,
        request: Request,
        decision: Decision,
        client: _Conn,
        upstream: _Conn,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
    ) -> bool:
        fault = decision.fault
        no_body = request.method == "HEAD" or status in (204, 304)
        headers = _without(headers, "Connection", "Keep-Alive")
        length_text = _get(headers, "Content-Length")
        chunked = "chunked" in (_get(headers, "Transfer-Encoding") or "").lower()
        keep_alive = True
        if no_body:
            length = 0
            buffered: bytes | None = b""
        elif chunked:
            buffered = _read_chunked(upstream)
            length = len(buffered)
            headers = [*_without(headers, "Transfer-Encoding", "Content-Length")]
            headers.append(("Content-Length", str(length)))
        elif length_text is not None:
            length = int(length_text)
            buffered = None
        else:  # delimited by the connection's end: buffer it, then frame it
            data = bytearray()
            while chunk := upstream.read_some(CHUNK):
                data += chunk
                if len(data) > MAX_BUFFERED_BODY:
                    raise _Closed
            buffered = bytes(data)
            length = len(buffered)
            headers.append(("Content-Length", str(length)))
        head = _serialise(f"HTTP/1.1 {status} {reason}", headers)

        if fault in BODY_FAULTS and (no_body or length == 0):
            self._skip(request, fault)
            fault = None
        if fault in (RESET_MID_BODY, TRUNCATE_BODY):
            cut = min(length - 1, max(0, int(length * decision.fraction)))
        else:
            cut = length
        flip_at = -1
        if fault == FLIP_BYTE:
            flip_at = min(length - 1, int(length * decision.fraction))

        client.sendall(head)
        sent = 0
        while sent < cut:
            if buffered is not None:
                piece = buffered[sent : min(cut, sent + CHUNK)]
            else:
                piece = upstream.read_some(min(CHUNK, cut - sent))
                if not piece:  # upstream ended early: pass the short body on and close
                    keep_alive = False
                    break
            if sent <= flip_at < sent + len(piece):
                mutable = bytearray(piece)
                assert decision.rule is not None
                mutable[flip_at - sent] ^= decision.rule.mask
                piece = bytes(mutable)
            client.sendall(piece)
            sent += len(piece)
        if fault == RESET_MID_BODY:
            time.sleep(0.01)  # let the bytes sent so far leave before the RST
            client.reset()
            return False
        if fault == TRUNCATE_BODY:
            client.close()
            return False
        return keep_alive


def _splice(src: _Conn, dst: _Conn) -> None:
    """Copy ``src`` to ``dst`` until ``src`` ends, then end ``dst``'s sending side."""
    try:
        while chunk := src.read_some(CHUNK):
            dst.sendall(chunk)
    except _Closed:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.sock.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def proxy_for(emulator: Any, *, seed: int) -> Iterator[FaultProxy]:
    """A FaultProxy in front of ``emulator``'s endpoint, stopped on exit."""
    parts = urlsplit(emulator.endpoint)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"no host and port in {emulator.endpoint!r}")
    with FaultProxy((parts.hostname, parts.port), seed=seed) as proxy:
        yield proxy
