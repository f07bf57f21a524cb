"""What a sync does with one listed object, and which local files ``--delete`` may remove.
Pure: no I/O, no boto3, no logging; the sync engine (sync.py) reads the disk and acts.

``decide`` compares a listed object with what its local path holds:

- nothing: DOWNLOAD;
- a file whose provenance (the ``user.s3sqsd`` record the fetcher writes) names this bucket and
  key with the listed ETag and size: SKIP, the object is already there. The version is not
  compared: the listing has none, and two versions with one ETag and size hold the same bytes;
- a file whose provenance names this bucket and key but another ETag or size: REPLACE, it holds
  another version of the key (the GET then fetches the current one: listing.py). Even when the
  file's recorded LastModified is later than the listed one: a multipart object's LastModified
  is when its upload began, so it can be the current object and look older. The fetcher
  orders the two under its locks (provenance.newer_verdict asks S3 which is current);
- anything else: CONFLICT, left as it is and reported: a file without provenance (not written
  by s3sqsd, edited since, or on a filesystem without user xattrs), a file of another object
  (two keys routed to one path), or something that is not a regular file.

``removable`` is the rule of ``--delete``: a local file may go only when its provenance names an
object that a listing read to its end should have listed and did not, and the file sits exactly
where the daemon would store that object. A file of a listing that failed or was cut short, of
a bucket or prefix the sync did not list, without provenance, or moved elsewhere, is never
removed.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

from s3sqsd.listing import Listed, Target
from s3sqsd.provenance import Provenance


class Action(enum.Enum):
    DOWNLOAD = "download"  # nothing at the path
    SKIP = "skip"  # the listed object is already there
    REPLACE = "replace"  # another version of the key is there
    CONFLICT = "conflict"  # something s3sqsd did not write for this key is there: left alone


class LocalKind(enum.Enum):
    MISSING = "missing"
    OURS = "ours"  # a regular file with readable provenance, its size unchanged
    FOREIGN = "foreign"  # a regular file without (trustworthy) provenance
    NOT_REGULAR = "not_regular"  # a directory, symlink, fifo...


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalState:
    """What the listed object's local path holds; ``provenance`` only for OURS."""

    kind: LocalKind
    provenance: Provenance | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    action: Action
    reason: str  # one phrase for the log line and the dry run


def decide(listed: Listed, local: LocalState) -> Decision:
    """What to do about ``listed`` given its local path's state (see the module docstring)."""
    if local.kind is LocalKind.MISSING:
        return Decision(action=Action.DOWNLOAD, reason="not in the folder")
    if local.kind is LocalKind.NOT_REGULAR:
        return Decision(action=Action.CONFLICT, reason="the path is not a regular file")
    have = local.provenance
    if local.kind is LocalKind.FOREIGN or have is None:
        return Decision(
            action=Action.CONFLICT,
            reason="a file s3sqsd did not write (no provenance record, or edited since)",
        )
    if (have.bucket, have.key) != (listed.bucket, listed.key):
        return Decision(
            action=Action.CONFLICT,
            reason=f"the file holds another object (s3://{have.bucket}/{have.key})",
        )
    if listed.etag is not None and have.etag == listed.etag and have.size == listed.size:
        return Decision(action=Action.SKIP, reason="already in the folder")
    return Decision(
        action=Action.REPLACE,
        reason=f"the file holds another version (ETag {have.etag}, {have.size} bytes)",
    )


def removable(
    have: Provenance,
    *,
    path: Path,
    home: Path | None,
    complete: Iterable[Target],
    listed: Collection[tuple[str, str]],
) -> bool:
    """Whether ``--delete`` may remove the file at ``path`` whose provenance is ``have``.

    ``home``: where the daemon stores ``have``'s object now (routing and paths), None when it
    stores it nowhere; ``complete``: the targets whose listing was read to its end;
    ``listed``: the (bucket, key) of every object those listings gave.
    """
    if home is None or home != path:
        return False
    if not any(target.covers(have.bucket, have.key) for target in complete):
        return False
    return (have.bucket, have.key) not in listed
