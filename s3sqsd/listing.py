"""What a sync lists: the (bucket, prefix) targets a config takes, and their objects, a page
at a time.

``targets`` is pure: it derives the listings from the same settings the daemon routes by
(``s3_bucket_name``, each route's ``bucket`` and ``prefix``; a route's ``glob`` cannot narrow a
listing, so routing.py filters the listed keys afterwards, exactly as it filters events).
A target whose prefix lies inside another target of the same bucket is dropped, so no object
is listed twice.

``list_pages`` streams ``ListObjectsV2`` one page (at most 1000 keys) at a time: nothing
holds more than a page, whatever the bucket's size. botocore asks S3 for URL-encoded keys and
decodes them, so a key with control characters arrives as the daemon's event parser would
decode it.

Versions: ``ListObjectsV2`` lists the current version of each key (a key whose current
version is a delete marker is not listed), without its version id. The listing is never used
to choose a version to fetch: the sync's GET asks for the key's current version, and the
provenance records the version and ETag that GET returned. So a versioned bucket's file is
always its latest version as of the GET (never an older one, never a mix), and no permission
beyond the daemon's ``s3:GetObject`` and ``s3:ListBucket`` is needed (``ListObjectVersions``
would need ``s3:ListBucketVersions``; an ``If-Match`` on the listed ETag would turn every
object overwritten between the listing and the GET into a failure, where fetching the newer
one is what a sync wants).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from s3sqsd.config import Config
from s3sqsd.errors import ConfigError, ListingError
from s3sqsd.events import object_url
from s3sqsd.redact import hide_url_queries
from s3sqsd.verify import strip_etag

PAGE_SIZE = 1000  # ListObjectsV2's most keys per page


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """One listing: every key of ``bucket`` that starts with ``prefix``."""

    bucket: str
    prefix: str = ""

    @property
    def url(self) -> str:
        return object_url(self.bucket, self.prefix)

    def covers(self, bucket: str, key: str) -> bool:
        """Whether the object ``bucket``/``key`` is one this listing lists."""
        return bucket == self.bucket and key.startswith(self.prefix)


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """One object as ``ListObjectsV2`` gave it; ``etag`` without its quotes."""

    bucket: str
    key: str
    size: int
    etag: str | None
    last_modified: datetime.datetime | None


def targets(config: Config, *, bucket: str | None = None, prefix: str = "") -> tuple[Target, ...]:
    """The listings a sync of ``config`` makes (pure); ``bucket``/``prefix`` narrow them.

    Buckets: a route's own ``bucket``, else each of ``s3_bucket_name``, else ``bucket`` (the
    command line's ``--bucket``). ``bucket`` given with an ``s3_bucket_name`` list must be in
    it, and then only it is listed. Raises ConfigError (one sentence per problem) when a
    listing would have no bucket, or when ``prefix`` leaves nothing to list.
    """
    allowed = config.s3_bucket_name
    if bucket is not None and allowed and bucket not in allowed:
        raise ConfigError(
            f"--bucket {bucket}: not in s3_bucket_name ({', '.join(allowed)}); the daemon "
            "would not download its objects either"
        )
    default_buckets = (bucket,) if bucket is not None else allowed
    wanted: list[Target] = []
    rules: tuple[tuple[str | None, str], ...] = (
        tuple((rule.bucket, rule.prefix or "") for rule in config.routes)
        if config.routes
        else ((None, ""),)
    )
    for rule_bucket, rule_prefix in rules:
        if rule_bucket is not None:
            if bucket is not None and rule_bucket != bucket:
                continue
            buckets: tuple[str, ...] = (rule_bucket,)
        elif default_buckets:
            buckets = default_buckets
        else:
            raise ConfigError(
                "the configuration names no bucket (neither s3_bucket_name nor a route's "
                "bucket): pass --bucket NAME"
            )
        narrowed = _narrow(rule_prefix, prefix)
        if narrowed is None:
            continue
        wanted.extend(Target(bucket=name, prefix=narrowed) for name in buckets)
    result = _without_covered(wanted)
    if not result:
        raise ConfigError(
            f"nothing to list: --prefix {prefix!r} --bucket {bucket} matches no bucket and "
            "prefix the configuration takes"
        )
    return result


def _narrow(route_prefix: str, prefix: str) -> str | None:
    """The longer of two prefixes when one extends the other; None when they are disjoint."""
    if prefix.startswith(route_prefix):
        return prefix
    if route_prefix.startswith(prefix):
        return route_prefix
    return None


def _without_covered(wanted: list[Target]) -> tuple[Target, ...]:
    """``wanted`` in order, without repeats and without a target another one lists entirely."""
    unique = list(dict.fromkeys(wanted))
    return tuple(
        target
        for target in unique
        if not any(
            other != target
            and other.bucket == target.bucket
            and target.prefix.startswith(other.prefix)
            for other in unique
        )
    )


def list_pages(
    s3: Any, target: Target, *, page_size: int = PAGE_SIZE
) -> Iterator[tuple[Listed, ...]]:
    """The objects of ``target``, one ``ListObjectsV2`` page at a time (keys in S3's order).

    Raises ListingError naming the target and S3's reason when a page cannot be read; the
    pages yielded before it stand (a caller that deletes must not trust an unfinished one).
    """
    params: dict[str, Any] = {"Bucket": target.bucket, "MaxKeys": page_size}
    if target.prefix:
        params["Prefix"] = target.prefix
    while True:
        try:
            page = s3.list_objects_v2(**params)
        except Exception as exc:
            # Besides ClientError and BotoCoreError, botocore raises ResponseParserError (not a
            # BotoCoreError on bookworm's 1.29) or UnicodeDecodeError for a garbled answer; a
            # chaos run's flipped byte ended a sync with status 70 that way.
            raise ListingError(f"listing {target.url} failed: {_reason(exc)}") from exc
        yield tuple(_listed(target.bucket, entry) for entry in page.get("Contents", ()))
        token = page.get("NextContinuationToken")
        if not page.get("IsTruncated") or not token:
            return
        params["ContinuationToken"] = token


def _listed(bucket: str, entry: dict[str, Any]) -> Listed:
    modified = entry.get("LastModified")
    return Listed(
        bucket=bucket,
        key=str(entry["Key"]),
        size=int(entry.get("Size", 0)),
        etag=strip_etag(entry.get("ETag")),
        last_modified=modified if isinstance(modified, datetime.datetime) else None,
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        message = hide_url_queries(str(error.get("Message", "")))
        return code + (f": {message}" if message else "")
    return f"{type(exc).__name__}: {hide_url_queries(str(exc))}"
