"""``s3sqsd check``: what ``after_download: delete`` needs, one ``source-delete`` line per bucket
and prefix whose sources are deleted.

The permission itself is not tested: a check changes nothing, and no DeleteObject is harmless
everywhere (without a version id, on a store that ignores If-Match, it writes a delete marker
in a versioned bucket). What the line can say is which permissions the bucket needs, and for
that whether it is versioned: one GetBucketVersioning (a read; denied without
``s3:GetBucketVersioning``, which the daemon does not need, and then the line says both).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from s3sqsd.config import Config
from s3sqsd.sources import AFTER_DOWNLOAD_DELETE, client_for
from s3sqsd.sqs import error_code

_UNTESTED = "not tested: a check deletes nothing"


def deleting(config: Config) -> Iterator[tuple[str | None, str | None]]:
    """Each (bucket, prefix) whose sources ``after_download: delete`` deletes, in config
    order, once; a None bucket: any bucket events name."""
    seen: set[tuple[str | None, str | None]] = set()
    places: list[tuple[str | None, str | None, str]]
    if not config.routes:
        places = [(None, None, config.after_download)]
    else:
        places = [
            (r.bucket, r.prefix, r.after_download or config.after_download) for r in config.routes
        ]
    for bucket, prefix, after in places:
        if after != AFTER_DOWNLOAD_DELETE:
            continue
        buckets = (bucket,) if bucket else (config.s3_bucket_name or (None,))
        for name in buckets:
            if (name, prefix) not in seen:
                seen.add((name, prefix))
                yield name, prefix


def source_delete_lines(
    s3: Any, config: Config, *, skip_reason: str | None = None
) -> tuple[str, ...]:
    """The detail of each ``source-delete`` line (a ``skip``: never tested), one per
    bucket/prefix with ``after_download: delete``; none without it."""
    lines = []
    for bucket, prefix in deleting(config):
        where = f"s3://{bucket}/{prefix or ''}" if bucket else "any bucket"
        if bucket is None or skip_reason is not None:
            detail = skip_reason or (
                "events may name any bucket (no s3_bucket_name): each needs s3:DeleteObject, "
                "and s3:DeleteObjectVersion if versioned"
            )
            lines.append(f"{where}: {detail}; {_UNTESTED}")
            continue
        lines.append(f"{where}: {_needs(s3, bucket)}")
    return tuple(lines)


def _needs(s3: Any, bucket: str) -> str:
    try:
        status = client_for(s3, bucket).get_bucket_versioning(Bucket=bucket).get("Status")
    except (ClientError, BotoCoreError) as exc:
        return (
            f"versioning unknown (GetBucketVersioning: {error_code(exc)}); after_download: "
            "delete needs s3:DeleteObject, and s3:DeleteObjectVersion if the bucket is "
            f"versioned; {_UNTESTED}"
        )
    if status == "Enabled":
        return (
            "versioned: each downloaded version is deleted by its id, which needs "
            f"s3:DeleteObjectVersion (and s3:DeleteObject); {_UNTESTED}"
        )
    return (
        f"{'versioning suspended' if status == 'Suspended' else 'unversioned'}: sources are "
        "deleted only if unchanged (If-Match on the ETag), which needs s3:DeleteObject and "
        "s3:GetObject; a store without conditional deletes keeps them (source.kept "
        f"unconditional_only); {_UNTESTED}"
    )
