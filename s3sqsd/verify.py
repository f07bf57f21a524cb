"""What the bytes of one download must match, and the classification of a failed GET (pure).

Nothing here touches the file system or opens a connection: ``stream_and_verify`` reads a body
it is given and hands the bytes to a ``write`` it is given. The rule for what is checked:

- always the length: Content-Length (or the HEAD's, for a ranged download) and, when the ETag is
  the event's (the same object), the size the event announced;
- a full-object checksum S3 stored with the object (SHA256, SHA1, CRC32 computed here; CRC32C
  and CRC64NVME when botocore >= 1.36 validates them with ``awscrt``);
- the MD5 ETag (single-part, not SSE-KMS/SSE-C) only when no such checksum is verified.

Why not both: the MD5 costs 1.5 s of CPU per GiB here, more than the rest of a download, and it
guards against exactly what the CRC32 S3 computed at upload already guards against (bytes
changed between S3's store and this disk); the AWS SDKs validate only the checksum too.
Objects uploaded without a checksum (older SDKs, the console before 2025) keep the MD5 check.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import http.client
import re
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3.exceptions
from botocore.exceptions import BotoCoreError, ClientError

from s3sqsd.errors import FetchError, IntegrityError, MessageError, ObjectAccessError
from s3sqsd.events import ObjectCreated, object_url

# S3 error codes that no retry can fix for this object. Everything else (NoSuchKey right after
# the notification, throttling, 5xx, expired credentials, unknown codes) is retried by the
# worker and dead-lettered after retry.max_attempts.
_PERMANENT_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidObjectState"}
)
_PERMANENT_PREFIXES = ("KMS",)  # "KMS.DisabledException", "KMSAccessDenied", ...
_TRANSIENT_WORDS = ("Throttl", "Internal", "Timeout", "Unavailable")  # KMS having a bad minute
_URL_QUERY = re.compile(r"\?[^\s\"'<>]*")


def s3_url(obj: ObjectCreated) -> str:
    """``s3://bucket/key`` as error texts show it (long keys cut, unprintables escaped)."""
    return object_url(obj.bucket, obj.key)


def _redact(text: str) -> str:
    """Drop URL query strings (a presigned URL carries its signature there)."""
    return _URL_QUERY.sub("?...", text)


# ---- verification (pure: no file system, no network) ------------------------------------------


class Readable(Protocol):
    def read(self, amt: int, /) -> bytes: ...


def strip_etag(etag: str | None) -> str | None:
    return None if etag is None else etag.strip().strip('"')


@dataclass(frozen=True, slots=True)
class Expected:
    """What the bytes of one GET must match; built from the response and the event."""

    url: str
    content_length: int | None
    event_size: int | None  # only when the response ETag is the event's (same object)
    md5_hex: str | None  # the ETag, when it is a plain MD5
    checksums: tuple[tuple[str, str], ...]  # (algorithm, base64 value) full-object checksums

    @classmethod
    def from_response(
        cls, response: Mapping[str, Any], obj: ObjectCreated, *, botocore_validates: bool = False
    ) -> Expected:
        """``response``: a GetObject answer, or the HeadObject answer of a ranged download.

        ``botocore_validates``: the body is botocore's own checksum-validating stream
        (botocore >= 1.36 with ChecksumMode), which already checks the checksum S3 returned and
        raises FlexibleChecksumError (mapped to IntegrityError) on a mismatch; computing it a
        second time would cost a quarter of the CPU of a large download for nothing. Either way
        a checksum is verified, so the MD5 is not (the module docstring says why).
        """
        etag = strip_etag(response.get("ETag"))
        length = response.get("ContentLength")
        event_size = obj.size if etag is not None and etag == strip_etag(obj.etag) else None
        checksums: list[tuple[str, str]] = []
        if not botocore_validates and response.get("ChecksumType", "FULL_OBJECT") == "FULL_OBJECT":
            for algorithm in ("SHA256", "SHA1", "CRC32"):
                value = response.get(f"Checksum{algorithm}")
                # "...-N" is a checksum of part checksums (multipart): not of the bytes.
                if isinstance(value, str) and _checksum_bytes(value) is not None:
                    checksums.append((algorithm, value))
                    break  # the strongest one present is enough
        md5_hex = None
        encrypted = str(response.get("ServerSideEncryption") or "").startswith("aws:kms") or (
            response.get("SSECustomerAlgorithm") is not None
        )
        if (
            not botocore_validates
            and not checksums
            and etag is not None
            and re.fullmatch(r"[0-9a-fA-F]{32}", etag)
            and not encrypted
        ):
            md5_hex = etag.lower()
        return cls(
            url=s3_url(obj),
            content_length=length if isinstance(length, int) else None,
            event_size=event_size,
            md5_hex=md5_hex,
            checksums=tuple(checksums),
        )


