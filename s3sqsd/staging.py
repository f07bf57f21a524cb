"""The temp file a download is written to, and the steps that make it the final file.

A download's bytes go to a new file in the hidden temp folder ``root/.s3sqsd-tmp``, never to
the final path: a reader of the folder sees the old file or the whole new one, nothing between.
``Staging.open`` creates the file with ``file_mode`` and registers its removal before the first
byte is written, so every failure path, cancellation included, leaves no temp file; the one
exit that keeps it is the rename (``StagedFile.move_to``), after which the name is gone.
``StagedFile.seal`` labels the file with its provenance (the rename carries the xattr
atomically) and fsyncs it; the caller makes the rename durable with its directory (dirsync.py).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from s3sqsd.errors import LocalError
from s3sqsd.events import ObjectCreated
from s3sqsd.folder import local_error, unwritable
from s3sqsd.objectmeta import NO_META, ObjectMeta
from s3sqsd.provenance import Provenance, ProvenanceLabels
from s3sqsd.verify import s3_url

TEMP_SUFFIX = ".part"
TEMP_NAME_ATTEMPTS = 16  # names in a row found taken before a temp file counts as a failure


class StagedFile:
    """One open temp file: written by the download, then sealed and moved into place."""

    __slots__ = ("_labels", "_mtime_from_s3", "fd", "path", "renamed")

    def __init__(
        self, *, path: Path, fd: int, labels: ProvenanceLabels, mtime_from_s3: bool = True
    ) -> None:
        self.path = path
        self.fd = fd
        self.renamed = False  # once True, the name is the final file's: not to be unlinked
        self._labels = labels
        self._mtime_from_s3 = mtime_from_s3

    def seal(
        self,
        obj: ObjectCreated,
        *,
        etag: str | None,
        version_id: str | None,
        size: int,
        meta: ObjectMeta = NO_META,
    ) -> Provenance:
        """Label the file with its provenance, give it its mtime, then fsync it: after the
        rename, the final path holds durable bytes that say where they came from, with the
        object's LastModified as mtime from the first moment it is visible there (unless
        ``file_mtime: download_time``). Returns the provenance, the candidate the caller
        judges against the file on disk before the rename."""
        provenance = Provenance(
            bucket=obj.bucket,
            key=obj.key,
            version_id=version_id,
            etag=etag,
            sequencer=obj.sequencer,
            size=size,
            event_time=obj.event_time,
            last_modified=meta.last_modified,
            content_type=meta.content_type,
            metadata=meta.metadata,
        )
        try:
            self._labels.write(self.fd, provenance)
        except OSError as exc:
            raise local_error(exc, self.path, obj, "cannot label") from exc
        if self._mtime_from_s3 and meta.last_modified is not None:
            try:
                # futimens on the open temp file: atime and mtime both LastModified, as
                # rclone and ``aws s3 sync`` leave them.
                os.utime(self.fd, (meta.last_modified, meta.last_modified))
            except OSError as exc:
                raise local_error(exc, self.path, obj, "cannot set the mtime of") from exc
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise local_error(exc, self.path, obj, "cannot sync") from exc
        return provenance

    def move_to(self, final: Path, obj: ObjectCreated) -> None:
        """Rename the file over ``final`` (atomic: same filesystem, checked by ``prepare``)."""
        try:
            os.replace(self.path, final)
        except OSError as exc:
            raise local_error(exc, final, obj, "cannot move into place") from exc
        self.renamed = True


class Staging:
    """Makes the temp files of one download folder; safe to use from many threads at once."""

    def __init__(
        self,
        *,
        root: Path,
        temp_dir: Path,
        file_mode: int,
        labels: ProvenanceLabels,
        mtime_from_s3: bool = True,
    ) -> None:
        """``mtime_from_s3``: each file's mtime is its object's LastModified (config
        ``file_mtime: last_modified``); False leaves it the time of the download."""
        self._root = root
        self._temp_dir = temp_dir
        self._file_mode = file_mode
        self._labels = labels
        self._mtime_from_s3 = mtime_from_s3
        # Temp names: a random prefix per Fetcher and a counter, not a random name per file
        # (a getrandom call each). They only need to be unique among this process's files:
        # the folder is locked to one process and swept of leftovers at start, and O_EXCL
        # refuses a name that exists anyway.
        self._temp_prefix = f"{secrets.token_hex(6)}-"
        self._temp_numbers = itertools.count()
        # Whether a file created with file_mode gets exactly file_mode (the umask, or a default
        # ACL of the temp folder, strips none of its bits): probed by ``probe``; until then,
        # and when it does not, each temp file gets an fchmod.
        self._mode_exact = False

    def probe(self) -> None:
        """Create a file the way a download does: can it carry an xattr, does it get exactly
        ``file_mode``? The umask is the process's, set before start (systemd's ``UMask=``)
        and never changed by s3sqsd, so the answer holds until the next ``prepare``."""
        probe = self._temp_dir / f"probe-{secrets.token_hex(8)}{TEMP_SUFFIX}"
        try:
            fd = os.open(
                probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, self._file_mode
            )
        except OSError as exc:
            raise unwritable(self._root, exc) from exc
        try:
            try:
                self._mode_exact = stat.S_IMODE(os.fstat(fd).st_mode) == self._file_mode
                os.fchmod(fd, 0o600)  # the xattr probe needs the owner's write bit
                self._labels.probe(fd)
            except OSError as exc:
                raise unwritable(self._root, exc) from exc
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)

    @contextlib.contextmanager
    def open(self, obj: ObjectCreated) -> Iterator[StagedFile]:
        """A new temp file for ``obj``, closed on exit and removed unless it was moved into
        place: the removal is registered here, before the caller writes a byte."""
        temp, fd = self._open_temp(obj)
        staged = StagedFile(
            path=temp, fd=fd, labels=self._labels, mtime_from_s3=self._mtime_from_s3
        )
        try:
            yield staged
        finally:
            try:
                os.close(fd)
            finally:
                if not staged.renamed:
                    _unlink_quietly(temp)

    def _open_temp(self, obj: ObjectCreated) -> tuple[Path, int]:
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
        for attempt in range(TEMP_NAME_ATTEMPTS):
            temp = self._temp_dir / f"{self._temp_prefix}{next(self._temp_numbers)}{TEMP_SUFFIX}"
            try:
                fd = os.open(temp, flags, self._file_mode)
                break
            except FileExistsError:
                if attempt + 1 < TEMP_NAME_ATTEMPTS:
                    continue  # not ours (the folder was swept at start): take the next number
                raise LocalError(
                    f"cannot create temp file {temp} for {s3_url(obj)}: "
                    f"{TEMP_NAME_ATTEMPTS} names in a row exist"
                ) from None
            except OSError as exc:
                raise LocalError(
                    f"cannot create temp file {temp} for {s3_url(obj)}: {exc.strerror or exc}"
                ) from exc
        if self._mode_exact:
            return temp, fd
        try:
            os.fchmod(fd, self._file_mode)  # the umask may have removed bits
        except OSError as exc:
            os.close(fd)
            _unlink_quietly(temp)
            raise LocalError(
                f"cannot set mode on {temp} for {s3_url(obj)}: {exc.strerror or exc}"
            ) from exc
        return temp, fd


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
