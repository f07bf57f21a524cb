"""Provenance: what a downloaded file was made from, kept with the file, and the rules it feeds.

Every downloaded file carries a record of the event it came from (bucket, key, version, ETag,
sequencer, size, event time) as compact JSON in the xattr ``user.s3sqsd``. The temp file is
labelled before its rename, so the final path never holds bytes without their label.

Two pure rules read it, and are unit-tested on their own:

- ``skip_verdict``: may a new event replace the file? An event older than the file (S3
  ``sequencer``) is STALE, the same event again (same sequencer, and the same ETag and version:
  a store may repeat sequencers, and then the event time orders them) is a DUPLICATE, and so is,
  without two sequencers to compare, an event naming the object on disk (same ETag, and version
  when it names one). Anything else downloads.
- ``removal_verdict``: may a removal event delete the file? Only a file whose provenance names
  the removed object and whose sequencer is older than the removal's.

A file whose size no longer matches its provenance (edited by hand) is not trusted. On a
filesystem without user xattrs there is no provenance, and every event downloads and replaces
(``ProvenanceLabels.supported`` is False). The recorded sequencer is the event's even when an
unversioned GET returned a newer object: a later event then downloads once more, which is
harmless, while the reverse could skip new bytes.
"""

from __future__ import annotations

import enum
import errno
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TypeGuard

from s3sqsd.events import ObjectCreated, OtherRecord, event_time_earlier, sequencer_newer
from s3sqsd.objectmeta import ObjectMeta, Pairs
from s3sqsd.outcomes import FetchOutcome, RemoveOutcome
from s3sqsd.verify import strip_etag

XATTR_NAME = "user.s3sqsd"
# The bound a record is kept under (``Provenance.encode``). ext4 keeps all of a file's xattrs
# (names, values, headers, and an SELinux label or ACL beside ours) in one block, 4 KiB at
# most: 3 KiB for ours leaves room for the others. S3 allows 2 KiB of user metadata, which
# JSON escaping can make larger, so metadata alone can push a record over: it is dropped first.
MAX_RECORD_BYTES = 3072

_NO_XATTR_ERRNOS = frozenset({errno.ENOTSUP, errno.EOPNOTSUPP})


