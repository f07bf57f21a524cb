"""The emulator in its own process, and its launcher (``EmulatorProcess``): moto's server on
127.0.0.1, made to cost what S3 and SQS cost a client (work proportional to the request, not to
the size of the queue or the object), so the benchmark measures the clients and not moto.

Started by ``EmulatorProcess`` (the benchmark, ``bench/run.py``; the chaos run,
``bench/chaos.py``, with ``plain=True``); by hand, from the repository root: ``python -m
tests.support.emulator_server [--plain]``. It prints one JSON line
``{"endpoint": "http://127.0.0.1:PORT", "pid": N}`` and then answers one JSON line per command
line read on stdin:

- ``stats``: SQS calls counted per queue name since the start (``receive``, ``receive_empty``,
  ``received``, ``delete``), HTTP requests per action (``AmazonSQS.ReceiveMessage``,
  ``S3 GET``, ...) and TCP connections accepted,
  ``{"queues": {name: {...}}, "requests": {action: n}, "connections": n}``;
- ``quit`` (or end of input): stop and exit.

``--plain`` applies only fix 1, the test suite's, and counts nothing: the in-process
``tests.support.emulator.Emulator`` in a process of its own (the chaos run's daemons are
SIGKILLed, and its producer and audit must not share the emulator's GIL with them).

Fixes applied to moto 5.2.5, in this process only:

1. ``Queue.delete_message`` and ``SQSBackend.receive_message`` under the queue's own lock: the
   race fixes the test suite uses (``tests/support/emulator.py``), reused as they are.
2. ``ReceiveMessage`` without a full attribute scan per message: for every message it hands out,
   moto checks the retention period through ``get_queue_attributes``, which builds the whole
   attribute dict (``ApproximateNumberOfMessages``, ``...NotVisible``, ``...Delayed``: three walks
   of the message list) up to three times. With 2,000 queued messages that is ~0.1 ms per queued
   message per receive. Here the retention period is read from the queue object directly. And
   the clock behind every message's ``visible``/``delayed`` check (each receive still walks the
   queue) is ``time.time()`` instead of moto's ``datetime.utcnow() - utcfromtimestamp(0)``, which
   took 70 % of the emulator's time with 1,000 messages queued; same value, 10x cheaper.
   And a receive walks the queue only until it has its messages: moto filters the whole queue
   into a list first (``Queue.messages``), ~1 µs per queued message per receive.
3. HTTP/1.1 keep-alive. AWS keeps a client's connections open; moto's server does not. Its
   request handler, a subclass of werkzeug's, answers HTTP/1.0, and werkzeug (3.x) sends
   ``Connection: close`` on every response and then drains the socket for 10 ms, so every
   request of every client pays a new TCP connection: ``socket``/``getaddrinfo``/``connect`` in
   the client, a new upstream connection in the delay proxy, a new thread in the server. Here
   the handler speaks HTTP/1.1 and keeps the connection: the request body is counted as the app
   reads it and what it left unread is skipped (exactly ``Content-Length`` bytes, instead of
   werkzeug's timed drain, which would swallow the client's next request), and only a request
   with a chunked body still gets ``Connection: close``. ``TCP_NODELAY`` is set (werkzeug sends
   headers and body in two writes, which on a kept-alive connection would otherwise wait 40 ms
   for the client's delayed ACK). An earlier version set only the protocol version, which
   werkzeug's ``Connection: close`` undid: the figures up to git ``f7f0384`` were taken with a
   new connection per request. ``stats`` counts the connections accepted.
4. ``GetObject`` served from the object's spooled file: moto reads the whole object into memory
   for every GET, ranged ones included, and slices the range out afterwards. A 1 GiB object
   fetched by s3transfer in 128 ranges of 8 MiB then costs 128 GiB of copying and up to 10 GiB of
   memory at once. Here a ranged GET reads only its range (``os.pread``), and a plain GET of a
   large object is streamed in 1 MiB pieces, as S3 streams it.
5. The service of a request is found without listing moto's package folder: moto's dispatcher
   calls ``list_of_moto_modules`` (``os.listdir`` and an ``isdir`` per entry, some 200) for every
   request, ~10 % of the emulator's CPU. Here the list is read once.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import Any

from tests.support.daemon import REPO_ROOT
from tests.support.emulator import TEST_ENV, AwsLikeSetup, Emulator, _apply_moto_fixes

STREAM_THRESHOLD = 8 << 20  # plain GETs of larger objects are streamed
STREAM_PIECE = 1 << 20

_counts: dict[str, dict[str, int]] = defaultdict(
    lambda: {"receive": 0, "receive_empty": 0, "received": 0, "delete": 0}
)
_requests: dict[str, int] = defaultdict(int)
_counts_lock = threading.Lock()
_CONNECTIONS = "(connections)"  # counted in _requests, reported on its own
_local = threading.local()


def _count(queue_name: str, field: str, amount: int = 1) -> None:
    with _counts_lock:
        _counts[queue_name][field] += amount


def _apply_sqs_fixes() -> None:
    from moto.sqs import models

    _apply_moto_fixes()  # fix 1: the test emulator's (queue locks, HEAD composite checksums)

    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention = int(self.get_queue(queue_name).message_retention_period)
        return bool(retention + message.sent_timestamp / 1000 > models.unix_time())

    models.SQSBackend.is_message_valid_based_on_retention_period = (  # fix 2
        is_message_valid_based_on_retention_period
    )
    slow_unix_time = models.unix_time

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else float(slow_unix_time(dt))

    def unix_time_millis(dt: Any = None) -> float:
        return unix_time(dt) * 1000.0

    models.unix_time = unix_time  # fix 2: the same clock, without datetime arithmetic
    models.unix_time_millis = unix_time_millis
    models.Queue.messages = property(lambda self: _VisibleMessages(self._messages))  # fix 2

    locked_receive = models.SQSBackend.receive_message
    locked_delete = models.SQSBackend.delete_message

    @functools.wraps(locked_receive)
    def receive_message(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        result = locked_receive(self, queue_name, *args, **kwargs)
        _count(queue_name, "receive")
        _count(queue_name, "received", len(result))
        if not result:
            _count(queue_name, "receive_empty")
        return result

    @functools.wraps(locked_delete)
    def delete_message(self: Any, queue_name: str, receipt_handle: str) -> None:
        locked_delete(self, queue_name, receipt_handle)
        _count(queue_name, "delete")

    models.SQSBackend.receive_message = receive_message
    models.SQSBackend.delete_message = delete_message


class _VisibleMessages:
    """moto's ``Queue.messages`` (the visible, undelayed messages), found as it is walked: a
    receive stops at the messages it returns instead of first filtering the whole queue."""

    def __init__(self, messages: list[Any]) -> None:
        self._messages = messages  # only walked under the queue's lock (fix 1)

    def __iter__(self) -> Iterator[Any]:
        return (m for m in self._messages if m.visible and not m.delayed)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return any(True for _ in self)


class _RangeReader:
    """Stands in for an object's bytes in a ranged GET: ``len`` and slices, read on demand."""

    def __init__(self, key: Any) -> None:
        self._key = key

    def __len__(self) -> int:
        return int(self._key.size)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, index: slice) -> bytes:
        start, stop, _ = index.indices(len(self))
        return _pread(self._key, start, max(0, stop - start))


