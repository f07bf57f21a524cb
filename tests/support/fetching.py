"""Helpers of the fetcher tests (tests/integration/test_fetcher*.py) that are not fixtures: the
event a fetch is asked for, an upload, the fetcher's leftovers, and a fetcher set up for ranged
downloads of a few MiB. The fixtures (client, bucket, folder, parts pool) are in
tests/integration/conftest.py.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from s3sqsd.events import ObjectCreated
from s3sqsd.fetcher import Fetcher
from s3sqsd.paths import PATH_LOCK_NAME, TEMP_DIR_NAME

MiB = 1 << 20


def created(bucket: str, key: str, **fields: Any) -> ObjectCreated:
    """An ``ObjectCreated:Put`` of ``s3://bucket/key`` (``fields``: size, etag, sequencer...)."""
    return ObjectCreated(bucket=bucket, key=key, event_name="ObjectCreated:Put", **fields)


def put(s3: Any, bucket: str, key: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """``PutObject``; returns S3's answer (ETag, VersionId, checksums)."""
    answer: dict[str, Any] = s3.put_object(Bucket=bucket, Key=key, Body=data, **extra)
    return answer


def leftovers(root: Path) -> list[str]:
    """The names in the fetcher's temp folder under ``root`` but its lock file (there for
    good, not a leftover)."""
    return sorted(set(os.listdir(root / TEMP_DIR_NAME)) - {PATH_LOCK_NAME})


def ranged_fetcher(
    client: Any, root: Path, parts: ThreadPoolExecutor | None, **settings: Any
) -> Fetcher:
    """A prepared fetcher that downloads objects from 2 MiB (``ranged_threshold``) in ranges of
    1 MiB, three at a time, when given a ``parts`` pool: small objects stand in for large ones,
    the code path is the same. ``settings`` override these or add other Fetcher arguments."""
    options: dict[str, Any] = {
        "ranged_threshold": 2 * MiB,
        "part_size": MiB,
        "parts_window": 3,
        "chunk_size": 256 * 1024,
        **settings,
    }
    fetcher = Fetcher(s3=client, root=root, parts=parts, **options)
    fetcher.prepare()
    return fetcher