@dataclass(frozen=True, slots=True)
class Provenance:
    """What a downloaded file was made from; stored as compact JSON in xattr ``user.s3sqsd``."""

    bucket: str
    key: str
    version_id: str | None
    etag: str | None
    sequencer: str | None
    size: int
    event_time: str | None = None  # the event's; orders events only where sequencers repeat
    # S3's facts from the GET (objectmeta.py); absent from records of earlier versions.
    last_modified: int | None = None  # epoch seconds UTC: orders versions without sequencers
    content_type: str | None = None
    metadata: Pairs = ()  # user metadata (x-amz-meta-*), sorted pairs
    metadata_dropped: bool = False  # the metadata did not fit in MAX_RECORD_BYTES

    @property
    def meta(self) -> ObjectMeta:
        return ObjectMeta(
            last_modified=self.last_modified,
            content_type=self.content_type,
            metadata=self.metadata,
        )

    def encode(self) -> bytes:
        """Compact JSON of at most ``MAX_RECORD_BYTES`` when it can be: the user metadata is
        left out (``metadata_dropped``) when the whole record would be larger, so the facts
        that order versions (ETag, version, sequencer, LastModified) always fit. Only a record
        too large even without it (a very long non-ASCII key) exceeds the bound."""
        raw = self._encode(self.metadata, self.metadata_dropped)
        if len(raw) > MAX_RECORD_BYTES and self.metadata:
            raw = self._encode((), True)
        return raw

    def _encode(self, metadata: Pairs, dropped: bool) -> bytes:
        fields: dict[str, object] = {
            "bucket": self.bucket,
            "key": self.key,
            "version_id": self.version_id,
            "etag": self.etag,
            "sequencer": self.sequencer,
            "size": self.size,
        }
        if self.event_time is not None:
            fields["event_time"] = self.event_time
        if self.last_modified is not None:
            fields["last_modified"] = self.last_modified
        if self.content_type is not None:
            fields["content_type"] = self.content_type
        if metadata:
            fields["metadata"] = dict(metadata)
        if dropped:
            fields["metadata_dropped"] = True
        return json.dumps(fields, separators=(",", ":"), sort_keys=True).encode("ascii")

    @classmethod
    def decode(cls, raw: bytes) -> Provenance | None:
        """Parse an xattr value; None for anything that is not ours or not well formed."""
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        strings = ("bucket", "key")
        optional = ("version_id", "etag", "sequencer", "event_time")
        if not all(isinstance(data.get(name), str) for name in strings):
            return None
        if not all(data.get(name) is None or isinstance(data[name], str) for name in optional):
            return None
        size = data.get("size")
        if not _count(size):
            return None
        # The fields added with S3's metadata: a record of an earlier version has none of them.
        last_modified = data.get("last_modified")
        content_type = data.get("content_type")
        metadata = data.get("metadata", {})
        dropped = data.get("metadata_dropped", False)
        if last_modified is not None and not _count(last_modified):
            return None
        if content_type is not None and not isinstance(content_type, str):
            return None
        if not isinstance(metadata, dict) or not isinstance(dropped, bool):
            return None
        if not all(isinstance(value, str) for value in metadata.values()):
            return None
        return cls(
            bucket=data["bucket"],
            key=data["key"],
            version_id=data.get("version_id"),
            etag=data.get("etag"),
            sequencer=data.get("sequencer"),
            size=size,
            event_time=data.get("event_time"),
            last_modified=last_modified,
            content_type=content_type,
            metadata=tuple(sorted(metadata.items())),
            metadata_dropped=dropped,
        )


def _count(value: object) -> TypeGuard[int]:
    """A JSON integer >= 0 (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_provenance(path: Path) -> Provenance | None:
    """The provenance of the file at ``path`` if it is a regular file whose size still matches."""
    try:
        raw = os.getxattr(path, XATTR_NAME, follow_symlinks=False)
        st = os.lstat(path)
    except OSError:
        return None  # no file, no xattr, no xattr support, a symlink: nothing to trust
    provenance = Provenance.decode(raw)
    if provenance is None or not stat.S_ISREG(st.st_mode) or st.st_size != provenance.size:
        return None  # edited or truncated since it was written: not what it claims to be
    return provenance


class ProvenanceLabels:
    """Reads and writes the provenance xattrs of one download folder's files, and remembers
    whether its filesystem takes them at all (the probe of ``prepare``, then every label).

    Once a filesystem is known to refuse user xattrs, nothing is written or read any more:
    every event then downloads and replaces, which is safe, only slower.
    """

    def __init__(self) -> None:
        self._supported: bool | None = None

    @property
    def supported(self) -> bool | None:
        """Whether files get provenance xattrs; None until a probe or a label tells."""
        return self._supported

    def probe(self, fd: int) -> None:
        """Try a placeholder label on the probe file ``fd`` (its owner may write it).

        Records whether the filesystem takes user xattrs; any other failure is raised (an
        OSError, for the caller to word: the folder is then not usable).
        """
        try:
            os.setxattr(fd, XATTR_NAME, b"{}")
        except OSError as exc:
            if exc.errno not in _NO_XATTR_ERRNOS:
                raise
            self._supported = False
            return
        self._supported = True

    def write(self, fd: int, provenance: Provenance) -> None:
        """Label the open temp file ``fd``, so its rename carries the label atomically.

        A filesystem without user xattrs, or a record too big for it, leaves the file without
        provenance (not an error); any other OSError is raised for the caller to word.
        """
        if self._supported is False:
            return
        try:
            os.setxattr(fd, XATTR_NAME, provenance.encode())
        except OSError as exc:
            if exc.errno in _NO_XATTR_ERRNOS:
                self._supported = False
                return
            if exc.errno in (errno.E2BIG, errno.ERANGE):
                return  # too big for this filesystem: this file goes without provenance
            raise
        self._supported = True

    def read(self, path: Path) -> Provenance | None:
        """The file's provenance (``read_provenance``); None at once without xattr support."""
        if self._supported is False:
            return None
        return read_provenance(path)


