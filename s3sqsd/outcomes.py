"""What ``Fetcher.fetch`` and ``Fetcher.remove`` report to the worker: plain values, no I/O.

Apart from the fetcher so that the pure rules that produce them (provenance.py) and the
worker that acts on them need not import the code that does the I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from s3sqsd.objectmeta import NO_META, ObjectMeta


class FetchOutcome(enum.Enum):
    DOWNLOADED = "downloaded"  # the file at ``path`` now holds the object
    STALE = "stale"  # the file on disk comes from a later event: kept as it is
    DUPLICATE = "duplicate"  # the file on disk comes from this very event (or version)
    # A listing's candidate (``Origin.LISTING``) met a file s3sqsd did not write, or another
    # object's: kept as it is (``s3sqsd sync`` reports it). Events never give it.
    CONFLICT = "conflict"
    FOLDER_MARKER = "folder_marker"  # a key ending in "/": nothing to download


class RemoveOutcome(enum.Enum):
    """What ``Fetcher.remove`` did with the local file of a removal event; only REMOVED acts."""

    REMOVED = "removed"  # the file was ours and older than the event: unlinked, dir synced
    ABSENT = "absent"  # nothing at the path (never downloaded, or already removed)
    FOLDER_MARKER = "folder_marker"  # a key ending in "/": no file stands for it
    UNSAFE_KEY = "unsafe_key"  # the key maps to no safe path, so no file of ours is there
    NOT_REMOVAL = "not_removal"  # not an ObjectRemoved / "Object Deleted" record
    KEPT_NOT_REGULAR = "kept_not_regular"  # a symlink, directory, fifo... or a parent outside
    KEPT_NO_PROVENANCE = "kept_no_provenance"  # no readable provenance, or edited since
    KEPT_NOT_OURS = "kept_not_ours"  # provenance names another bucket or key
    KEPT_OTHER_VERSION = "kept_other_version"  # an older version was deleted, not the file's
    KEPT_NO_SEQUENCER = "kept_no_sequencer"  # the event or the file has no sequencer
    KEPT_NEWER = "kept_newer"  # the file comes from an event as new as the removal or newer


@dataclass(frozen=True, slots=True)
class FetchResult:
    outcome: FetchOutcome
    path: Path | None
    size: int
    etag: str | None
    version_id: str | None
    duration_ms: int
    verified_by: str | None = None  # verify.Check.verified_by, for DOWNLOADED
    unverifiable: tuple[str, ...] = ()  # stronger checks S3 had that this host could not do
    # S3's facts of the object in place: the GET's for DOWNLOADED, the record's for DUPLICATE
    # (empty for a record of an earlier version), for ``on_download``.
    meta: ObjectMeta = NO_META
    # For DUPLICATE: the file's record is this very event's (an earlier attempt at it, or S3
    # delivering the same notification again: ``provenance.same_event``), so the event's own
    # work may be completed (``after_download: delete``). A DOWNLOADED result is always its own.
    same_event: bool = False
