"""What s3sqsd's own per-file work costs, without the network: ``Fetcher.fetch`` against an
in-process stand-in for the S3 client, one thread, so the figures are CPU time of this process
only (``time.process_time``) and barely move with the machine's load.

``python -m bench.micro [--files 2000] [--size 4096]``

Variants, each on a fresh folder (the same files, the same order):

- ``fetch``: the real ``Fetcher.fetch`` (path checks, provenance check, temp file, digests,
  xattr, fsync, rename, directory fsync);
- ``fetch, fsync off``: the same with ``os.fsync`` replaced by a no-op (what durability costs in
  CPU; its wall-clock cost is shown separately);
- ``plain write``: open, write, close the final path (what ``bench/limit.py`` does locally);
- ``log line``: one ``object.downloaded`` JSON log line as the worker writes it, to /dev/null;
- ``GET, s3sqsd client`` and ``GET, boto3 client``: one GetObject of the object through the
  daemon's own S3 client (``make_clients``) and through a plain boto3 client as
  ``bench/limit.py`` makes it, body read, with the HTTP exchange answered in this process
  (botocore's ``before-send`` event, the headers the emulator sends): what building, signing
  and parsing one call costs each;
- ``md5+crc32 1 MiB``: the digests of 1 MiB (per MiB of a large object).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import Fetcher


class FakeS3:
    """``get_object`` returning what botocore returns for a small object (no network)."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.headers = {
            "ETag": f'"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"',
            "ContentLength": len(body),
            "ChecksumCRC32": base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode(),
            "ChecksumType": "FULL_OBJECT",
        }

    def get_object(self, **_: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.body), **self.headers}


def _objects(count: int, s3: FakeS3) -> list[ObjectCreated]:
    etag = str(s3.headers["ETag"]).strip('"')
    return [
        ObjectCreated(
            bucket="b",
            key=f"micro-{i:05d}.bin",
            event_name="ObjectCreated:Put",
            size=len(s3.body),
            etag=etag,
            sequencer=f"{i:016X}",
        )
        for i in range(count)
    ]


@contextlib.contextmanager
def _folder() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="s3sqsd-micro-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _timed(count: int, work: Callable[[int], object]) -> tuple[float, float]:
    """(CPU ms, wall ms) per call of ``work(i)`` for i in range(count)."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(count):
        work(i)
    cpu = (time.process_time() - cpu0) * 1000 / count
    wall = (time.perf_counter() - wall0) * 1000 / count
    return cpu, wall


def _gets(count: int, s3: FakeS3) -> list[tuple[str, float, float]]:
    """GetObject through each client, the answer made here (see the module docstring)."""
    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders
    from botocore.config import Config as BotoConfig

    from s3sqsd.aws import make_clients
    from s3sqsd.config import Config

    endpoint = "http://127.0.0.1:9"  # never reached: every request is answered before sending
    for name, value in (("AWS_ACCESS_KEY_ID", "micro"), ("AWS_SECRET_ACCESS_KEY", "micro")):
        os.environ.setdefault(name, value)

    class Raw(io.BytesIO):
        def stream(self, amt: int = 1024, decode_content: bool | None = None) -> Iterator[bytes]:
            while chunk := self.read(amt):
                yield chunk

    def answer(request: Any, **_: Any) -> AWSResponse:
        headers = HTTPHeaders()
        headers["Date"] = headers["Last-Modified"] = "Sun, 06 Dec 2026 22:14:00 GMT"
        headers["ETag"] = str(s3.headers["ETag"])
        headers["Content-Length"] = str(len(s3.body))
        headers["Content-Type"] = "binary/octet-stream"
        headers["x-amz-checksum-crc32"] = str(s3.headers["ChecksumCRC32"])
        headers["Accept-Ranges"] = "bytes"
        return AWSResponse(request.url, 200, headers, Raw(s3.body))

    config = Config(
        sqs_queue_url=f"{endpoint}/123456789012/q",
        aws_region="us-east-1",
        endpoint_url=endpoint,
        download_folder=Path("/nonexistent"),
    )
    ours = make_clients(config).s3.for_bucket("b")
    try:  # as bench/limit.py: no response checksum validation where botocore has the option
        options = BotoConfig(
            s3={"addressing_style": "path"}, response_checksum_validation="when_required"
        )
    except TypeError:
        options = BotoConfig(s3={"addressing_style": "path"})
    plain = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", config=options)
    rows = []
    contestants: tuple[tuple[str, Any, dict[str, str]], ...] = (
        ("GET, s3sqsd client", ours, {"ChecksumMode": "ENABLED"}),
        ("GET, boto3 client", plain, {}),
    )
    for name, client, extra in contestants:
        client.meta.events.register_first("before-send.s3.GetObject", answer)

        def get(i: int, client: Any = client, extra: dict[str, str] = extra) -> None:
            client.get_object(Bucket="b", Key=f"micro-{i:05d}.bin", **extra)["Body"].read()

        get(0)  # the first call builds botocore's caches
        rows.append((name, *_timed(count, get)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--size", type=int, default=4096)
    args = parser.parse_args()
    s3 = FakeS3(os.urandom(args.size))
    objects = _objects(args.files, s3)
    cancel = threading.Event()
    rows: list[tuple[str, float, float]] = []

    with _folder() as folder:
        fetcher = Fetcher(s3=s3, root=folder)
        fetcher.prepare()
        rows.append(
            ("fetch", *_timed(args.files, lambda i: fetcher.fetch(objects[i], cancel=cancel)))
        )

    real_fsync = os.fsync
    os.fsync = lambda fd: None
    try:
        with _folder() as folder:
            fetcher = Fetcher(s3=s3, root=folder)
            fetcher.prepare()
            rows.append(
                (
                    "fetch, fsync off",
                    *_timed(args.files, lambda i: fetcher.fetch(objects[i], cancel=cancel)),
                )
            )
    finally:
        os.fsync = real_fsync

    with _folder() as folder:

        def plain(i: int) -> None:
            body = s3.get_object()["Body"]
            with open(folder / objects[i].key, "wb") as handle:
                while chunk := body.read(1 << 20):
                    handle.write(chunk)

        rows.append(("plain write", *_timed(args.files, plain)))

    from s3sqsd.logs import JsonFormatter

    logger = logging.getLogger("micro")
    logger.propagate = False
    with open(os.devnull, "w", encoding="utf-8") as sink:
        handler = logging.StreamHandler(sink)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)

        def log(i: int) -> None:
            logger.info(
                "downloaded s3://%s/%s to %s (%d bytes)",
                "b",
                objects[i].key,
                f"/srv/{objects[i].key}",
                args.size,
                extra={
                    "event": "object.downloaded",
                    "size": args.size,
                    "duration_ms": 3,
                    "version_id": None,
                    "etag": "0" * 32,
                    "bucket": "b",
                    "key": objects[i].key,
                    "path": f"/srv/{objects[i].key}",
                    "message_id": "m",
                },
            )

        rows.append(("log line", *_timed(args.files, log)))

    rows.extend(_gets(args.files, s3))

    mib = os.urandom(1 << 20)

    def digests(_: int) -> None:
        hashlib.md5(mib, usedforsecurity=False).digest()
        zlib.crc32(mib)

    rows.append(("md5+crc32 1 MiB", *_timed(200, digests)))
    print(f"{'what':<20} {'CPU ms':>8} {'wall ms':>8}   ({args.files} files of {args.size} B)")
    for name, cpu, wall in rows:
        print(f"{name:<20} {cpu:8.3f} {wall:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
