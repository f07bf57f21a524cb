"""What the bytes of one download must match, and the classification of a failed GET (pure).

Nothing here opens a connection: ``stream_and_verify`` reads a body it is given and hands the
bytes to a ``write`` it is given. Every download gets exactly one integrity check, the strongest
that S3 has for the object and this host can compute (checksums.py says which algorithms it
can), in this order:

1. a checksum S3 stored with the object (``ChecksumMode=ENABLED`` returns it): a full-object one
   (``FULL_OBJECT``: CRC64NVME, which S3 adds to every object uploaded without a checksum since
   2025, CRC32, CRC32C, SHA1, SHA256, SHA512, MD5), or a composite one of a multipart upload
   (``value-N``: the checksum of the concatenated part checksums), verified part by part;
2. the ETag, when it is an MD5 (not SSE-KMS nor SSE-C): of the bytes for a single-part object
   (``md5``), of the concatenated part MD5s for a multipart one (``md5-parts``, ``hex-N``);
3. nothing more than the length (``length-only``): what config ``integrity`` decides about.

Always, besides: the length (Content-Length, or the HEAD's for a ranged download) and, when the
ETag is the event's (the same object), the size the event announced.

One check, not all: S3 returns one checksum, and the MD5 costs 1.5 s of CPU per GiB here, more
than the rest of a download, for what the checksum already guards against (bytes changed
between S3's store and this disk). A per-part check needs the part sizes; parts.py finds them.
Every result names its check (``Check.verified_by``) and the stronger ones it had to pass over
(``Check.unverifiable``), so a weaker check is never silent.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import http.client
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3.exceptions
from botocore.exceptions import BotoCoreError, ClientError
from botocore.response import StreamingBody

from s3sqsd.checksums import ALGORITHMS, Hasher, HostChecksums
from s3sqsd.errors import (
    DownloadCancelledError,
    FetchError,
    IntegrityError,
    MessageError,
    ObjectAccessError,
    PartsMismatchError,
)
from s3sqsd.events import ObjectCreated, object_url
from s3sqsd.redact import hide_url_queries

# S3 error codes that no retry can fix for this object. Everything else (NoSuchKey right after
# the notification, throttling, 5xx, expired credentials, unknown codes) is retried by the
# worker and dead-lettered after retry.max_attempts.
_PERMANENT_CODES = frozenset(
    {"AccessDenied", "403", "Forbidden", "AllAccessDisabled", "InvalidObjectState"}
)
_PERMANENT_PREFIXES = ("KMS",)  # "KMS.DisabledException", "KMSAccessDenied", ...
_TRANSIENT_WORDS = ("Throttl", "Internal", "Timeout", "Unavailable")  # KMS having a bad minute
_MD5_ETAG = re.compile(r"[0-9a-fA-F]{32}(?:-[1-9][0-9]{0,4})?")
_MULTIPART_ETAG = re.compile(r"[^-]+-([1-9][0-9]{0,4})")  # S3 allows 10,000 parts
# Raw digest sizes: a value of another size is not that algorithm's (a garbled header).
_DIGEST_SIZES = {
    "SHA512": 64,
    "SHA256": 32,
    "SHA1": 20,
    "MD5": 16,
    "CRC64NVME": 8,
    "CRC32C": 4,
    "CRC32": 4,
}


def s3_url(obj: ObjectCreated) -> str:
    """``s3://bucket/key`` as error texts show it (long keys cut, unprintables escaped)."""
    return object_url(obj.bucket, obj.key)


# ---- what to check (pure: no file system, no network) -------------------------------------------


class Readable(Protocol):
    def read(self, amt: int, /) -> bytes: ...


def strip_etag(etag: str | None) -> str | None:
    return None if etag is None else etag.strip().strip('"')


class CheckKind(enum.Enum):
    """The kinds of integrity check, strongest first; the value is the log's ``verified_by``
    (a checksum kind is logged by its algorithm: ``crc64nvme``, ``sha256-composite``)."""

    FULL = "full"  # a checksum of the whole object's bytes, S3-stored
    COMPOSITE = "composite"  # a checksum of the parts' checksums ("value-N")
    MD5 = "md5"  # the ETag of a single-part, unencrypted (or SSE-S3) object
    MD5_PARTS = "md5-parts"  # the ETag of a multipart one: MD5 of the parts' MD5s, "-N"
    LENGTH = "length-only"  # nothing above could be verified on this host


