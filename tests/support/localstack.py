"""LocalStack on 127.0.0.1: a second, independent S3/SQS/SNS implementation for the tests.

moto is one implementation; a bug that agrees with moto stays hidden while the tests run only
against moto. LocalStack's S3 (its "v3" provider) and SQS are its own code, so the suite in
``tests/localstack/`` runs the real daemon against it too. ``LocalStack`` starts
``localstack-core`` 4.14.0 in host mode (no Docker) on an OS-chosen port, in its own Python 3.13
virtualenv (``make test-localstack`` builds ``.venv-localstack`` from
``requirements/localstack.txt``; its SQS code does not even parse on 3.11), and gives the same
AWS-like setup as the moto ``Emulator`` (``AwsLikeSetup``). Only S3, SQS and SNS run: the
daemon needs nothing else, and every service more costs start-up time and memory.

The tests find the interpreter in ``$S3SQSD_LOCALSTACK_PYTHON`` (``localstack_python()``);
``make test-localstack`` always sets it, so CI never skips these tests silently.

Isolation: the server listens on 127.0.0.1 only; its state is in memory and under a temporary
``FILESYSTEM_ROOT`` removed at ``stop()``; it is told not to phone home
(``DISABLE_EVENTS=1`` for analytics, ``SKIP_SSL_CERT_DOWNLOAD=1`` for the TLS certificate it
would otherwise fetch from api.localstack.cloud, ``DNS_ADDRESS=0`` for its DNS server). One thing
it does not let us move: its S3 keeps a directory per bucket under the fixed path
``/tmp/localstack-s3-storage``; ``stop()`` removes the directories of the buckets it held.

Where LocalStack 4.14.0 differs from AWS (seen with this suite's setup and probes):

- ``s3.object.sequencer`` is one value (``0055AED6DCD90281E5``) in every event, for every key
  and bucket; AWS's grows per key. An s3sqsd that orders overwrites of a key by sequencer alone
  takes every later event for a duplicate of the first (test_flows' versioned test).
- Keys in S3 events are percent-encoded with ``quote`` (a space is ``%20``, ``+`` is ``%2B``,
  ``%`` is ``%25``, UTF-8 bytes as ``%XX``), not form-encoded as AWS does (a space is ``+``).
  ``unquote_plus`` decodes both the same way, but LocalStack would not expose a decoder that
  used ``unquote``.
- ``ObjectRemoved:DeleteMarkerCreated`` carries an ``eTag`` (the MD5 of nothing,
  ``d41d8cd98f00b204e9800998ecf8427e``) and, like AWS, no ``size``.
- Account ``000000000000``; queue URLs are ``http://sqs.<region>.127.0.0.1:<port>/000000000000/
  <name>``. That host does not resolve; boto3 sends every call to ``endpoint_url``, so they work.
- Through SNS, the ``s3:TestEvent`` reaches the queue a few milliseconds after
  ``PutBucketNotificationConfiguration`` returns (direct: before it returns); hence
  ``AwsLikeSetup.drain_test_event`` waits for it. SNS envelopes carry a ``SigningCertURL`` and
  an ``UnsubscribeURL`` on 127.0.0.1.

Integrity behaviour observed here, for whoever reads checksums (the first point is what AWS's
user guide documents; the rest was not compared with AWS):

- An object uploaded without a checksum gets a full-object CRC64NVME, single-part and
  multipart alike (``ChecksumType: FULL_OBJECT``); composite multipart checksums are
  ``<base64>-N`` with ``ChecksumType: COMPOSITE``; HEAD and GET with ``ChecksumMode=ENABLED``
  return ``ChecksumType``; a ranged GET returns no checksum.
- ``HeadObject``/``GetObject`` with ``PartNumber=n`` return that part's ``Content-Length``,
  ``Content-Range`` and ``x-amz-mp-parts-count``, with the part's own checksum for a COMPOSITE
  object and no checksum for a FULL_OBJECT one; ``PartNumber=1`` of a single-part object is the
  whole object (no parts count); a part number past the last is HTTP 416.
- ``GetObjectAttributes`` gives the composite checksum without its ``-N``, and lists the parts
  (size and checksum) of a COMPOSITE object but only ``TotalPartsCount`` for a FULL_OBJECT one.
- Checksums a client sends are verified (a wrong one is ``BadDigest``); FULL_OBJECT with SHA-1
  or SHA-256, COMPOSITE with CRC64NVME, and an ``UploadPart`` without the checksum the upload
  announced are refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.emulator import AwsLikeSetup

VERSION = "4.14.0"
ACCOUNT = "000000000000"
PYTHON_ENV = "S3SQSD_LOCALSTACK_PYTHON"
SERVICES = ("s3", "sqs", "sns")
# Hard-coded in LocalStack's S3 provider (``DEFAULT_S3_TMP_DIR``); not under FILESYSTEM_ROOT.
S3_STORAGE = Path("/tmp/localstack-s3-storage")

# The parent's variables that would change what LocalStack does, or which interpreter and
# packages it runs with: the tests' virtualenv, their AWS credentials, LocalStack settings a
# developer may have exported. TMPDIR too: LocalStack still reads it as a (deprecated) setting
# of its own, not only as the temporary directory.
_SCRUBBED_PREFIXES = ("AWS_", "PYTHON", "S3SQSD_", "LOCALSTACK_", "PIP_")
_SCRUBBED = frozenset(
    {"VIRTUAL_ENV", "SERVICES", "DEBUG", "PERSISTENCE", "GATEWAY_LISTEN", "TMPDIR"}
)


def localstack_python() -> str | None:
    """The interpreter of LocalStack's virtualenv, from ``$S3SQSD_LOCALSTACK_PYTHON``; None when
    unset. Set but unusable is an error, never a reason to skip: ``make test-localstack`` sets
    it, and a broken path there must fail the run."""
    value = os.environ.get(PYTHON_ENV, "").strip()
    if not value:
        return None
    if not os.access(value, os.X_OK):
        raise RuntimeError(f"{PYTHON_ENV}={value!r} is not an executable (see the Makefile)")
    return value


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalStack(AwsLikeSetup):
    """One LocalStack server (a child process), with the AWS-like setup of ``AwsLikeSetup``.

    ``LocalStack(python=...)`` returns once S3, SQS and SNS report ``available``; ``stop()``
    ends it (SIGTERM, then SIGKILL) and removes what it wrote.
    """

    account = ACCOUNT
    vias = ("direct", "sns", "sns_raw")  # no EventBridge: SERVICES has no ``events``

    def __init__(self, *, python: str, startup_timeout: float = 60.0) -> None:
        self.python = python
        self._tmp = Path(tempfile.mkdtemp(prefix="s3sqsd-localstack-"))
        self.log_path = self._tmp / "localstack.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._buckets: set[str] = set()
        try:
            self.port = self._start_on_a_free_port(startup_timeout)
        except BaseException:
            self.stop()
            raise
        super().__init__(f"http://127.0.0.1:{self.port}")

    # -- lifecycle -------------------------------------------------------------------------

    def _env(self, port: int) -> dict[str, str]:
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_SCRUBBED_PREFIXES) and name not in _SCRUBBED
        }
        env.update(
            {
                # The machine has /.dockerenv: without this LocalStack believes it runs in its
                # own container and writes to /var/lib/localstack.
                "OVERRIDE_IN_DOCKER": "0",
                "SERVICES": ",".join(SERVICES),
                "GATEWAY_LISTEN": f"127.0.0.1:{port}",
                "LOCALSTACK_HOST": f"127.0.0.1:{port}",
                "FILESYSTEM_ROOT": str(self._tmp / "fs"),
                "DISABLE_EVENTS": "1",
                "SKIP_SSL_CERT_DOWNLOAD": "1",
                "DNS_ADDRESS": "0",
                "PYTHONUNBUFFERED": "1",  # its log lines reach the file as they happen
            }
        )
        return env

    def _start_on_a_free_port(self, startup_timeout: float, attempts: int = 3) -> int:
        """Start the server on a port the OS picked; returns the port once it is ready.

        The port is chosen by the OS, released, then handed to LocalStack: another process can
        take it in between, so a server that dies at once is started again on another port.
        """
        for attempt in range(1, attempts + 1):
            port = _free_port()
            self._start(port)
            if self._wait_ready(port, timeout=startup_timeout, last_try=attempt == attempts):
                return port
        raise AssertionError("unreachable: the last attempt raises")

    def _start(self, port: int) -> None:
        if self._proc is not None:
            self._terminate()
        with self.log_path.open("ab") as log:
            log.write(f"---- starting on 127.0.0.1:{port}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [self.python, "-m", "localstack.runtime.main"],
                env=self._env(port),
                cwd=self._tmp,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal is pytest's, not the server's
            )

    def _wait_ready(self, port: int, *, timeout: float, last_try: bool) -> bool:
        """True once every service is ``available``; False if the server died early (retry
        on another port); raises with the server's last log lines on a timeout or last try."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{port}/_localstack/health"
        states: dict[str, Any] = {}
        while True:
            if self._proc.poll() is not None:
                if last_try:
                    raise RuntimeError(
                        f"LocalStack exited with status {self._proc.returncode} while starting"
                        f"\n{self.log_tail()}"
                    )
                return False
            health: dict[str, Any] = {}
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(url, timeout=2) as response,
            ):
                health = json.loads(response.read())
            states = health.get("services", states)
            if all(states.get(name) in ("available", "running") for name in SERVICES):
                if health.get("version") != VERSION:
                    # What this module records about LocalStack was seen on VERSION only.
                    raise RuntimeError(
                        f"LocalStack {health.get('version')} answered; these tests are written"
                        f" for {VERSION} (requirements/localstack.txt)"
                    )
                return True
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"LocalStack not ready after {timeout:.0f}s (services: "
                    f"{ {name: states.get(name) for name in SERVICES} })\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def log_tail(self, lines: int = 40) -> str:
        """The server's last log lines, for failure messages."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(no LocalStack log: {exc})"
        return "--- LocalStack log (last lines):\n" + "\n".join(text.splitlines()[-lines:])

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server and remove its files (idempotent)."""
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(Exception):
                self._buckets.update(
                    bucket["Name"] for bucket in self.client("s3").list_buckets()["Buckets"]
                )
        self._terminate()
        for bucket in self._buckets:
            # Bucket names are the S3 provider's directory names; ours carry our pid.
            shutil.rmtree(S3_STORAGE / bucket, ignore_errors=True)
        with contextlib.suppress(OSError):
            S3_STORAGE.rmdir()  # only when no other LocalStack keeps buckets there
        shutil.rmtree(self._tmp, ignore_errors=True)


