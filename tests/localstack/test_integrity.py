"""Integrity against LocalStack: objects uploaded every way S3 allows, downloaded clean and
corrupted in transit.

For each shape of object (single PUT or multipart; no checksum, so that S3 adds its CRC64NVME,
or CRC32 / CRC32C / SHA-1 / SHA-256; multipart checksums COMPOSITE or FULL_OBJECT; below and
above the daemon's ``large_objects`` threshold, i.e. one GET or parallel ranged GETs):

- ``test_clean_download``: the object lands byte for byte and its message is deleted;
- ``test_corrupted_in_transit_never_lands``: with the project's FaultProxy as the daemon's S3
  endpoint, flipping one byte of every GetObject response body for that object, the file never
  appears at its final path and the message is not deleted (it is retried), over a window of
  two rejected attempts; the daemon keeps running.

Every checksum here is real: LocalStack verifies the checksums a client sends and refuses a
wrong one (``BadDigest``), and it computes the CRC64NVME itself. CRC32C and CRC64NVME values are
computed with awscrt in LocalStack's own virtualenv (``crt_checksum``), so the uploads do not
depend on what the tests' virtualenv has.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config

from s3sqsd.checksums import HostChecksums
from tests.support.daemon import (
    DaemonProcess,
    final_path,
    temp_files,
    visible_files,
    wait_queue_empty,
)
from tests.support.emulator import Pipeline
from tests.support.faultproxy import FLIP_BYTE, proxy_for
from tests.support.localstack import LocalStack, crt_checksum

pytestmark = pytest.mark.localstack

KiB = 1 << 10
MiB = 1 << 20
PART = 5 * MiB  # S3's minimum size for every part but the last
# Objects of LARGE or more bytes are fetched as ranged GETs of RANGE: the "big-" shapes below.
LARGE = 8 * MiB
RANGE = 4 * MiB
CRT_ALGORITHMS = ("CRC32C", "CRC64NVME")
HOST = HostChecksums.detect()


@dataclass(frozen=True)
class Shape:
    """How one object is uploaded: ``sizes`` of one item is a PutObject, more a multipart
    upload with those part sizes; ``algorithm`` None sends no checksum (S3 adds CRC64NVME);
    ``full_object`` asks for a FULL_OBJECT multipart checksum instead of a COMPOSITE one."""

    name: str
    sizes: tuple[int, ...]
    algorithm: str | None = None
    full_object: bool = False

    @property
    def multipart(self) -> bool:
        return len(self.sizes) > 1


SHAPES = (
    Shape("put-none", (300 * KiB + 1,)),
    Shape("put-crc32", (300 * KiB + 2,), "CRC32"),
    Shape("put-crc32c", (300 * KiB + 3,), "CRC32C"),
    Shape("put-sha1", (300 * KiB + 4,), "SHA1"),
    Shape("put-sha256", (300 * KiB + 5,), "SHA256"),
    Shape("mpu-none", (PART, MiB + 1)),
    Shape("mpu-crc32-composite", (PART, MiB + 2), "CRC32"),
    Shape("mpu-crc32c-composite", (PART, MiB + 3), "CRC32C"),
    Shape("mpu-sha1-composite", (PART, MiB + 4), "SHA1"),
    Shape("mpu-sha256-composite", (PART, MiB + 5), "SHA256"),
    Shape("mpu-crc32-full", (PART, MiB + 6), "CRC32", full_object=True),
    Shape("mpu-crc32c-full", (PART, MiB + 7), "CRC32C", full_object=True),
    Shape("mpu-crc64nvme-full", (PART, MiB + 8), "CRC64NVME", full_object=True),
    Shape("big-put-none", (9 * MiB + 1,)),
    Shape("big-put-sha256", (9 * MiB + 2,), "SHA256"),
    Shape("big-mpu-none", (PART, 4 * MiB + 1)),
    Shape("big-mpu-crc32-composite", (PART, 4 * MiB + 2), "CRC32"),
    Shape("big-mpu-crc32-full", (PART, 4 * MiB + 3), "CRC32", full_object=True),
    Shape("big-mpu-crc32c-full", (PART, PART, 1 * MiB + 4), "CRC32C", full_object=True),
)


def upload(localstack: LocalStack, bucket: str, key: str, shape: Shape) -> bytes:
    """Upload an object of ``shape`` at ``key``; returns its bytes.

    The client computes no checksum of its own accord (``when_required``), so "none" means
    none; CRC32, SHA-1 and SHA-256 are botocore's, CRC32C and CRC64NVME are given as values.
    """
    s3 = localstack.client("s3", config=Config(request_checksum_calculation="when_required"))
    parts = [os.urandom(size) for size in shape.sizes]
    algorithm = shape.algorithm

    def checksum_args(data: bytes) -> dict[str, str]:
        if algorithm is None:
            return {}
        if algorithm in CRT_ALGORITHMS:
            return {f"Checksum{algorithm}": crt_checksum(localstack.python, algorithm, data)}
        return {"ChecksumAlgorithm": algorithm}

    if not shape.multipart:
        s3.put_object(Bucket=bucket, Key=key, Body=parts[0], **checksum_args(parts[0]))
        return parts[0]
    create: dict[str, str] = {}
    if algorithm is not None:
        create["ChecksumAlgorithm"] = algorithm
        create["ChecksumType"] = "FULL_OBJECT" if shape.full_object else "COMPOSITE"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create)["UploadId"]
    done: list[dict[str, Any]] = []
    for number, data in enumerate(parts, 1):
        answer = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,
            **checksum_args(data),
        )
        part: dict[str, Any] = {"PartNumber": number, "ETag": answer["ETag"]}
        if algorithm is not None:
            part[f"Checksum{algorithm}"] = answer[f"Checksum{algorithm}"]
        done.append(part)
    complete: dict[str, str] = {}
    if shape.full_object:
        complete["ChecksumType"] = "FULL_OBJECT"
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": done},
        **complete,
    )
    return b"".join(parts)


def expected_verified_by(shape: Shape) -> str:
    """The check the daemon must name: the object's checksum (S3 adds CRC64NVME when the
    upload had none) when this host computes it (the daemon runs on the tests' interpreter),
    else the MD5 ETag, part by part for a multipart object. Never the length alone."""
    algorithm = shape.algorithm or "CRC64NVME"
    if HOST.can(algorithm):
        composite = shape.multipart and shape.algorithm is not None and not shape.full_object
        return f"{algorithm.lower()}-composite" if composite else algorithm.lower()
    return "md5-parts" if shape.multipart else "md5"


def check_verified_by(event: dict[str, Any], shape: Shape) -> None:
    assert event["verified_by"] == expected_verified_by(shape), event


def config_for(
    make_config: Callable[..., dict[str, Any]], pipeline: Pipeline, **overrides: Any
) -> dict[str, Any]:
    large_objects = {"threshold_bytes": LARGE, "part_size_bytes": RANGE, "concurrency": 3}
    return make_config(pipeline, large_objects=large_objects, workers=2, **overrides)


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
def test_clean_download(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    shape: Shape,
) -> None:
    """Without faults, the object lands byte for byte and its message is deleted."""
    pipeline = localstack.pipeline()
    key = f"clean/{shape.name}.bin"
    body = upload(localstack, pipeline.bucket, key, shape)
    daemon = spawn_daemon(config_for(make_config, pipeline))
    event = daemon.wait_for_event("object.downloaded", key=key, timeout=40)
    wait_queue_empty(localstack, pipeline.queue_url)
    assert visible_files(download_folder) == {key: body}
    assert temp_files(download_folder) == []
    assert event["size"] == len(body)
    check_verified_by(event, shape)
    assert daemon.stop() == 0
    assert daemon.problems() == []


@pytest.mark.parametrize("shape", SHAPES, ids=[shape.name for shape in SHAPES])
def test_corrupted_in_transit_never_lands(
    localstack: LocalStack,
    make_config: Callable[..., dict[str, Any]],
    spawn_daemon: Callable[..., DaemonProcess],
    download_folder: Path,
    shape: Shape,
) -> None:
    """One byte of every GetObject body for the object is flipped on the way (same length,
    so only a checksum can tell): the file never appears at its final path, the message stays
    in the queue (retried, not deleted, not dead-lettered), and the daemon keeps running.

    The window: until the daemon has rejected two attempts, or the file appeared, or the
    daemon logged it as downloaded (the last two are the failure this test exists for).
    """
    pipeline = localstack.pipeline(max_receive_count=10)
    assert pipeline.dlq_url is not None
    key = f"corrupt/{shape.name}.bin"
    upload(localstack, pipeline.bucket, key, shape)
    target = final_path(download_folder, key)
    with proxy_for(localstack, seed=7) as proxy:
        rule = proxy.add_rule(
            operation="GetObject", service="s3", fault=FLIP_BYTE, match=f"/{pipeline.bucket}/{key}"
        )
        config = config_for(
            make_config,
            pipeline,
            s3_endpoint_url=proxy.url,
            retry={"max_attempts": 10, "base_delay_seconds": 1, "max_delay_seconds": 1},
        )
        daemon = spawn_daemon(config)

        def settled() -> bool:
            return (
                target.exists()
                or bool(daemon.events("object.downloaded", key=key))
                or (rule.fired >= 2 and len(daemon.events("message.retry")) >= 2)
            )

        daemon.wait_for(settled, timeout=60, what="two rejected attempts (or the file)")
        downloaded = [
            {name: e.get(name) for name in ("size", "etag", "verified_by", "message_id")}
            for e in daemon.events("object.downloaded", key=key)
        ]
        retries = [str(e.get("error")) for e in daemon.events("message.retry")]
        assert not target.exists(), (
            f"corrupted bytes landed at {target} after {rule.fired} flipped GET(s);"
            f" object.downloaded: {downloaded}"
        )
        assert downloaded == [], downloaded
        assert rule.fired >= 2
        assert proxy.skipped == {}  # every flip hit a body byte
        visible, in_flight = localstack.queue_counts(pipeline.queue_url)
        assert visible + in_flight == 1, "the message was deleted while its object was corrupt"
        assert localstack.queue_counts(pipeline.dlq_url) == (0, 0)
        assert all("integrity" in e.get("reason", "") for e in daemon.events("message.retry")), (
            retries
        )
        assert daemon.running()
        assert daemon.stop() == 0  # before the proxy goes
    assert visible_files(download_folder) == {}
    assert temp_files(download_folder) == []
