"""The ``Fetcher`` of one download folder, built from the configuration the same way for the
daemon and for ``s3sqsd sync``: the same modes, large-object settings and integrity rule, so a
file a sync writes cannot differ from one an event writes."""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from s3sqsd.checksums import HostChecksums
from s3sqsd.config import Config
from s3sqsd.fetcher import Fetcher, FolderRole
from s3sqsd.limits import Limits
from s3sqsd.sources import prepare_if_match


def fetcher_for(
    config: Config,
    folder: Path,
    *,
    s3: Any,
    parts: Executor,
    checksums: HostChecksums,
    limits: Limits,
    role: FolderRole = FolderRole.DAEMON,
) -> Fetcher:
    """A Fetcher into ``folder`` (not prepared yet); ``parts``: the caller's ranged-GET pool;
    ``limits``: the caller's bandwidth limit and free-space floor (``Limits.from_config``,
    one for all its fetchers); ``role``: the daemon's (the folder taken for this process) or
    a sync's (beside a daemon)."""
    large = config.large_objects
    prepare_if_match(s3)  # after_download: delete, on bookworm's botocore (sources.py)
    return Fetcher(
        s3=s3,
        root=folder,
        role=role,
        file_mode=config.file_mode,
        directory_mode=config.directory_mode,
        file_mtime=config.file_mtime,
        parts=parts,
        ranged_threshold=large.threshold_bytes,
        part_size=large.part_size_bytes,
        parts_window=2 * large.concurrency,
        checksums=checksums,
        integrity_strict=config.integrity == "strict",
        limits=limits,
    )
