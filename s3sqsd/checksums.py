"""The checksum algorithms S3 stores, and which of them this host can compute.

S3 names an algorithm in its headers (``x-amz-checksum-crc64nvme``) and API fields
(``ChecksumCRC64NVME``); this module uses the upper-case API spelling throughout. A checksum is
compared as raw bytes: S3 sends base64 of the big-endian CRC value, or of the hash digest.

Where each algorithm comes from, always a well-kept library, never code of ours:

- CRC32: ``zlib`` (standard library);
- SHA1, SHA256, SHA512, MD5: ``hashlib`` (standard library);
- CRC32C and CRC64NVME: ``awscrt.checksums`` (the AWS Common Runtime, which botocore uses for
  the same purpose). CRC32C is in every awscrt we support; CRC64NVME from awscrt 0.23 on
  (Debian bookworm's python3-awscrt 0.16.8 has none). awscrt is optional: without it these two
  cannot be verified here and the object falls back to the next check (verify.py).

The XXHASH algorithms S3 added in 2025 are not verified yet: their byte order in S3's header is
not documented where we could check it, and a wrong guess would fail every such object. They
count as "cannot verify" and fall back like a missing awscrt does.

``HostChecksums.detect()`` is the only place that imports awscrt, once, when the fetcher is
built; tests build a ``HostChecksums`` without it through ``without``.
"""

from __future__ import annotations

import hashlib
import importlib
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any, Protocol

# Every checksum algorithm S3 may return, strongest first within each family. The order decides
# which one is verified when a response carries more than one (S3 sends one today).
ALGORITHMS = (
    "SHA512",
    "SHA256",
    "SHA1",
    "MD5",
    "CRC64NVME",
    "CRC32C",
    "CRC32",
    "XXHASH128",
    "XXHASH3",
    "XXHASH64",
)
AWSCRT_CRC64NVME_MIN = "0.23"  # the first awscrt with checksums.crc64nvme (its changelog)
_NOT_SUPPORTED = "not verified by s3sqsd yet"


class Hasher(Protocol):
    """A running checksum: ``update`` with the bytes in order, then ``digest`` once."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def digest(self) -> bytes: ...


class _Crc:
    """A CRC kept as an int, fed by ``func(data, previous)``; digest is big-endian bytes."""

    __slots__ = ("_func", "_size", "_value")

    def __init__(self, func: Callable[[Any, int], int], size: int) -> None:
        self._func = func
        self._size = size
        self._value = 0

    def update(self, data: bytes | memoryview, /) -> None:
        self._value = self._func(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._size, "big")


def _zlib_crc32(data: Any, previous: int) -> int:
    return zlib.crc32(data, previous)


def _crt_bytes(func: Callable[[bytes, int], int]) -> Callable[[Any, int], int]:
    """awscrt's checksum functions take bytes-like objects; a memoryview slice is passed as
    bytes only when awscrt refuses it (older releases accept only ``bytes``)."""

    def call(data: Any, previous: int) -> int:
        try:
            return func(data, previous)
        except TypeError:
            return func(bytes(data), previous)

    return call


def _hashlib(name: str) -> Callable[[], Hasher]:
    if name in ("md5", "sha1"):
        return lambda: hashlib.new(name, usedforsecurity=False)
    return lambda: hashlib.new(name)


@dataclass(frozen=True, slots=True)
class HostChecksums:
    """Which algorithms this host computes (``factories``) and why the others are missing."""

    factories: Mapping[str, Callable[[], Hasher]]
    missing: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    awscrt_version: str | None = None

    @classmethod
    def detect(
        cls, *, import_module: Callable[[str], ModuleType] = importlib.import_module
    ) -> HostChecksums:
        """Look at what is installed; ``import_module`` is injectable for the tests."""
        factories: dict[str, Callable[[], Hasher]] = {
            "SHA512": _hashlib("sha512"),
            "SHA256": _hashlib("sha256"),
            "SHA1": _hashlib("sha1"),
            "MD5": _hashlib("md5"),
            "CRC32": lambda: _Crc(_zlib_crc32, 4),
        }
        missing: dict[str, str] = {name: _NOT_SUPPORTED for name in ALGORITHMS if "XXH" in name}
        version = None
        try:
            crt = import_module("awscrt.checksums")
        except ImportError:
            crt = None
        if crt is None:
            missing["CRC32C"] = "awscrt missing (install python3-awscrt)"
            missing["CRC64NVME"] = f"awscrt missing (install awscrt >= {AWSCRT_CRC64NVME_MIN})"
        else:
            version = _version_of("awscrt")
            crc32c = getattr(crt, "crc32c", None)
            if crc32c is not None:
                factories["CRC32C"] = _crc_factory(crc32c, 4)
            else:
                missing["CRC32C"] = f"awscrt {version} has no crc32c"
            crc64 = getattr(crt, "crc64nvme", None)
            if crc64 is not None:
                factories["CRC64NVME"] = _crc_factory(crc64, 8)
            else:
                missing["CRC64NVME"] = (
                    f"awscrt {version} is older than {AWSCRT_CRC64NVME_MIN}, which added it"
                )
        return cls(
            factories=MappingProxyType(factories),
            missing=MappingProxyType(missing),
            awscrt_version=version,
        )

    def can(self, algorithm: str) -> bool:
        return algorithm in self.factories

    def new(self, algorithm: str) -> Hasher:
        return self.factories[algorithm]()

    def why_not(self, algorithm: str) -> str:
        return self.missing.get(algorithm, "unknown algorithm")

    def summary(self) -> str:
        """One line for the start-up log and ``s3sqsd check``: what is verified, what is not."""
        can = ", ".join(name for name in ALGORITHMS if name in self.factories)
        reasons: dict[str, list[str]] = {}
        for name in ALGORITHMS:
            if name in self.missing:
                reasons.setdefault(self.missing[name], []).append(name)
        cannot = "; ".join(f"{', '.join(names)} ({why})" for why, names in reasons.items())
        return f"verifies {can}" + (f"; cannot verify {cannot}" if cannot else "")

    def without(self, *algorithms: str, why: str = "disabled") -> HostChecksums:
        """A copy that cannot compute ``algorithms`` (a host without awscrt, in the tests)."""
        factories = {k: v for k, v in self.factories.items() if k not in algorithms}
        missing = {**self.missing, **{name: why for name in algorithms}}
        return HostChecksums(
            factories=MappingProxyType(factories),
            missing=MappingProxyType(missing),
            awscrt_version=self.awscrt_version,
        )


def _crc_factory(func: Callable[[bytes, int], int], size: int) -> Callable[[], Hasher]:
    call = _crt_bytes(func)
    return lambda: _Crc(call, size)


def _version_of(distribution: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
