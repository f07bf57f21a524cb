"""The integrity rule of verify.py, checksums.py and parts.py, without network.

Which check an object gets (every upload shape S3 has), the per-part digests of composite
checksums and multipart ETags, the part-size assumption and its exact fallback, and what a host
without awscrt can verify. Expected values are computed here with zlib/hashlib/awscrt, the same
libraries S3's own definitions name, never copied from the code under test.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
import types
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from s3sqsd.checksums import HostChecksums
from s3sqsd.errors import IntegrityError, PartsMismatchError
from s3sqsd.events import ObjectCreated
from s3sqsd.parts import equal_layout
from s3sqsd.ranged import aligned, part_ranges
from s3sqsd.verify import (
    CheckKind,
    Digests,
    Expected,
    choose_check,
    unchecked_reader,
    verify_file,
)

HOST = HostChecksums.detect()
OBJ = ObjectCreated(bucket="bkt", key="big.bin", event_name="ObjectCreated:CompleteMultipartUpload")
needs_crc64 = pytest.mark.skipif(
    not HOST.can("CRC64NVME"), reason="this dependency set's awscrt has no CRC64NVME"
)
needs_crc32c = pytest.mark.skipif(not HOST.can("CRC32C"), reason="awscrt is not installed")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def crc32(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


def crc32c(data: bytes) -> bytes:
    import awscrt.checksums

    return awscrt.checksums.crc32c(data).to_bytes(4, "big")


def crc64nvme(data: bytes) -> bytes:
    import awscrt.checksums

    return awscrt.checksums.crc64nvme(data).to_bytes(8, "big")


def sha(name: str) -> Callable[[bytes], bytes]:
    return lambda data: hashlib.new(name, data).digest()


DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "CRC32": crc32,
    "CRC32C": crc32c,
    "CRC64NVME": crc64nvme,
    "SHA1": sha("sha1"),
    "SHA256": sha("sha256"),
    "SHA512": sha("sha512"),
    "MD5": sha("md5"),
}


def composite(algorithm: str, parts: Sequence[bytes]) -> str:
    """S3's composite checksum: the checksum of the concatenated raw part checksums, "-N"."""
    digest = DIGESTS[algorithm]
    return f"{b64(digest(b''.join(digest(p) for p in parts)))}-{len(parts)}"


def multipart_etag(parts: Sequence[bytes]) -> str:
    joined = b"".join(hashlib.md5(p, usedforsecurity=False).digest() for p in parts)
    return f"{hashlib.md5(joined, usedforsecurity=False).hexdigest()}-{len(parts)}"


# Three parts of a multipart upload: two of one size, the last shorter (how uploaders cut).
PARTS = [os.urandom(3000), os.urandom(3000), os.urandom(1234)]
DATA = b"".join(PARTS)
SIZES = tuple(len(p) for p in PARTS)


