"""Verification and error classification of the fetcher, without network or file system."""

from __future__ import annotations

import base64
import errno
import hashlib
import re
import threading
import zlib
from pathlib import Path
from typing import Any

import pytest
import urllib3.exceptions
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    FlexibleChecksumError,
    ReadTimeoutError,
)

from s3sqsd.checksums import HostChecksums
from s3sqsd.errors import (
    DownloadCancelledError,
    FetchError,
    IntegrityError,
    LocalError,
    MessageError,
    ObjectAccessError,
    PathConflictError,
    UnsafeKeyError,
)
from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import Provenance, local_error
from s3sqsd.verify import CheckKind, Digests, Expected, remote_error, stream_and_verify

DATA = b"The quick brown fox jumps over the lazy dog. " * 50
MD5 = hashlib.md5(DATA, usedforsecurity=False).hexdigest()
OBJ = ObjectCreated(bucket="bkt", key="dir/file.txt", event_name="ObjectCreated:Put")
HOST = HostChecksums.detect()


def digests_for(response: dict[str, Any], obj: ObjectCreated = OBJ) -> Digests:
    return Digests(Expected.from_response(response, obj, host=HOST), host=HOST)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


SHA256 = b64(hashlib.sha256(DATA).digest())
SHA1 = b64(hashlib.sha1(DATA, usedforsecurity=False).digest())
CRC32 = b64(zlib.crc32(DATA).to_bytes(4, "big"))


class FakeBody:
    """Hands out ``data`` in reads of at most ``amt``; records every ``amt`` asked for."""

    def __init__(
        self, data: bytes, *, fail_after: int | None = None, error: Exception | None = None
    ):
        self._data = data
        self._pos = 0
        self.asked: list[int] = []
        self._fail_after = fail_after
        self._error = error

    def read(self, amt: int) -> bytes:
        self.asked.append(amt)
        if self._fail_after is not None and self._pos >= self._fail_after:
            assert self._error is not None
            raise self._error
        chunk = self._data[self._pos : self._pos + amt]
        self._pos += len(chunk)
        return chunk


def run(
    body: FakeBody,
    response: dict[str, Any],
    *,
    obj: ObjectCreated = OBJ,
    cancel: threading.Event | None = None,
    chunk_size: int = 100,
) -> bytes:
    sink = bytearray()
    written = stream_and_verify(
        body,
        sink.extend,
        digests=digests_for(response, obj),
        obj=obj,
        chunk_size=chunk_size,
        cancel=cancel or threading.Event(),
    )
    assert written == len(sink)
    return bytes(sink)


def ok_response(**extra: Any) -> dict[str, Any]:
    return {"ContentLength": len(DATA), "ETag": f'"{MD5}"', **extra}


