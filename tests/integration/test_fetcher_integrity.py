"""Multipart objects are verified part by part, on both download paths (moto over real HTTP).

moto stores no checksum for a multipart upload made without one, so these objects exercise the
multipart-ETag check (``md5-parts``): the MD5 of the parts' MD5s, which needs the part sizes
(parts.py). A relay in front of the emulator flips one byte, length unchanged, of every GET of
the object: the corrupt bytes must never reach the final path, on the single-GET path and the
ranged one. Composite and full-object checksums of multipart uploads are tested against
LocalStack (tests/localstack), because moto's values for them are not S3's (its module notes).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.checksums import HostChecksums
from s3sqsd.errors import IntegrityError, UnverifiableError
from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import Fetcher, FetchOutcome
from tests.support.emulator import Emulator, no_checksum_config
from tests.support.faultproxy import FLIP_BYTE, FaultProxy, proxy_for
from tests.support.fetching import leftovers, ranged_fetcher

pytestmark = pytest.mark.integration

MiB = 1 << 20
PART = 5 * MiB  # S3's smallest part but the last


def event(bucket: str, key: str, *, size: int, etag: str) -> ObjectCreated:
    return ObjectCreated(
        bucket=bucket,
        key=key,
        event_name="ObjectCreated:CompleteMultipartUpload",
        size=size,
        etag=etag,
    )


@pytest.fixture
def s3(emulator: Emulator) -> Any:
    """A client that adds no checksum of its own, as SDKs before 2025 upload."""
    return emulator.client("s3", config=no_checksum_config())


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultProxy]:
    with proxy_for(emulator, seed=11) as relay:
        yield relay


def upload(s3: Any, bucket: str, key: str, parts: Sequence[bytes], **extra: Any) -> tuple[str, int]:
    """A multipart upload of ``parts``; returns its ETag and size. With ``ChecksumAlgorithm``
    every part names it too, as SDKs do (moto needs it for a right composite checksum)."""
    started = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)
    per_part = {k: v for k, v in extra.items() if k == "ChecksumAlgorithm"}
    done = []
    for number, data in enumerate(parts, start=1):
        answer = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=started["UploadId"],
            PartNumber=number,
            Body=data,
            **per_part,
        )
        done.append({"ETag": answer["ETag"], "PartNumber": number})
    complete = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=started["UploadId"], MultipartUpload={"Parts": done}
    )
    return complete["ETag"].strip('"'), sum(map(len, parts))


def make_fetcher(client: Any, root: Path, pool: ThreadPoolExecutor | None, **extra: Any) -> Fetcher:
    return ranged_fetcher(client, root, pool, ranged_threshold=4 * MiB, **extra)


PATHS = [pytest.param(False, id="single-get"), pytest.param(True, id="ranged")]


@pytest.mark.parametrize("ranged", PATHS)
def test_multipart_object_verified_by_its_part_md5s(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor, ranged: bool
) -> None:
    parts = [os.urandom(PART), os.urandom(PART), os.urandom(123_457)]
    etag, size = upload(s3, bucket, "m.bin", parts)
    assert etag.endswith("-3")
    gets: list[dict[str, Any]] = []
    s3.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: gets.append(dict(params))
    )
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool if ranged else None)
    result = fetcher.fetch(event(bucket, "m.bin", size=size, etag=etag), cancel=threading.Event())
    assert result.outcome is FetchOutcome.DOWNLOADED
    assert result.verified_by == "md5-parts"
    assert (tmp_path / "dl" / "m.bin").read_bytes() == b"".join(parts)
    if ranged:  # one range per part, each digested by the thread that fetched it
        starts = sorted(gets, key=lambda g: int(g["Range"][6:].partition("-")[0]))
        assert [g["Range"] for g in starts] == [
            f"bytes=0-{PART - 1}",
            f"bytes={PART}-{2 * PART - 1}",
            f"bytes={2 * PART}-{size - 1}",
        ]
        assert all(g["IfMatch"] == f'"{etag}"' for g in gets)


@pytest.mark.parametrize("ranged", PATHS)
def test_flipped_bit_in_a_multipart_object_never_lands(
    emulator: Emulator,
    s3: Any,
    bucket: str,
    tmp_path: Path,
    parts_pool: ThreadPoolExecutor,
    proxy: FaultProxy,
    ranged: bool,
) -> None:
    """Before the per-part check, a multipart object was verified by its length only: a
    flipped bit (same length) reached the final path and the message was deleted."""
    parts = [os.urandom(PART), os.urandom(PART // 2)]
    etag, size = upload(s3, bucket, "flip.bin", parts)
    proxy.add_rule(operation="GetObject", fault=FLIP_BYTE, match="flip.bin", mask=0x01)
    client = emulator.client("s3", endpoint=proxy.url)
    fetcher = make_fetcher(client, tmp_path / "dl", parts_pool if ranged else None)
    with pytest.raises(IntegrityError, match=r"MD5 of parts mismatch"):
        fetcher.fetch(event(bucket, "flip.bin", size=size, etag=etag), cancel=threading.Event())
    assert proxy.faults[("GetObject", FLIP_BYTE)] >= 1
    assert not (tmp_path / "dl" / "flip.bin").exists()
    assert leftovers(tmp_path / "dl") == []


@pytest.mark.parametrize("ranged", PATHS)
def test_uneven_parts_are_asked_for_not_guessed(
    s3: Any, bucket: str, tmp_path: Path, parts_pool: ThreadPoolExecutor, ranged: bool
) -> None:
    """Parts of 5, 6 and 4 MiB: cut from part one's size (5, 5, 5) the check fails, so every
    part's size is asked for and the file is checked again, from disk, and accepted."""
    parts = [os.urandom(PART), os.urandom(PART + MiB), os.urandom(PART - MiB)]
    etag, size = upload(s3, bucket, "uneven.bin", parts)
    heads: list[dict[str, Any]] = []
    s3.meta.events.register(
        "provide-client-params.s3.HeadObject", lambda params, **_: heads.append(dict(params))
    )
    fetcher = make_fetcher(s3, tmp_path / "dl", parts_pool if ranged else None)
    result = fetcher.fetch(
        event(bucket, "uneven.bin", size=size, etag=etag), cancel=threading.Event()
    )
    assert result.verified_by == "md5-parts"
    assert (tmp_path / "dl" / "uneven.bin").read_bytes() == b"".join(parts)
    numbers = [h.get("PartNumber") for h in heads if h.get("PartNumber")]
    assert numbers == [1, 1, 2, 3]  # the assumption from part one, then every part