def _pread(key: Any, offset: int, length: int) -> bytes:
    buffer = key._value_buffer
    with key.lock:
        if not getattr(buffer, "_rolled", True):  # still in memory: small object
            data: bytes = buffer._file.getvalue()[offset : offset + length]
            return data
        fd = buffer.fileno()
    chunks = []
    while length > 0:
        chunk = os.pread(fd, min(length, STREAM_PIECE * 8), offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        length -= len(chunk)
    return b"".join(chunks)


def _stream(key: Any) -> Iterator[bytes]:
    size = int(key.size)
    offset = 0
    while offset < size:
        piece = _pread(key, offset, min(STREAM_PIECE, size - offset))
        if not piece:
            return
        offset += len(piece)
        yield piece


def _count_requests() -> None:
    from moto.core import utils

    original_call = utils.convert_to_flask_response.__call__

    def __call__(self: Any, args: Any = None, **kwargs: Any) -> Any:
        from flask import request

        action = request.headers.get("X-Amz-Target") or f"S3 {request.method}"
        with _counts_lock:
            _requests[action] += 1
        return original_call(self, args, **kwargs)

    utils.convert_to_flask_response.__call__ = __call__

    from moto.moto_server.werkzeug_app import MotoRequestHandler

    handler: Any = MotoRequestHandler
    original_setup = handler.setup

    def setup(self: Any) -> None:  # one call per TCP connection accepted
        with _counts_lock:
            _requests[_CONNECTIONS] += 1
        original_setup(self)

    handler.setup = setup


def _apply_s3_fix() -> None:
    from moto.s3 import models, responses

    original_value = models.FakeKey.value
    original_key_response = responses.S3Response.key_response

    def value(self: Any) -> Any:
        mode = getattr(_local, "get_mode", None)
        if mode == "range":
            return _RangeReader(self)
        if mode == "plain" and int(self.size) > STREAM_THRESHOLD:
            return _stream(self)
        return original_value.fget(self)

    @functools.wraps(original_key_response)
    def key_response(self: Any, request: Any, full_url: str, headers: dict[str, Any]) -> Any:
        mode = None
        if request.method == "GET":
            mode = "range" if request.headers.get("range") else "plain"
        _local.get_mode = mode
        try:
            return original_key_response(self, request, full_url, headers)
        finally:
            _local.get_mode = None

    models.FakeKey.value = property(value, original_value.fset)  # fix 4
    responses.S3Response.key_response = key_response


class _CountedBody(io.RawIOBase):
    """A request's body as the app reads it: at most ``Content-Length`` bytes from the socket,
    counted, so that what the app leaves unread can be skipped before the next request."""

    def __init__(self, raw: Any, length: int) -> None:
        super().__init__()
        self._raw = raw
        self.left = length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.left <= 0:
            return 0
        view = memoryview(buffer).cast("B")[: self.left]
        count = self._raw.readinto(view) or 0
        self.left -= count
        return count

    def skip_rest(self) -> bool:
        """Read and drop the unread rest; False if the client went away first."""
        while self.left > 0:
            chunk = self._raw.read(min(self.left, STREAM_PIECE))
            if not chunk:
                return False
            self.left -= len(chunk)
        return True


class _NoTimedDrain:
    """Stands in for the ``selectors`` module inside ``werkzeug.serving`` only: its
    post-response drain (read whatever arrives within 10 ms) would swallow the next request of
    a kept-alive connection. The exact skip in ``_CountedBody`` replaces it."""

    EVENT_READ = 1

    class DefaultSelector:
        def register(self, *args: Any) -> None:
            pass

        def select(self, timeout: float | None = None) -> list[Any]:
            return []

        def close(self) -> None:
            pass


def _keep_alive() -> None:
    """Fix 3: HTTP/1.1 keep-alive with exact request framing, and ``TCP_NODELAY``."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug import serving

    setattr(serving, "selectors", _NoTimedDrain)  # noqa: B010 (a module attribute, on purpose)
    handler: Any = MotoRequestHandler
    handler.protocol_version = "HTTP/1.1"
    handler.body = None
    original_setup = handler.setup
    original_make_environ = handler.make_environ
    original_send_header = handler.send_header
    original_run_wsgi = handler.run_wsgi

    def setup(self: Any) -> None:
        original_setup(self)
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def make_environ(self: Any) -> dict[str, Any]:
        environ: dict[str, Any] = original_make_environ(self)
        self.body = None
        if not environ.get("wsgi.input_terminated"):  # a chunked body: closed after, as before
            self.body = _CountedBody(self.rfile, int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = self.body
        return environ

    def send_header(self: Any, keyword: str, value: str) -> None:
        if self.body is not None and (keyword.lower(), value.lower()) == ("connection", "close"):
            return  # framed by Content-Length or chunked encoding: the connection stays usable
        original_send_header(self, keyword, value)

    def run_wsgi(self: Any) -> None:
        try:
            original_run_wsgi(self)
            if self.body is not None and not self.body.skip_rest():
                self.close_connection = True
        finally:
            self.body = None  # an error answered before the next request's environ closes

    handler.setup = setup
    handler.make_environ = make_environ
    handler.send_header = send_header
    handler.run_wsgi = run_wsgi


def _cache_module_list() -> None:
    """Fix 5: moto's list of its own service packages, read once instead of per request."""
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--plain", action="store_true", help="only the test suite's fix (fix 1)")
    args = parser.parse_args(argv)
    for name, val in TEST_ENV.items():
        os.environ.setdefault(name, val)
    if not args.plain:
        _apply_sqs_fixes()
        _apply_s3_fix()
        _count_requests()
        _keep_alive()
        _cache_module_list()
    emulator = Emulator()  # applies fix 1 itself
    print(json.dumps({"endpoint": emulator.endpoint, "pid": os.getpid()}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            with _counts_lock:
                snapshot = {name: dict(c) for name, c in _counts.items()}
                requests = dict(_requests)
            connections = requests.pop(_CONNECTIONS, 0)
            print(
                json.dumps({"queues": snapshot, "requests": requests, "connections": connections}),
                flush=True,
            )
        elif command == "quit":
            break
        else:
            print(json.dumps({"error": f"unknown command {command!r}"}), flush=True)
    emulator.stop()
    return 0


# ---- the launcher -------------------------------------------------------------------------------


class LineProcess:
    """A child speaking one JSON line per request on stdin/stdout; its first line is ``hello``.

    ``stop`` closes its stdin (the child's cue to exit), then waits, then kills.
    """

    def __init__(self, argv: list[str], env: Mapping[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=dict(env) if env is not None else None,
            cwd=REPO_ROOT,
        )
        self._lock = threading.Lock()
        self.hello = self._read_line(timeout=60)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise RuntimeError(f"{self.proc.args!r} said nothing within {timeout}s")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.proc.args!r} exited (status {self.proc.poll()})")
        data: dict[str, Any] = json.loads(line)
        return data

    def request(self, command: str, timeout: float = 30) -> dict[str, Any]:
        assert self.proc.stdin is not None
        with self._lock:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
            return self._read_line(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class EmulatorProcess(LineProcess, AwsLikeSetup):
    """This module's server in its own process, with the AWS-like setup (``pipeline``,
    ``client``, ``queue_counts``...) of ``tests.support.emulator`` against it.

    ``plain``: only the test suite's fix, as the in-process ``Emulator`` (see ``--plain``).
    """

    def __init__(self, *, plain: bool = False) -> None:
        for name, value in TEST_ENV.items():
            os.environ.setdefault(name, value)  # for this process's own clients
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(TEST_ENV)
        argv = [sys.executable, "-m", "tests.support.emulator_server"]
        LineProcess.__init__(self, [*argv, "--plain"] if plain else argv, env)
        AwsLikeSetup.__init__(self, self.hello["endpoint"])

    def requests(self) -> dict[str, int]:
        """HTTP requests served so far, per action (all clients), and ``connections``: TCP
        connections accepted (one per client connection when keep-alive works)."""
        stats = self.request("stats")
        counts = {k: int(v) for k, v in stats["requests"].items()}
        counts["connections"] = int(stats.get("connections", 0))
        return counts

    def queue_stats(self, queue_url: str) -> dict[str, int]:
        name = queue_url.rstrip("/").rsplit("/", 1)[1]
        counts = self.request("stats")["queues"].get(name, {})
        return {
            "receive": 0,
            "receive_empty": 0,
            "received": 0,
            "delete": 0,
            **{k: int(v) for k, v in counts.items()},
        }


if __name__ == "__main__":
    sys.exit(main())