class TestStreamAndVerify:
    def test_copies_in_bounded_chunks(self) -> None:
        """All bytes arrive, every read asks for at most chunk_size, never the whole body."""
        body = FakeBody(DATA)
        assert run(body, ok_response(ChecksumSHA256=SHA256), chunk_size=64) == DATA
        assert set(body.asked) == {64}
        assert len(body.asked) == len(DATA) // 64 + 2  # the last partial chunk, then EOF

    def test_all_checks_pass(self) -> None:
        """Length, event size, MD5 and every supported checksum agree: no error."""
        obj = ObjectCreated("bkt", "k", "ObjectCreated:Put", size=len(DATA), etag=MD5)
        response = ok_response(ChecksumSHA256=SHA256, ChecksumSHA1=SHA1, ChecksumCRC32=CRC32)
        assert run(FakeBody(DATA), response, obj=obj) == DATA

    def test_short_body(self) -> None:
        """Fewer bytes than Content-Length: IntegrityError with expected and got."""
        with pytest.raises(IntegrityError, match=rf"s3://bkt/dir/file.txt.*{len(DATA)}.*got 10"):
            run(FakeBody(DATA[:10]), ok_response(ETag='"multi-2"'))

    def test_event_size_checked_for_the_same_object(self) -> None:
        """Same ETag as the event: its size must match; another ETag: a newer object."""
        same = ObjectCreated("bkt", "k", "ObjectCreated:Put", size=len(DATA) + 1, etag=MD5)
        with pytest.raises(IntegrityError, match=r"size mismatch.*event"):
            run(FakeBody(DATA), ok_response(), obj=same)
        newer = ObjectCreated("bkt", "k", "ObjectCreated:Put", size=3, etag="0" * 32)
        assert run(FakeBody(DATA), ok_response(), obj=newer) == DATA

    def test_md5_mismatch(self) -> None:
        """A plain ETag is the MD5: other bytes of the same length are caught."""
        corrupted = b"X" + DATA[1:]
        with pytest.raises(
            IntegrityError, match=re.escape(f"MD5 mismatch: expected {MD5} (ETag), got ")
        ):
            run(FakeBody(corrupted), ok_response())

    @pytest.mark.parametrize(
        "extra",
        [
            {"ServerSideEncryption": "aws:kms"},
            {"ServerSideEncryption": "aws:kms:dsse"},
            {"SSECustomerAlgorithm": "AES256"},
        ],
        ids=["sse-kms", "dsse-kms", "sse-c"],
    )
    def test_md5_skipped_where_etag_is_not_md5(self, extra: dict[str, Any]) -> None:
        """SSE-KMS and SSE-C ETags are not MD5s of the bytes: not compared (length only)."""
        response = {"ContentLength": len(DATA), "ETag": '"' + "f" * 32 + '"', **extra}
        assert run(FakeBody(DATA), response) == DATA
        digests = digests_for(response)
        digests.update(DATA)
        assert digests.verify() == "length-only"

    @pytest.mark.parametrize(
        ("field", "good"),
        [("ChecksumSHA256", SHA256), ("ChecksumSHA1", SHA1), ("ChecksumCRC32", CRC32)],
    )
    def test_checksum_mismatch(self, field: str, good: str) -> None:
        """Each full-object checksum is verified: a flipped byte is an IntegrityError."""
        corrupted = DATA[:-1] + b"!"
        # A multipart ETag so that MD5 does not catch it first.
        response = {"ContentLength": len(DATA), "ETag": '"abc-2"', field: good}
        with pytest.raises(
            IntegrityError, match=re.escape(f"checksum mismatch: expected {good}, got ")
        ):
            run(FakeBody(corrupted), response)
        assert run(FakeBody(DATA), response) == DATA

    def test_unverifiable_checksums_fall_back_to_the_length(self) -> None:
        """A host without CRC32C and CRC64NVME and an ETag that is no MD5: the length only,
        and the passed-over checksums are named (never silently weaker)."""
        host = HOST.without("CRC32C", "CRC64NVME", why="awscrt missing")
        response = {
            "ContentLength": len(DATA),
            "ETag": '"abc-2"',
            "ChecksumCRC64NVME": "AAAAAAAAAAA=",
        }
        expected = Expected.from_response(response, OBJ, host=host)
        assert expected.check.kind is CheckKind.LENGTH
        assert expected.check.unverifiable == (
            "CRC64NVME: awscrt missing",
            "ETag: not an MD5 ('abc-2')",
        )

    def test_cancel_between_chunks(self) -> None:
        """A cancel stops the copy at the next chunk boundary."""
        cancel = threading.Event()
        sink = bytearray()

        def write(chunk: bytes) -> None:
            sink.extend(chunk)
            cancel.set()

        with pytest.raises(DownloadCancelledError, match=r"s3://bkt/dir/file.txt cancelled"):
            stream_and_verify(
                FakeBody(DATA),
                write,
                digests=digests_for(ok_response()),
                obj=OBJ,
                chunk_size=100,
                cancel=cancel,
            )
        assert len(sink) == 100

    @pytest.mark.parametrize(
        "error",
        [
            ReadTimeoutError(endpoint_url="https://s3.example/k?X-Amz-Signature=secret"),
            urllib3.exceptions.ProtocolError("Connection broken"),
            ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
        ],
        ids=["read-timeout", "protocol", "reset"],
    )
    def test_read_errors_are_transient(self, error: Exception) -> None:
        """Network failures mid-body: FetchError naming the object, no signature in the text."""
        with pytest.raises(FetchError, match=re.escape("s3://bkt/dir/file.txt")) as caught:
            run(FakeBody(DATA, fail_after=200, error=error), ok_response())
        assert "secret" not in str(caught.value)

    def test_write_errors_propagate_unchanged(self) -> None:
        """A local write failure is not mistaken for a network one."""

        def write(chunk: bytes) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        with pytest.raises(OSError, match="No space left"):
            stream_and_verify(
                FakeBody(DATA),
                write,
                digests=digests_for(ok_response()),
                obj=OBJ,
                chunk_size=100,
                cancel=threading.Event(),
            )

    def test_botocore_checksum_error_is_integrity_error(self) -> None:
        """botocore's own checksum validation (FlexibleChecksumError) maps to IntegrityError."""
        error = FlexibleChecksumError(error_msg="Expected checksum X did not match calculated Y")
        with pytest.raises(IntegrityError, match=re.escape("s3://bkt/dir/file.txt")):
            run(FakeBody(DATA, fail_after=len(DATA), error=error), ok_response())


def client_error(code: str, status: int, message: str = "msg") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetObject")