def test_kms_multipart_object_length_only_warned_or_refused(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    """SSE-KMS without a checksum: its ETag is no MD5, so only the length is left.
    best_effort places the file and names what could not be checked; strict refuses it
    before a byte is written."""
    parts = [os.urandom(PART), os.urandom(1000)]
    etag, size = upload(s3, bucket, "kms.bin", parts, ServerSideEncryption="aws:kms")
    obj = event(bucket, "kms.bin", size=size, etag=etag)
    lenient = make_fetcher(s3, tmp_path / "lenient", None)
    result = lenient.fetch(obj, cancel=threading.Event())
    assert result.verified_by == "length-only"
    assert result.unverifiable == ("ETag: not an MD5 of the bytes (aws:kms)",)
    strict = make_fetcher(s3, tmp_path / "strict", None, integrity_strict=True)
    with pytest.raises(UnverifiableError, match=r"only the length could be verified.*aws:kms"):
        strict.fetch(obj, cancel=threading.Event())
    assert not (tmp_path / "strict" / "kms.bin").exists()
    assert leftovers(tmp_path / "strict") == []


def test_checksum_this_host_cannot_compute_falls_back_to_part_md5s(
    emulator: Emulator, bucket: str, tmp_path: Path
) -> None:
    """A multipart object with a CRC32 checksum, fetched by a host that lacks CRC32: the part
    MD5s verify it, and the CRC32 is named as passed over."""
    client = emulator.client("s3")  # current botocore adds CRC32 to every part it uploads
    parts = [os.urandom(PART), os.urandom(1000)]
    etag, size = upload(client, bucket, "crc.bin", parts, ChecksumAlgorithm="CRC32")
    host = HostChecksums.detect().without("CRC32", why="no CRC32 here")
    fetcher = make_fetcher(client, tmp_path / "dl", None, checksums=host)
    result = fetcher.fetch(event(bucket, "crc.bin", size=size, etag=etag), cancel=threading.Event())
    assert result.verified_by == "md5-parts"
    assert result.unverifiable == ("CRC32: no CRC32 here",)


@pytest.mark.parametrize("ranged", PATHS)
def test_composite_checksum_verified_part_by_part(
    emulator: Emulator,
    bucket: str,
    tmp_path: Path,
    parts_pool: ThreadPoolExecutor,
    proxy: FaultProxy,
    ranged: bool,
) -> None:
    """A multipart upload with CRC32: its composite checksum (the CRC32 of the parts' CRC32s,
    "-2") verifies it; a flipped bit in transit is caught by it, not by the part MD5s."""
    client = emulator.client("s3")
    parts = [os.urandom(PART), os.urandom(PART // 2)]
    etag, size = upload(client, bucket, "crc.bin", parts, ChecksumAlgorithm="CRC32")
    head = client.head_object(Bucket=bucket, Key="crc.bin", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"].endswith("-2")
    pool = parts_pool if ranged else None
    fetcher = make_fetcher(client, tmp_path / "dl", pool)
    obj = event(bucket, "crc.bin", size=size, etag=etag)
    result = fetcher.fetch(obj, cancel=threading.Event())
    assert result.verified_by == "crc32-composite"
    assert (tmp_path / "dl" / "crc.bin").read_bytes() == b"".join(parts)
    proxy.add_rule(operation="GetObject", fault=FLIP_BYTE, match="crc.bin", mask=0x01)
    relayed = make_fetcher(emulator.client("s3", endpoint=proxy.url), tmp_path / "relayed", pool)
    with pytest.raises(IntegrityError, match="CRC32 composite checksum mismatch"):
        relayed.fetch(obj, cancel=threading.Event())
    assert not (tmp_path / "relayed" / "crc.bin").exists()
    assert leftovers(tmp_path / "relayed") == []