def _checksum_bytes(value: str) -> bytes | None:
    """The decoded checksum, None when it is not one (multipart "...-N", not base64)."""
    if not value or "-" in value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


class Digests:
    """Running digests of the bytes written, only those that ``Expected`` can check."""

    def __init__(self, expected: Expected) -> None:
        self._expected = expected
        self.length = 0
        self._md5 = hashlib.md5(usedforsecurity=False) if expected.md5_hex else None
        self._hashes: dict[str, Any] = {}
        self._crc32: int | None = None
        for algorithm, _ in expected.checksums:
            if algorithm == "SHA256":
                self._hashes[algorithm] = hashlib.sha256()
            elif algorithm == "SHA1":
                self._hashes[algorithm] = hashlib.sha1(usedforsecurity=False)
            elif algorithm == "CRC32":
                self._crc32 = 0

    def update(self, chunk: bytes) -> None:
        self.length += len(chunk)
        if self._md5 is not None:
            self._md5.update(chunk)
        for digest in self._hashes.values():
            digest.update(chunk)
        if self._crc32 is not None:
            self._crc32 = zlib.crc32(chunk, self._crc32)

    def _checksum(self, algorithm: str) -> bytes:
        if algorithm == "CRC32":
            return (self._crc32 or 0).to_bytes(4, "big")
        return bytes(self._hashes[algorithm].digest())

    def verify(self) -> None:
        """Raise IntegrityError (expected vs got) on the first mismatch."""
        exp = self._expected
        got = self.length
        if exp.content_length is not None and got != exp.content_length:
            raise IntegrityError(
                f"{exp.url}: length mismatch: expected {exp.content_length} bytes "
                f"(Content-Length), got {got}"
            )
        if exp.event_size is not None and got != exp.event_size:
            raise IntegrityError(
                f"{exp.url}: size mismatch: expected {exp.event_size} bytes (event), got {got}"
            )
        if self._md5 is not None and self._md5.hexdigest() != exp.md5_hex:
            raise IntegrityError(
                f"{exp.url}: MD5 mismatch: expected {exp.md5_hex} (ETag), "
                f"got {self._md5.hexdigest()}"
            )
        for algorithm, value in exp.checksums:
            wanted = _checksum_bytes(value)
            actual = self._checksum(algorithm)
            if actual != wanted:
                raise IntegrityError(
                    f"{exp.url}: {algorithm} checksum mismatch: expected {value}, "
                    f"got {base64.b64encode(actual).decode('ascii')}"
                )


def remote_error(exc: BaseException, obj: ObjectCreated) -> MessageError:
    """Classify a failed GET (or body read) for ``obj``; the text never carries credentials."""
    url = s3_url(obj)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "FlexibleChecksumError" in names:  # botocore's own checksum check (class absent in old)
        return IntegrityError(f"{url}: checksum mismatch reported by botocore: {exc}")
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = _redact(str(error.get("Message", "")))
        detail = f"{code} (HTTP {status})" if status else code
        text = f"GET {url} failed: {detail}" + (f": {message}" if message else "")
        if code in _PERMANENT_CODES or (
            code.startswith(_PERMANENT_PREFIXES)
            and not any(word in code for word in _TRANSIENT_WORDS)
        ):
            return ObjectAccessError(text)
        return FetchError(text)
    return FetchError(f"GET {url} failed: {type(exc).__name__}: {_redact(str(exc))}")


# What a body read can raise when the network fails (OSError: a reset socket).
REMOTE_ERRORS = (
    BotoCoreError,
    ClientError,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def stream_and_verify(
    body: Readable,
    write: Callable[[bytes], object],
    *,
    response: Mapping[str, Any],
    obj: ObjectCreated,
    chunk_size: int,
    cancel: threading.Event,
) -> int:
    """Copy ``body`` to ``write`` in chunks of at most ``chunk_size``, then verify the bytes.

    Errors raised by ``write`` (local I/O) propagate unchanged; read errors become FetchError,
    mismatches IntegrityError, a set ``cancel`` FetchError. Returns the number of bytes.
    """
    botocore_validates = type(body).__name__ == "StreamingChecksumBody"
    digests = Digests(Expected.from_response(response, obj, botocore_validates=botocore_validates))
    while True:
        if cancel.is_set():
            raise FetchError(f"download of {s3_url(obj)} cancelled")
        try:
            chunk = body.read(chunk_size)
        except REMOTE_ERRORS as exc:
            raise remote_error(exc, obj) from exc
        if not chunk:
            break
        write(chunk)
        digests.update(chunk)
    digests.verify()
    return digests.length
