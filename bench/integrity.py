"""What each integrity check costs, without the network: CPU seconds per GiB of
``verify.Digests`` for every check kind s3sqsd makes, on this machine's libraries.

``python -m bench.integrity [--mib 1024] [--threads 2]``

The bytes are fed in the ranged path's 256 KiB chunks, one thread, measured with
``time.process_time`` (this process only). A per-part check is also timed with its parts hashed
on ``--threads`` threads at once, as ranged.py does when ranges follow the parts (hashlib and
awscrt release the GIL): that line is wall-clock seconds per GiB. Prints one line per check,
e.g. ``md5-parts  1.52 s/GiB``; the figures go into docs/performance.md ("Integrity").
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from s3sqsd.checksums import HostChecksums
from s3sqsd.errors import IntegrityError
from s3sqsd.events import ObjectCreated
from s3sqsd.verify import Digests, Expected

MIB = 1 << 20
CHUNK = 256 << 10
PART = 8 * MIB  # the AWS CLI's and boto3's part size
OBJ = ObjectCreated(bucket="bench", key="big.bin", event_name="ObjectCreated:Put")


def response(size: int, *, etag: str, **fields: str) -> dict[str, Any]:
    return {"ContentLength": size, "ETag": f'"{etag}"', **fields}


def kinds(host: HostChecksums, size: int, parts: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, response) for every check kind this host computes. The expected values are
    placeholders: a mismatch is raised after the digest, so the cost is the same."""
    md5 = "0" * 32
    cases: list[tuple[str, dict[str, Any]]] = [
        ("md5 (single-part ETag)", response(size, etag=md5)),
        ("md5-parts (multipart ETag)", response(size, etag=f"{md5}-{parts}")),
    ]
    for algorithm, digest_size in (
        ("CRC64NVME", 8),
        ("CRC32", 4),
        ("CRC32C", 4),
        ("SHA1", 20),
        ("SHA256", 32),
    ):
        if not host.can(algorithm):
            print(f"{algorithm.lower():28} not computable here: {host.why_not(algorithm)}")
            continue
        value = base64.b64encode(bytes(digest_size)).decode()
        cases.append(
            (algorithm.lower(), response(size, etag=md5, **{f"Checksum{algorithm}": value}))
        )
        if algorithm != "CRC64NVME":  # S3 has no composite CRC64NVME
            cases.append(
                (
                    f"{algorithm.lower()}-composite",
                    response(
                        size, etag=f"{md5}-{parts}", **{f"Checksum{algorithm}": f"{value}-{parts}"}
                    ),
                )
            )
    return cases


def feed(digests: Digests, block: bytes, size: int) -> None:
    view = memoryview(block)
    done = 0
    while done < size:
        take = min(CHUNK, size - done)
        start = done % len(block)
        digests.update(view[start : start + take])
        done += take
    # The placeholders never match: the digest is what is timed, not the verdict.
    with contextlib.suppress(IntegrityError):
        digests.verify()


def parallel_parts(
    host: HostChecksums, block: bytes, size: int, threads: int, algorithm: str
) -> float:
    """Wall seconds to digest every part on ``threads`` threads (ranged.py's aligned path)."""

    def one(start: int) -> bytes:
        hasher = host.new(algorithm)
        view = memoryview(block)
        for offset in range(start, start + PART, CHUNK):
            at = offset % len(block)
            hasher.update(view[at : at + CHUNK])
        return hasher.digest()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(0, size, PART)))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--mib", type=int, default=1024, help="bytes digested per check (MiB)")
    parser.add_argument("--threads", type=int, default=2, help="threads for the per-part line")
    args = parser.parse_args()
    size = args.mib * MIB - args.mib * MIB % PART
    parts = size // PART
    block = os.urandom(64 * MIB)
    host = HostChecksums.detect()
    gib = size / (1 << 30)
    print(f"{args.mib} MiB in {parts} parts of 8 MiB; awscrt {host.awscrt_version or 'missing'}")
    for label, answer in kinds(host, size, parts):
        expected = Expected.from_response(answer, OBJ, host=host)
        layout = (PART,) * parts if expected.check.needs_layout else None
        digests = Digests(expected, host=host, layout=layout)
        started = time.process_time()
        feed(digests, block, size)
        seconds = (time.process_time() - started) / gib
        print(f"{label:28} {seconds:5.2f} s CPU/GiB  ({expected.check.verified_by})")
    for algorithm in ("MD5", "CRC32"):
        wall = parallel_parts(host, block, size, args.threads, algorithm) / gib
        label = f"{algorithm.lower()} parts on {args.threads} threads"
        print(f"{label:28} {wall:5.2f} s wall/GiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
