"""Run the real s3sqsd as a subprocess and watch what it says.

``DaemonProcess`` writes a YAML config, starts ``sys.executable -m s3sqsd --config PATH`` with a
controlled environment (the emulator's dummy credentials, ``PYTHONPATH`` at the repo root, an
optional ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``), and reads its stdout on a thread. Every
stdout line is parsed as one JSON log record; anything else is kept in ``non_json`` so tests can
assert there is none. stderr is kept whole.

Waiting is deadline polling on a condition variable; a wait also fails early, with the
daemon's output, when the process exits while the test still expects something from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from tests.support.emulator import TEST_ENV, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]

# Environment variables that would change what the daemon does if inherited from the shell
# running pytest; the harness sets the ones a test wants explicitly.
_SCRUBBED_PREFIXES = ("AWS_", "S3SQSD_")
_SCRUBBED = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID"}


def daemon_env(extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment for an s3sqsd subprocess: clean of AWS/systemd variables, plus TEST_ENV.

    ``extra`` adds variables; a value of None removes one.
    """
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_SCRUBBED_PREFIXES) and name not in _SCRUBBED
    }
    env.update(TEST_ENV)
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.pop("PYTHONUNBUFFERED", None)  # the daemon must flush its own log lines
    for name, value in (extra or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def write_config(path: Path, config: Mapping[str, Any]) -> Path:
    """Write ``config`` as YAML (paths become strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, Mapping):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    path.write_text(yaml.safe_dump(plain(dict(config)), sort_keys=False), encoding="utf-8")
    return path


def run_cli(
    args: Sequence[str],
    env: Mapping[str, str | None] | None = None,
    *,
    timeout: float = 60.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m s3sqsd ARGS`` to completion (check-config, --version)."""
    return subprocess.run(
        [sys.executable, "-m", "s3sqsd", *args],
        env=daemon_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class DaemonProcess:
    """One s3sqsd subprocess: its config, its parsed log records, its exit status."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        workdir: Path,
        notify_socket: str | None = None,
        watchdog_usec: int | None = None,
        env: Mapping[str, str | None] | None = None,
        command: Sequence[str] | None = None,
        name: str = "s3sqsd",
    ) -> None:
        self.name = name
        self.config = dict(config)
        self.config_path = write_config(workdir / f"{name}.yaml", self.config)
        extra: dict[str, str | None] = {}
        if notify_socket is not None:
            extra["NOTIFY_SOCKET"] = notify_socket
        if watchdog_usec is not None:
            extra["WATCHDOG_USEC"] = str(watchdog_usec)
        extra.update(env or {})
        self.env = daemon_env(extra)
        self.argv = list(
            command
            if command is not None
            else [sys.executable, "-m", "s3sqsd", "--config", str(self.config_path)]
        )
        self.records: list[dict[str, Any]] = []
        self.non_json: list[str] = []
        self.stderr = ""
        self._stderr_chunks: list[str] = []
        self._cond = threading.Condition()
        self._stdout_done = False
        self.started_at = 0.0
        self.proc: subprocess.Popen[bytes] | None = None
        self._threads: list[threading.Thread] = []

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> DaemonProcess:
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._threads = [
            threading.Thread(target=self._read_stdout, name=f"{self.name}-stdout", daemon=True),
            threading.Thread(target=self._read_stderr, name=f"{self.name}-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None, "daemon not started"
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        assert self.proc is not None, "daemon not started"
        return self.proc.poll()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        assert self.proc is not None, "daemon not started"
        self.proc.send_signal(sig)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    def kill9(self) -> int:
        """SIGKILL the daemon and reap it; returns the (negative) status."""
        assert self.proc is not None, "daemon not started"
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        code = self.proc.wait(timeout=10)
        self._join_readers()
        return code

    def wait_exit(self, timeout: float) -> int:
        """Wait for the process to exit; return its status (fail after ``timeout``)."""
        assert self.proc is not None, "daemon not started"
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running {timeout}s later\n{self.describe()}"
            ) from None
        self._join_readers()
        return code

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM and wait for the exit status."""
        self.terminate()
        return self.wait_exit(timeout)

    def cleanup(self) -> None:
        """Teardown: never leave a process behind (SIGTERM, then SIGKILL)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                self.proc.wait(timeout=10)
        self._join_readers()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def _join_readers(self) -> None:
        for thread in self._threads:
            thread.join(timeout=5)

    # -- readers ---------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            record: Any = None
            with contextlib.suppress(ValueError):
                record = json.loads(line)
            with self._cond:
                if isinstance(record, dict):
                    record.setdefault("_t", time.monotonic())
                    self.records.append(record)
                else:
                    self.non_json.append(line)
                self._cond.notify_all()
        with self._cond:
            self._stdout_done = True
            self._cond.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._cond:
                self._stderr_chunks.append(raw.decode("utf-8", "replace"))
                self.stderr = "".join(self._stderr_chunks)

    # -- queries ---------------------------------------------------------------------------

    def events(self, name: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """Log records with ``event == name`` (any when None) whose fields equal ``fields``."""
        with self._cond:
            return [r for r in self.records if _matches(r, name, fields)]

    def event_names(self) -> list[str]:
        with self._cond:
            return [str(r.get("event")) for r in self.records]

    def levels(self) -> list[str]:
        with self._cond:
            return [str(r.get("level", "")).lower() for r in self.records]

    def wait_for_event(
        self, name: str, *, timeout: float = 20.0, count: int = 1, **fields: Any
    ) -> dict[str, Any]:
        """Wait until ``count`` records match; return the last of them."""
        matched = self.wait_for(
            lambda: m if len(m := self.events(name, **fields)) >= count else None,
            timeout=timeout,
            what=f"{count} x event {name!r} {fields or ''}",
        )
        return matched[count - 1]  # type: ignore[no-any-return]

    def wait_for(
        self, predicate: Callable[[], Any], *, timeout: float = 20.0, what: str = ""
    ) -> Any:
        """Wait until ``predicate()`` is truthy, re-checking on every new log line.

        Fails early when the daemon exits (its output is in the message).
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            with self._cond:
                stdout_done = self._stdout_done
            exited = stdout_done and self.proc is not None and self.proc.poll() is not None
            if exited:
                value = predicate()
                if value:
                    return value
                raise AssertionError(
                    f"{self.name} exited (status {self.returncode}) while waiting for {what}\n"
                    f"{self.describe()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what}\n{self.describe()}"
                )
            with self._cond:
                self._cond.wait(min(remaining, 0.1))

    def describe(self, last: int = 40) -> str:
        """The tail of what the daemon said, for assertion messages."""
        with self._cond:
            lines = [
                json.dumps({k: v for k, v in r.items() if k != "_t"}, ensure_ascii=False)
                for r in self.records[-last:]
            ]
            non_json = self.non_json[-10:]
            stderr = self.stderr[-3000:]
        status = self.proc.poll() if self.proc is not None else None
        return (
            f"--- {self.name} pid={self.proc.pid if self.proc else None} status={status}\n"
            f"--- last {len(lines)} log records:\n" + "\n".join(lines) + "\n"
            f"--- non-JSON stdout: {non_json!r}\n--- stderr:\n{stderr}"
        )

    def problems(self) -> list[str]:
        """Non-JSON stdout lines and records at error level or above (for 'no errors' asserts)."""
        with self._cond:
            bad = [f"non-JSON stdout: {line!r}" for line in self.non_json]
            bad += [
                json.dumps({k: v for k, v in r.items() if k != "_t"})
                for r in self.records
                if str(r.get("level", "")).lower() in ("error", "critical", "fatal")
            ]
        return bad


def _matches(record: Mapping[str, Any], name: str | None, fields: Mapping[str, Any]) -> bool:
    if name is not None and record.get("event") != name:
        return False
    return all(record.get(key) == value for key, value in fields.items())


# ---- configs, objects and local files --------------------------------------------------------

TEMP_DIR_NAME = ".s3sqsd-tmp"
PATH_LOCK_NAME = "paths.lock"  # the per-path lock file in it: there for good, not a leftover


def final_path(folder: Path, key: str) -> Path:
    """Where s3sqsd puts object ``key``: the key's path under ``download_folder``."""
    return folder / key


def temp_files(folder: Path) -> list[Path]:
    """Everything inside the daemon's temp directory but its lock file (missing directory:
    nothing)."""
    temp = folder / TEMP_DIR_NAME
    if not temp.exists():
        return []
    return sorted(path for path in temp.rglob("*") if path != temp / PATH_LOCK_NAME)


def visible_files(folder: Path) -> dict[str, bytes]:
    """Regular files under ``folder`` outside the temp directory: relative path -> bytes."""
    found: dict[str, bytes] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if relative.parts and relative.parts[0] == TEMP_DIR_NAME:
            continue
        if path.is_file() and not path.is_symlink():
            found[relative.as_posix()] = path.read_bytes()
    return found


def put_objects(s3: Any, bucket: str, objects: Mapping[str, bytes]) -> None:
    for key, body in objects.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def s3_notification_body(
    bucket: str,
    key: str,
    *,
    size: int = 11,
    event_name: str = "ObjectCreated:Put",
    etag: str = "d41d8cd98f00b204e9800998ecf8427e",
    sequencer: str = "0065A1B2C3D4E5F601",
    region: str = "us-east-1",
) -> str:
    """A hand-written S3 event notification, shaped like AWS's (``key`` sent as given)."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": region,
        "eventTime": "2024-01-01T00:00:00.000Z",
        "eventName": event_name,
        "userIdentity": {"principalId": "AWS:EXAMPLE"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": "EXAMPLE", "x-amz-id-2": "EXAMPLE"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "tests",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "EXAMPLE"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {"key": key, "size": size, "eTag": etag, "sequencer": sequencer},
        },
    }
    return json.dumps({"Records": [record]})


def announce(sqs: Any, queue_url: str, bucket: str, key: str, data: bytes) -> None:
    """Send by hand the ``ObjectCreated`` event of ``bucket``/``key`` holding ``data`` (its size
    and MD5 ETag), for a bucket whose notifications go elsewhere or nowhere."""
    etag = hashlib.md5(data, usedforsecurity=False).hexdigest()
    body = s3_notification_body(bucket, key, size=len(data), etag=etag)
    sqs.send_message(QueueUrl=queue_url, MessageBody=body)


def receive_all(
    sqs: Any, queue_url: str, *, count: int, timeout: float = 20.0
) -> list[dict[str, Any]]:
    """Receive (without deleting) until ``count`` distinct messages were seen; with attributes.

    Messages are received with a long visibility timeout so each is seen once.
    """
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"only {len(seen)} of {count} messages arrived in {queue_url} within {timeout}s:"
                f" {[m['Body'][:200] for m in seen.values()]!r}"
            )
        response = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=300,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
        )
        for message in response.get("Messages", []):
            seen[message["MessageId"]] = message
    return list(seen.values())


def attribute(message: Mapping[str, Any], name: str) -> str | None:
    """A string message attribute's value, or None."""
    value = message.get("MessageAttributes", {}).get(name)
    if value is None:
        return None
    return str(value.get("StringValue", value.get("BinaryValue")))


def closed_port() -> int:
    """A loopback TCP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TcpForwarder:
    """A loopback TCP relay ``127.0.0.1:listen_port -> target``, optionally rate-limited.

    ``rate`` (bytes/s) throttles each connection's target->client direction, which makes a
    download last long enough to signal the daemon in the middle of it.
    """

    def __init__(
        self, target: tuple[str, int], *, listen_port: int = 0, rate: float | None = None
    ) -> None:
        self.target = target
        self.rate = rate
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", listen_port))
        self._server.listen(64)
        self._server.settimeout(0.2)
        self.port = int(self._server.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._rate_lock = threading.Lock()
        self._rate_next = 0.0
        self._lock = threading.Lock()
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="forwarder", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def __enter__(self) -> TcpForwarder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connected(client)

    def _connected(self, client: socket.socket) -> None:
        """Relay a new connection (on the accept thread: keep it short)."""
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        client.settimeout(None)
        with self._lock:
            self._sockets += [client, upstream]
            self.connections += 1
        for src, dst, rate in ((client, upstream, None), (upstream, client, self.rate)):
            threading.Thread(
                target=self._pipe, args=(src, dst, rate), name="forwarder-pipe", daemon=True
            ).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, rate: float | None) -> None:
        chunk = 65536 if rate is None else max(1024, min(65536, int(rate / 20)))
        try:
            while not self._stop.is_set():
                data = src.recv(chunk)
                if not data:
                    break
                dst.sendall(data)
                if rate is not None:
                    self._stop.wait(self._throttle(len(data), rate))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def _throttle(self, sent: int, rate: float) -> float:
        """Seconds to pause so all connections together stay under ``rate`` bytes/s.

        A virtual clock: each chunk is scheduled after the previous one; idle time is not
        saved up, so a transfer that starts late is throttled like one that starts at once.
        """
        with self._rate_lock:
            now = time.monotonic()
            self._rate_next = max(self._rate_next, now) + sent / rate
            return max(0.0, self._rate_next - now)


def wait_queue_empty(emulator: Any, queue_url: str, *, timeout: float = 20.0) -> None:
    """Wait until the queue holds nothing, visible or in flight, on two reads 0.3 s apart.

    One read is not enough: moto computes the visible and the in-flight counts at two moments,
    so a message whose visibility runs out between them is counted in neither, and the queue
    looks empty while a retried message is still in it (seen once in CI).
    """

    def empty_twice() -> bool:
        if emulator.queue_counts(queue_url) != (0, 0):
            return False
        time.sleep(0.3)
        return bool(emulator.queue_counts(queue_url) == (0, 0))

    wait_until(
        empty_twice,
        timeout=timeout,
        what=f"queue {queue_url} to be empty (now {emulator.queue_counts(queue_url)})",
    )


def via_port(url: str, port: int) -> str:
    """``url`` pointed at 127.0.0.1:``port`` (a forwarder or proxy in front of the emulator)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