@dataclass(frozen=True, slots=True)
class Check:
    """The one check a download gets: the strongest integrity datum S3 has for the object that
    this host can compute. ``unverifiable`` lists the stronger ones it had to pass over, each
    with the reason (``CRC64NVME: awscrt missing ...``), for the log and ``integrity: strict``."""

    kind: CheckKind
    algorithm: str | None = None  # S3's name (CRC64NVME...); "MD5" for the two ETag kinds
    expected: bytes | None = None  # the raw digest the bytes must give
    shown: str | None = None  # the value as S3 sent it, for error texts
    parts: int | None = None  # N, for COMPOSITE and MD5_PARTS
    unverifiable: tuple[str, ...] = ()

    @property
    def verified_by(self) -> str:
        if self.kind is CheckKind.FULL:
            return str(self.algorithm).lower()
        if self.kind is CheckKind.COMPOSITE:
            return f"{str(self.algorithm).lower()}-composite"
        return str(self.kind.value)

    @property
    def needs_layout(self) -> bool:
        """Whether the part sizes must be known: a per-part digest restarts at each part."""
        return self.kind in (CheckKind.COMPOSITE, CheckKind.MD5_PARTS)


def response_field(response: Mapping[str, Any], name: str, header: str) -> Any:
    """A response value by botocore's parsed ``name``, else by its raw HTTP ``header``.

    The raw headers matter: botocore 1.29 (Debian bookworm) does not know CRC64NVME,
    ``x-amz-checksum-type`` nor the newer algorithms, and drops them from the parsed answer.
    """
    value = response.get(name)
    if value is not None:
        return value
    headers = response.get("ResponseMetadata", {}).get("HTTPHeaders") or {}
    return headers.get(header)


def _parts_of(etag: str | None) -> int | None:
    """N of a multipart ETag ``...-N``; None for a single-part (or unreadable) one."""
    if etag is None:
        return None
    match = _MULTIPART_ETAG.fullmatch(etag)
    return int(match.group(1)) if match else None


def _decode(value: str, size: int | None) -> bytes | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    if size is not None and len(raw) != size:
        return None
    return raw


def choose_check(response: Mapping[str, Any], *, host: HostChecksums) -> Check:
    """The check for the object a GetObject (or HeadObject) answer describes; see the module
    docstring for the order."""
    etag = strip_etag(response.get("ETag"))
    etag_parts = _parts_of(etag)
    checksum_type = str(
        response_field(response, "ChecksumType", "x-amz-checksum-type") or ""
    ).upper()
    passed_over: list[str] = []
    for algorithm in ALGORITHMS:
        value = response_field(
            response, f"Checksum{algorithm}", f"x-amz-checksum-{algorithm.lower()}"
        )
        if not isinstance(value, str) or not value:
            continue
        digest, _, count = value.partition("-")
        parts: int | None = None
        if count:
            parts = int(count) if count.isdigit() and int(count) > 0 else None
            if parts is None:
                passed_over.append(f"{algorithm}: unreadable value {value[:40]!r}")
                continue
        elif checksum_type == "COMPOSITE" and etag_parts is not None:
            parts = etag_parts  # a composite value sent without its "-N"
        raw = _decode(digest, _DIGEST_SIZES.get(algorithm))
        if raw is None:
            passed_over.append(f"{algorithm}: unreadable value {value[:40]!r}")
            continue
        if not host.can(algorithm):
            passed_over.append(f"{algorithm}: {host.why_not(algorithm)}")
            continue
        return Check(
            kind=CheckKind.FULL if parts is None else CheckKind.COMPOSITE,
            algorithm=algorithm,
            expected=raw,
            shown=value,
            parts=parts,
            unverifiable=tuple(passed_over),
        )
    sse = str(
        response_field(response, "ServerSideEncryption", "x-amz-server-side-encryption") or ""
    )
    sse_c = response_field(
        response, "SSECustomerAlgorithm", "x-amz-server-side-encryption-customer-algorithm"
    )
    if sse.startswith("aws:kms") or sse_c is not None:
        passed_over.append(f"ETag: not an MD5 of the bytes ({'SSE-C' if sse_c else sse})")
    elif etag is not None and _MD5_ETAG.fullmatch(etag):
        kind = CheckKind.MD5 if etag_parts is None else CheckKind.MD5_PARTS
        return Check(
            kind=kind,
            algorithm="MD5",
            expected=bytes.fromhex(etag[:32]),
            shown=etag,
            parts=etag_parts,
            unverifiable=tuple(passed_over),
        )
    elif etag is not None:
        passed_over.append(f"ETag: not an MD5 ({etag[:40]!r})")
    return Check(kind=CheckKind.LENGTH, unverifiable=tuple(passed_over))