def skip_verdict(obj: ObjectCreated, *, have: Provenance | None) -> FetchOutcome | None:
    """Whether the file whose provenance is ``have`` makes the download of ``obj`` needless
    (pure): STALE when the file comes from a later event, DUPLICATE when it comes from this
    very event or holds this very object, None to download (and replace the file)."""
    if have is None or (have.bucket, have.key) != (obj.bucket, obj.key):
        return None
    event_etag = strip_etag(obj.etag)
    same_object = (
        event_etag is not None
        and have.etag == event_etag
        and (obj.version_id is None or have.version_id == obj.version_id)
    )
    if obj.sequencer is not None and have.sequencer is not None:
        if sequencer_newer(obj.sequencer, have.sequencer):
            return None
        if sequencer_newer(have.sequencer, obj.sequencer):
            return FetchOutcome.STALE
        # An equal sequencer is the same event only if it names the same object: LocalStack
        # gives every event one sequencer, and S3-compatible stores may repeat them. For
        # those, the event time is the order left: an earlier event does not replace.
        if same_object:
            return FetchOutcome.DUPLICATE
        if event_time_earlier(obj.event_time, have.event_time):
            return FetchOutcome.STALE
        return None
    # Without two sequencers to compare, the same object (bucket, key, ETag, and version
    # when the event names one) is already on disk: a redelivery, or a store that
    # announces one upload twice (moto: Put and CompleteMultipartUpload).
    if same_object:
        return FetchOutcome.DUPLICATE
    return None


def same_event(obj: ObjectCreated, *, have: Provenance | None) -> bool:
    """Whether the file whose record is ``have`` was downloaded for this very event (pure): an
    earlier attempt at the same message, or S3 delivering the same notification again. The
    same object (bucket, key, ETag, and version when the event names one) and the same
    sequencer; where the store sends no sequencer, none recorded and the same event time.
    A file a listing wrote (no sequencer, its LastModified as the time), or one from another
    event announcing the same object, is not."""
    if have is None or (have.bucket, have.key) != (obj.bucket, obj.key):
        return False
    event_etag = strip_etag(obj.etag)
    if event_etag is None or have.etag != event_etag:
        return False
    if obj.version_id is not None and have.version_id != obj.version_id:
        return False
    if obj.sequencer is not None:
        return have.sequencer == obj.sequencer
    return (
        have.sequencer is None
        and obj.event_time is not None
        and (have.event_time == obj.event_time)
    )


class Origin(enum.Enum):
    """Where a candidate for a path comes from; the rules differ only for a file s3sqsd did
    not write (or another object's): an event replaces it, as it always has, a listing never
    does (``s3sqsd sync`` reports it as a conflict)."""

    EVENT = "event"  # an S3 event notification: the daemon's queue
    LISTING = "listing"  # a bucket listing: ``s3sqsd sync``, reconcile


class Verdict(enum.Enum):
    """What ``newer_verdict`` says of a downloaded candidate and the file at its path."""

    REPLACE = "replace"  # rename the candidate over the file
    STALE = "stale"  # the file holds a newer object: the candidate's temp file is discarded
    DUPLICATE = "duplicate"  # the file already holds the candidate's object
    CONFLICT = "conflict"  # a file s3sqsd did not write (or another object's): a listing keeps it
    ASK_S3 = "ask_s3"  # the record cannot order them: ask S3 which is current (``current_verdict``)