def response(*, etag: str, headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
    """A GetObject answer as botocore gives it: parsed fields plus the raw headers."""
    return {
        "ContentLength": len(DATA),
        "ETag": f'"{etag}"',
        "ResponseMetadata": {"HTTPHeaders": headers or {}},
        **fields,
    }


def feed(digests: Digests, data: bytes, chunk: int) -> str:
    for start in range(0, len(data), chunk):
        digests.update(data[start : start + chunk])
    return digests.verify()


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def algorithms_here(*names: str) -> list[Any]:
    marks = {"CRC32C": needs_crc32c, "CRC64NVME": needs_crc64}
    return [pytest.param(n, marks=marks[n]) if n in marks else n for n in names]


class TestChooseCheck:
    """Which check each upload shape gets: the strongest S3 has that the host computes."""

    @pytest.mark.parametrize(
        "algorithm", algorithms_here("CRC64NVME", "CRC32", "CRC32C", "SHA1", "SHA256", "SHA512")
    )
    def test_full_object_checksum_from_the_raw_headers(self, algorithm: str) -> None:
        """Read from the raw header too: botocore 1.29 (bookworm) drops CRC64NVME and the
        newer algorithms from its parsed answer."""
        value = b64(DIGESTS[algorithm](DATA))
        headers = {
            f"x-amz-checksum-{algorithm.lower()}": value,
            "x-amz-checksum-type": "FULL_OBJECT",
        }
        check = choose_check(response(etag=multipart_etag(PARTS), headers=headers), host=HOST)
        assert (check.kind, check.algorithm, check.verified_by) == (
            CheckKind.FULL,
            algorithm,
            algorithm.lower(),
        )

    def test_composite_value_with_its_count(self) -> None:
        check = choose_check(
            response(etag=multipart_etag(PARTS), ChecksumSHA256=composite("SHA256", PARTS)),
            host=HOST,
        )
        assert (check.kind, check.parts, check.verified_by) == (
            CheckKind.COMPOSITE,
            3,
            "sha256-composite",
        )
        assert check.needs_layout

    def test_composite_type_without_count_takes_the_etag_count(self) -> None:
        value = composite("CRC32", PARTS).rpartition("-")[0]
        check = choose_check(
            response(etag=multipart_etag(PARTS), ChecksumCRC32=value, ChecksumType="COMPOSITE"),
            host=HOST,
        )
        assert (check.kind, check.parts) == (CheckKind.COMPOSITE, 3)

    def test_multipart_md5_etag_is_checked_per_part(self) -> None:
        check = choose_check(response(etag=multipart_etag(PARTS)), host=HOST)
        assert (check.kind, check.parts, check.verified_by) == (CheckKind.MD5_PARTS, 3, "md5-parts")

    def test_host_without_awscrt_falls_back_to_part_md5s_and_says_so(self) -> None:
        """The default S3 checksum on a host without CRC64NVME: the part MD5s, never silently."""
        host = HOST.without("CRC64NVME", why="awscrt missing")
        headers = {"x-amz-checksum-crc64nvme": b64(bytes(8)), "x-amz-checksum-type": "FULL_OBJECT"}
        check = choose_check(response(etag=multipart_etag(PARTS), headers=headers), host=host)
        assert check.kind is CheckKind.MD5_PARTS
        assert check.unverifiable == ("CRC64NVME: awscrt missing",)

    @pytest.mark.parametrize(
        ("fields", "why"),
        [
            ({"ServerSideEncryption": "aws:kms"}, "ETag: not an MD5 of the bytes (aws:kms)"),
            ({"SSECustomerAlgorithm": "AES256"}, "ETag: not an MD5 of the bytes (SSE-C)"),
        ],
    )
    def test_encrypted_without_usable_checksum_is_length_only(
        self, fields: dict[str, str], why: str
    ) -> None:
        host = HOST.without("CRC64NVME", why="awscrt missing")
        headers = {"x-amz-checksum-crc64nvme": b64(bytes(8))}
        check = choose_check(
            response(etag=multipart_etag(PARTS), headers=headers, **fields), host=host
        )
        assert check.kind is CheckKind.LENGTH
        assert check.verified_by == "length-only"
        assert check.unverifiable == ("CRC64NVME: awscrt missing", why)

    def test_xxhash_is_passed_over_by_name(self) -> None:
        headers = {"x-amz-checksum-xxhash64": b64(bytes(8))}
        check = choose_check(response(etag="0" * 32, headers=headers), host=HOST)
        assert check.kind is CheckKind.MD5
        assert check.unverifiable[0].startswith("XXHASH64: not verified by s3sqsd yet")


class TestPerPartDigests:
    @pytest.mark.parametrize("algorithm", algorithms_here("CRC32", "CRC32C", "SHA1", "SHA256"))
    @pytest.mark.parametrize("chunk", [1, 999, 3000, 4096, len(DATA)])
    def test_composite_checksum_verified_part_by_part(self, algorithm: str, chunk: int) -> None:
        """Any chunking, chunks straddling part boundaries included, gives S3's composite."""
        fields = {f"Checksum{algorithm}": composite(algorithm, PARTS)}
        expected = Expected.from_response(
            response(etag=multipart_etag(PARTS), **fields), OBJ, host=HOST
        )
        digests = Digests(expected, host=HOST, layout=SIZES)
        assert feed(digests, DATA, chunk) == f"{algorithm.lower()}-composite"

    @pytest.mark.parametrize("algorithm", algorithms_here("CRC32", "SHA256"))
    @pytest.mark.parametrize("at", [0, 2999, 3000, len(DATA) - 1])
    def test_composite_catches_a_flipped_bit(self, algorithm: str, at: int) -> None:
        fields = {f"Checksum{algorithm}": composite(algorithm, PARTS)}
        expected = Expected.from_response(
            response(etag=multipart_etag(PARTS), **fields), OBJ, host=HOST
        )
        digests = Digests(expected, host=HOST, layout=SIZES)
        with pytest.raises(
            PartsMismatchError, match=r"s3://bkt/big.bin: [A-Z0-9]+ composite checksum mismatch"
        ):
            feed(digests, flipped(DATA, at), 1000)

    @pytest.mark.parametrize("chunk", [7, 3000, len(DATA)])
    def test_multipart_etag_verified_part_by_part(self, chunk: int) -> None:
        expected = Expected.from_response(response(etag=multipart_etag(PARTS)), OBJ, host=HOST)
        assert feed(Digests(expected, host=HOST, layout=SIZES), DATA, chunk) == "md5-parts"
        with pytest.raises(PartsMismatchError, match="MD5 of parts mismatch"):
            feed(Digests(expected, host=HOST, layout=SIZES), flipped(DATA, 4000), chunk)

    def test_wrong_part_sizes_fail(self) -> None:
        """Cut elsewhere, the same bytes give another digest: the sizes matter."""
        expected = Expected.from_response(response(etag=multipart_etag(PARTS)), OBJ, host=HOST)
        with pytest.raises(PartsMismatchError):
            feed(Digests(expected, host=HOST, layout=(3001, 2999, 1234)), DATA, 500)

    def test_a_per_part_check_needs_the_sizes(self) -> None:
        expected = Expected.from_response(response(etag=multipart_etag(PARTS)), OBJ, host=HOST)
        with pytest.raises(ValueError, match="needs the sizes of its 3 parts"):
            Digests(expected, host=HOST)

    @needs_crc64
    def test_full_object_crc64nvme_of_a_multipart_object(self) -> None:
        headers = {"x-amz-checksum-crc64nvme": b64(crc64nvme(DATA))}
        expected = Expected.from_response(
            response(etag=multipart_etag(PARTS), headers=headers), OBJ, host=HOST
        )
        assert feed(Digests(expected, host=HOST), DATA, 1000) == "crc64nvme"
        with pytest.raises(IntegrityError, match="CRC64NVME checksum mismatch"):
            feed(Digests(expected, host=HOST), flipped(DATA, 10), 1000)


class TestLayout:
    @pytest.mark.parametrize(
        ("total", "parts", "first", "want"),
        [
            (7234, 3, 3000, (3000, 3000, 1234)),
            (9000, 3, 3000, (3000, 3000, 3000)),
            (100, 1, 100, (100,)),
            (6000, 3, 3000, None),  # the last part would be empty
            (9001, 3, 3000, None),  # the last part would be larger than the others
            (100, 1, 99, None),
            (10, 2, 0, None),
        ],
    )
    def test_equal_layout(
        self, total: int, parts: int, first: int, want: tuple[int, ...] | None
    ) -> None:
        assert equal_layout(total=total, parts=parts, first=first) == want

    def test_file_checked_again_on_the_exact_sizes(self, tmp_path: Path) -> None:
        """Uneven parts: the assumed equal cut fails, the exact one passes from the file."""
        uneven = [os.urandom(3000), os.urandom(2000), os.urandom(2500)]
        data = b"".join(uneven)
        path = tmp_path / "f"
        path.write_bytes(data)
        expected = Expected.from_response(
            {"ContentLength": len(data), "ETag": f'"{multipart_etag(uneven)}"'}, OBJ, host=HOST
        )
        assumed = equal_layout(total=len(data), parts=3, first=3000)
        assert assumed == (3000, 3000, 1500)
        with pytest.raises(PartsMismatchError):
            feed(Digests(expected, host=HOST, layout=assumed), data, 4096)
        fd = os.open(path, os.O_RDONLY)
        try:
            exact = Digests(expected, host=HOST, layout=(3000, 2000, 2500))
            verified = verify_file(fd, exact, chunk_size=1024, cancel=threading.Event(), obj=OBJ)
        finally:
            os.close(fd)
        assert verified == "md5-parts"


class TestAlignedRanges:
    def test_one_range_per_part(self) -> None:
        ranges = [(r.start, r.end) for r in part_ranges((3000, 3000, 1234))]
        assert ranges == [(0, 2999), (3000, 5999), (6000, 7233)]

    @pytest.mark.parametrize(
        ("sizes", "want"),
        [
            ((8, 8, 3), True),
            ((64, 64, 1), True),  # parts of 8 ranges: still fetched whole
            ((65, 1), False),  # a part too long for one thread: ranges, cut by the reader
            ((8, 0), False),  # an empty part cannot be a range
            (None, False),  # no per-part check
        ],
    )
    def test_when_ranges_follow_parts(self, sizes: tuple[int, ...] | None, want: bool) -> None:
        assert aligned(sizes, 8) is want


class TestHostChecksums:
    def test_without_awscrt(self) -> None:
        def no_crt(name: str) -> types.ModuleType:
            raise ImportError(name)

        host = HostChecksums.detect(import_module=no_crt)
        assert not host.can("CRC32C")
        assert not host.can("CRC64NVME")
        assert host.can("CRC32")
        assert host.can("SHA256")
        assert "awscrt missing" in host.why_not("CRC64NVME")
        assert "cannot verify" in host.summary()
        assert "CRC64NVME (awscrt missing" in host.summary()

    def test_awscrt_without_crc64nvme(self) -> None:
        """Debian bookworm's awscrt 0.16.8: CRC32C yes, CRC64NVME no."""
        old = types.ModuleType("awscrt.checksums")
        old.crc32c = lambda data, previous=0: zlib.crc32(data, previous)  # type: ignore[attr-defined]
        host = HostChecksums.detect(import_module=lambda name: old)
        assert host.can("CRC32C")
        assert not host.can("CRC64NVME")
        assert "older than 0.23" in host.why_not("CRC64NVME")

    @needs_crc64
    def test_known_values(self) -> None:
        """The catalogue check values of each CRC ("123456789"), through our hashers."""
        for algorithm, value in (
            ("CRC32", 0xCBF43926),
            ("CRC32C", 0xE3069283),
            ("CRC64NVME", 0xAE8B14860A799888),
        ):
            hasher = HOST.new(algorithm)
            hasher.update(b"1234")
            hasher.update(memoryview(b"56789"))
            assert int.from_bytes(hasher.digest(), "big") == value, algorithm


def test_botocore_checksum_pass_is_skipped() -> None:
    """Reading through StreamingBody's own read skips botocore's second checksum pass (a
    mismatch it would raise at the end) while keeping the bytes."""
    from botocore.response import StreamingBody

    calls: list[int] = []

    class Validating(StreamingBody):  # type: ignore[misc]
        def read(self, amt: int | None = None) -> bytes:
            calls.append(1)
            raise AssertionError("the validating read must not be used")

    import io

    body = Validating(io.BytesIO(DATA), len(DATA))
    read = unchecked_reader(body)
    got = b"".join(iter(lambda: read(1000), b""))
    assert got == DATA
    assert calls == []