class TestRemoteError:
    @pytest.mark.parametrize(
        ("code", "status"),
        [
            ("NoSuchKey", 404),
            ("404", 404),
            ("NoSuchVersion", 404),
            ("NoSuchBucket", 404),
            ("SlowDown", 503),
            ("ThrottlingException", 400),
            ("RequestTimeout", 400),
            ("InternalError", 500),
            ("ServiceUnavailable", 503),
            ("502", 502),
            ("ExpiredToken", 400),
            ("KMS.ThrottlingException", 400),
        ],
    )
    def test_transient_codes(self, code: str, status: int) -> None:
        error = remote_error(client_error(code, status), OBJ)
        assert type(error) is FetchError
        assert "s3://bkt/dir/file.txt" in str(error)
        assert code in str(error)

    @pytest.mark.parametrize(
        "code",
        ["AccessDenied", "403", "InvalidObjectState", "KMS.DisabledException", "KMSAccessDenied"],
    )
    def test_permanent_codes(self, code: str) -> None:
        error = remote_error(client_error(code, 403), OBJ)
        assert type(error) is ObjectAccessError
        assert "s3://bkt/dir/file.txt" in str(error)

    def test_botocore_errors(self) -> None:
        error = remote_error(EndpointConnectionError(endpoint_url="https://s3.example/"), OBJ)
        assert type(error) is FetchError
        assert "EndpointConnectionError" in str(error)

    def test_presigned_query_is_redacted(self) -> None:
        message = "see https://b.s3.example/k?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=abc"
        error = remote_error(client_error("InternalError", 500, message), OBJ)
        assert "AKIAEXAMPLE" not in str(error)
        assert "abc" not in str(error)


class TestLocalError:
    @pytest.mark.parametrize(
        ("number", "kind"),
        [
            (errno.ENAMETOOLONG, UnsafeKeyError),
            (errno.ENOTDIR, PathConflictError),
            (errno.EISDIR, PathConflictError),
            (errno.EEXIST, PathConflictError),
            (errno.ENOSPC, LocalError),
            (errno.EDQUOT, LocalError),
            (errno.EROFS, LocalError),
            (errno.EACCES, LocalError),
            (errno.EPERM, LocalError),
            (errno.EIO, LocalError),
        ],
    )
    def test_errno_mapping(self, number: int, kind: type[MessageError]) -> None:
        """Each errno maps to its class; the text names the path and the object."""
        error = local_error(OSError(number, "boom"), Path("/dl/dir/file.txt"), OBJ, "cannot x")
        assert type(error) is kind
        assert "/dl/dir/file.txt" in str(error)
        assert "s3://bkt/dir/file.txt" in str(error)


class TestProvenanceCodec:
    def test_round_trip_is_compact(self) -> None:
        value = Provenance("b", "k é", "v1", "e", "0A", 3)
        raw = value.encode()
        assert b" " not in raw.replace(b"k \\u00e9", b"")
        assert Provenance.decode(raw) == value

    @pytest.mark.parametrize(
        "raw",
        [
            b"not json",
            b"[]",
            b'{"bucket":"b","key":"k","size":-1}',
            b'{"bucket":1,"key":"k","size":1}',
        ],
    )
    def test_foreign_values_are_ignored(self, raw: bytes) -> None:
        assert Provenance.decode(raw) is None


def test_expected_ignores_event_size_without_etag() -> None:
    """No ETag in the event: nothing proves it is the same object, so no size check."""
    obj = ObjectCreated("bkt", "k", "ObjectCreated:Put", size=1)
    assert Expected.from_response(ok_response(), obj, host=HOST).event_size is None


class TestMd5OnlyWithoutChecksum:
    """The MD5 ETag is verified only when no checksum is (verify.py says why)."""

    def check(self, **extra: Any) -> Any:
        return Expected.from_response(ok_response(**extra), OBJ, host=HOST).check

    def test_no_checksum_md5_checked(self) -> None:
        check = self.check()
        assert (check.kind, check.expected) == (CheckKind.MD5, bytes.fromhex(MD5))

    @pytest.mark.parametrize("field", ["ChecksumSHA256", "ChecksumSHA1", "ChecksumCRC32"])
    def test_checksum_we_compute_replaces_md5(self, field: str) -> None:
        value = {"ChecksumSHA256": SHA256, "ChecksumSHA1": SHA1, "ChecksumCRC32": CRC32}[field]
        check = self.check(**{field: value})
        assert check.kind is CheckKind.FULL
        assert check.algorithm == field.removeprefix("Checksum")

    @pytest.mark.parametrize("value", ["not base64!", "AAAA", ""])
    def test_unusable_checksum_keeps_md5(self, value: str) -> None:
        """A garbled checksum (not base64, or not 4 bytes for a CRC32) verifies nothing."""
        assert self.check(ChecksumCRC32=value).kind is CheckKind.MD5

    def test_uncomputable_algorithm_keeps_md5(self) -> None:
        """CRC32C on a host without awscrt: the MD5, and the CRC32C named as passed over."""
        host = HOST.without("CRC32C", why="awscrt missing")
        check = Expected.from_response(ok_response(ChecksumCRC32C="AAAAAA=="), OBJ, host=host)
        assert check.check.kind is CheckKind.MD5
        assert check.check.unverifiable == ("CRC32C: awscrt missing",)

    def test_strongest_checksum_only(self) -> None:
        check = self.check(ChecksumCRC32=CRC32, ChecksumSHA256=SHA256)
        assert (check.algorithm, check.verified_by) == ("SHA256", "sha256")

    def test_corruption_caught_by_checksum_instead_of_md5(self) -> None:
        corrupted = b"X" + DATA[1:]
        with pytest.raises(IntegrityError, match="CRC32 checksum mismatch"):
            run(FakeBody(corrupted), ok_response(ChecksumCRC32=CRC32))