def newer_verdict(
    obj: ObjectCreated,
    candidate: Provenance,
    *,
    have: Provenance | None,
    origin: Origin = Origin.EVENT,
) -> Verdict:
    """May ``candidate`` (the record the temp file downloaded for ``obj`` carries: the GET's
    ETag, version and LastModified) replace the file found at its path, whose record is
    ``have`` (None: a file with no trustworthy record)? Pure; the fetcher asks it under the
    per-path locks, right before the rename, in every process.

    - With two sequencers of one bucket/key, the sequencer decides: ``skip_verdict`` on the
      event, exactly as before the listing existed.
    - Otherwise (a listing has no sequencer, nor do files a listing wrote, nor moto's events)
      the same object (ETag, and version when both name one) is a DUPLICATE, and any other
      object is ASK_S3: LastModified cannot order two objects of one key, because a multipart
      object's LastModified is when its upload began, not when it became current. The caller
      then asks S3 which object is current (``current_verdict``): only the current one
      replaces, so an older object can never go over a newer one, and the file still
      converges, because the current object always wins whoever asks.
    """
    if have is None or (have.bucket, have.key) != (candidate.bucket, candidate.key):
        return Verdict.REPLACE if origin is Origin.EVENT else Verdict.CONFLICT
    if obj.sequencer is not None and have.sequencer is not None:
        return _VERDICTS[skip_verdict(obj, have=have)]
    same_object = (
        candidate.etag is not None
        and candidate.etag == have.etag
        and (candidate.version_id is None or candidate.version_id == have.version_id)
    )
    if same_object:
        return Verdict.DUPLICATE
    # Two different objects of one key, and no pair of sequencers to order them: LastModified
    # cannot either, in either direction. A multipart object's LastModified is when its upload
    # began, so an object completed later can carry an earlier time than one PUT meanwhile.
    # Only S3 knows which is current; the fetcher asks it (one HEAD, and only here).
    return Verdict.ASK_S3


_VERDICTS = {
    None: Verdict.REPLACE,
    FetchOutcome.STALE: Verdict.STALE,
    FetchOutcome.DUPLICATE: Verdict.DUPLICATE,
}


def current_verdict(
    candidate: Provenance, *, current_etag: str | None, current_version_id: str | None
) -> Verdict:
    """The answer to ASK_S3 (pure): REPLACE when S3's current object of the key (a HEAD
    without a version: ``current_*``, both None when the key is gone) is the candidate, else
    STALE. The current object is as new as any, so it may go over whatever the file holds;
    a candidate that is not current is left out even when it is newer than the file, because
    the current object's own event or listing brings that one."""
    if current_version_id is not None and candidate.version_id is not None:
        current = current_version_id == candidate.version_id
    else:
        current = candidate.etag is not None and strip_etag(current_etag) == candidate.etag
    return Verdict.REPLACE if current else Verdict.STALE


def removal_verdict(
    record: OtherRecord, *, regular: bool, size: int, provenance: bytes | None
) -> RemoveOutcome:
    """The rule of ``Fetcher.remove`` for a file found at the record's path (pure): REMOVED
    when it may go, else the reason to keep it. ``provenance`` is the raw xattr value."""
    if not regular:
        return RemoveOutcome.KEPT_NOT_REGULAR
    have = None if provenance is None else Provenance.decode(provenance)
    if have is None or have.size != size:
        return RemoveOutcome.KEPT_NO_PROVENANCE
    if (have.bucket, have.key) != (record.bucket, record.key):
        return RemoveOutcome.KEPT_NOT_OURS
    if (
        record.event_name == "ObjectRemoved:Delete"
        and record.version_id is not None
        and have.version_id is not None
        and record.version_id != have.version_id
    ):
        return RemoveOutcome.KEPT_OTHER_VERSION
    if record.sequencer is None or have.sequencer is None:
        return RemoveOutcome.KEPT_NO_SEQUENCER
    if not sequencer_newer(record.sequencer, have.sequencer):
        return RemoveOutcome.KEPT_NEWER
    return RemoveOutcome.REMOVED