@dataclass(frozen=True, slots=True)
class Expected:
    """What the bytes of one download must match; built from the response and the event."""

    url: str
    content_length: int | None
    event_size: int | None  # only when the response ETag is the event's (same object)
    check: Check

    @classmethod
    def from_response(
        cls, response: Mapping[str, Any], obj: ObjectCreated, *, host: HostChecksums
    ) -> Expected:
        """``response``: a GetObject answer, or the HeadObject answer of a ranged download."""
        etag = strip_etag(response.get("ETag"))
        length = response.get("ContentLength")
        return cls(
            url=s3_url(obj),
            content_length=length if isinstance(length, int) else None,
            event_size=obj.size if etag is not None and etag == strip_etag(obj.etag) else None,
            check=choose_check(response, host=host),
        )


# ---- running digests ----------------------------------------------------------------------


class Digests:
    """The running digest of ``expected.check``, fed the object's bytes in order.

    A per-part check (composite, md5-parts) restarts its digest at each part boundary of
    ``layout`` (the part sizes, parts.py) and keeps each part's digest; ``verify`` combines them.
    A part may also be digested elsewhere and handed in whole (``add_part``): ranged.py hashes
    each part on the thread that downloads it.
    """

    def __init__(
        self,
        expected: Expected,
        *,
        host: HostChecksums,
        layout: Sequence[int] | None = None,
    ) -> None:
        check = expected.check
        if check.needs_layout and (layout is None or len(layout) != check.parts):
            raise ValueError(f"{check.verified_by} needs the sizes of its {check.parts} parts")
        self.expected = expected
        self.length = 0
        self._host = host
        self._algorithm = str(check.algorithm)
        self._whole: Hasher | None = None
        if check.kind is CheckKind.FULL or check.kind is CheckKind.MD5:
            self._whole = host.new(self._algorithm)
        self._sizes = tuple(layout or ()) if check.needs_layout else ()
        self._index = 0  # the part being fed
        self._part: Hasher | None = None  # its digest, from its first byte on
        self._part_left = self._sizes[0] if self._sizes else 0
        self._part_digests: list[bytes] = []

    def new_part_hasher(self) -> Hasher:
        """A digest for one whole part, to be handed back with ``add_part``."""
        return self._host.new(self._algorithm)

    def _close_part(self) -> None:
        part = self._part if self._part is not None else self._host.new(self._algorithm)
        self._part_digests.append(part.digest())
        self._part = None
        self._index += 1
        self._part_left = self._sizes[self._index] if self._index < len(self._sizes) else 0

    def update(self, chunk: bytes | memoryview) -> None:
        self.length += len(chunk)
        if self._whole is not None:
            self._whole.update(chunk)
            return
        view = memoryview(chunk)
        while view and self._index < len(self._sizes):  # bytes past the layout: see verify
            if self._part_left == 0:  # an empty part (only a 0-byte object has one)
                self._close_part()
                continue
            if self._part is None:
                self._part = self._host.new(self._algorithm)
            take = min(len(view), self._part_left)
            self._part.update(view[:take])
            self._part_left -= take
            view = view[take:]
            if self._part_left == 0:
                self._close_part()

    def add_part(self, digest: bytes, size: int) -> None:
        """The next part, digested whole elsewhere; ``size`` must be its size in the layout."""
        if self._index >= len(self._sizes) or self._part is not None:
            raise ValueError("add_part: no whole part is expected here")
        if size != self._sizes[self._index]:
            raise ValueError(
                f"add_part: part {self._index + 1} has {self._sizes[self._index]} bytes, not {size}"
            )
        self.length += size
        self._part_digests.append(digest)
        self._index += 1
        self._part_left = self._sizes[self._index] if self._index < len(self._sizes) else 0

    def verify(self) -> str:
        """Raise IntegrityError (expected vs got) on the first mismatch; else ``verified_by``."""
        exp = self.expected
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
        check = exp.check
        if check.kind is CheckKind.LENGTH:
            return check.verified_by
        if self._whole is not None:
            actual = self._whole.digest()
        else:
            while self._index < len(self._sizes):  # the layout ends in empty parts
                self._close_part()
            combined = self._host.new(self._algorithm)
            for digest in self._part_digests:
                combined.update(digest)
            actual = combined.digest()
        if actual == check.expected:
            return check.verified_by
        if check.kind is CheckKind.MD5:
            shown = actual.hex()
            text = f"MD5 mismatch: expected {check.shown} (ETag), got {shown}"
        elif check.kind is CheckKind.MD5_PARTS:
            shown = f"{actual.hex()}-{len(self._part_digests)}"
            text = f"MD5 of parts mismatch: expected {check.shown} (ETag), got {shown}"
        else:
            shown = base64.b64encode(actual).decode("ascii")
            if check.kind is CheckKind.COMPOSITE:
                shown = f"{shown}-{len(self._part_digests)}"
            kind = " composite" if check.kind is CheckKind.COMPOSITE else ""
            text = f"{check.algorithm}{kind} checksum mismatch: expected {check.shown}, got {shown}"
        error = PartsMismatchError if check.needs_layout else IntegrityError
        raise error(f"{exp.url}: {text}")