@contextmanager
def running_localstack(*, python: str) -> Iterator[LocalStack]:
    server = LocalStack(python=python)
    try:
        yield server
    finally:
        server.stop()


def crt_checksum(python: str, algorithm: str, data: bytes) -> str:
    """The base64 ``algorithm`` (``CRC32C`` or ``CRC64NVME``) checksum of ``data``, as S3 writes it.

    botocore computes these only with ``awscrt`` (CRC64NVME from 0.23 on), which the tests'
    virtualenv may lack or have in an old version (Debian bookworm's has no CRC64NVME).
    LocalStack depends on a current one, so the arithmetic runs in its virtualenv and the
    uploads are the same whatever the tests' virtualenv holds.
    """
    code = (
        "import base64, sys\n"
        "from awscrt import checksums\n"
        "data = sys.stdin.buffer.read()\n"
        f"name, size = {algorithm.lower()!r}, {8 if algorithm == 'CRC64NVME' else 4}\n"
        "value = getattr(checksums, name)(data)\n"
        "sys.stdout.write(base64.b64encode(value.to_bytes(size, 'big')).decode())\n"
    )
    if algorithm not in ("CRC32C", "CRC64NVME"):
        raise ValueError(f"no CRT checksum {algorithm!r}")
    done = subprocess.run(
        [python, "-c", code], input=data, capture_output=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{algorithm} in {python} failed: {done.stderr.decode()[-2000:]}")
    return done.stdout.decode().strip()