def unchecked_reader(body: Any) -> Callable[[int], bytes]:
    """``body.read`` without botocore's own checksum pass.

    With ``ChecksumMode`` botocore (1.29 and later) wraps the body in a StreamingChecksumBody
    that hashes every byte once more for the one algorithm it knows, and skips composite and
    unknown ones. We verify the strongest check ourselves (``Digests``) and name it in the log,
    so its pass would only cost CPU: reading through the base class skips it and keeps
    StreamingBody's own short-body check.
    """
    if isinstance(body, StreamingBody) and type(body) is not StreamingBody:
        return functools.partial(StreamingBody.read, body)
    read: Callable[[int], bytes] = body.read
    return read


def verify_file(
    fd: int, digests: Digests, *, chunk_size: int, cancel: threading.Event, obj: ObjectCreated
) -> str:
    """Feed the bytes of ``fd`` (from offset 0) to ``digests`` and verify them.

    Used when the part sizes first assumed turn out wrong: the file is checked again against
    the sizes S3 gives, from the page cache, without a second download.
    """
    offset = 0
    while True:
        if cancel.is_set():
            raise DownloadCancelledError(f"download of {s3_url(obj)} cancelled")
        data = os.pread(fd, chunk_size, offset)
        if not data:
            break
        digests.update(data)
        offset += len(data)
    return digests.verify()


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
        message = hide_url_queries(str(error.get("Message", "")))
        detail = f"{code} (HTTP {status})" if status else code
        text = f"GET {url} failed: {detail}" + (f": {message}" if message else "")
        if code in _PERMANENT_CODES or (
            code.startswith(_PERMANENT_PREFIXES)
            and not any(word in code for word in _TRANSIENT_WORDS)
        ):
            return ObjectAccessError(text)
        return FetchError(text)
    return FetchError(f"GET {url} failed: {type(exc).__name__}: {hide_url_queries(str(exc))}")


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
    digests: Digests,
    obj: ObjectCreated,
    chunk_size: int,
    cancel: threading.Event,
) -> int:
    """Copy ``body`` to ``write`` in chunks of at most ``chunk_size``, then verify the bytes.

    Errors raised by ``write`` (local I/O) propagate unchanged; read errors become FetchError,
    mismatches IntegrityError, a set ``cancel`` DownloadCancelledError. Returns the number of
    bytes.
    """
    read = unchecked_reader(body)
    while True:
        if cancel.is_set():
            raise DownloadCancelledError(f"download of {s3_url(obj)} cancelled")
        try:
            chunk = read(chunk_size)
        except REMOTE_ERRORS as exc:
            raise remote_error(exc, obj) from exc
        if not chunk:
            break
        write(chunk)
        digests.update(chunk)
    digests.verify()
    return digests.length
