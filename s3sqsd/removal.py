"""``on_remove: delete``: remove the local file of an S3 removal event, only when provably ours.

A file is unlinked only when its provenance names the removed object and the removal's
sequencer is newer than the file's (the rule: ``provenance.removal_verdict``), under the same
per-path lock that orders the fetcher's renames (pathlocks.py), on a file opened without
following symlinks; every other case keeps the file and returns the reason (``RemoveOutcome``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from pathlib import Path

from s3sqsd.errors import LocalError, UnsafeKeyError
from s3sqsd.events import OtherRecord, is_removal, object_url
from s3sqsd.folder import inside
from s3sqsd.outcomes import RemoveOutcome
from s3sqsd.pathlocks import PathLocks
from s3sqsd.paths import local_path
from s3sqsd.provenance import XATTR_NAME, removal_verdict


class Remover:
    """Removes files from ``root``; ``remove`` is safe to call from many threads at once."""

    def __init__(self, *, root: Path, paths: PathLocks) -> None:
        """``paths``: the per-path locks shared with the fetcher of the same folder."""
        self._root = root
        self._paths = paths

    def remove(self, record: OtherRecord, *, key_path: str | None = None) -> RemoveOutcome:
        """Remove the local file of a removal event, only when it is provably that object's.

        Removed only when all hold: ``record`` is a removal (``ObjectRemoved:*`` or EventBridge
        "Object Deleted"); the path ``root/<key_path>`` (``key_path`` defaults to the key; a
        route with ``strip_prefix`` passes the stripped one) holds a regular file, reached
        without leaving ``root``; its provenance names ``record``'s bucket and key and its size
        still matches; both sequencers are known and the event's is newer; and a versioned
        ``ObjectRemoved:Delete`` names the file's version (deleting an older version leaves the
        current object, and so the file, in place). The checks and the unlink run under the
        per-path lock that orders renames, on a file opened without following symlinks, and
        the directory is fsynced before REMOVED is returned. Every other case keeps the file
        and says why. Raises LocalError only when the folder cannot be read or synced.
        """
        if not is_removal(record.event_name):
            return RemoveOutcome.NOT_REMOVAL
        try:
            path = local_path(self._root, record.key, bucket=record.bucket, key_path=key_path)
        except UnsafeKeyError:
            return RemoveOutcome.UNSAFE_KEY
        if path is None:
            return RemoveOutcome.FOLDER_MARKER
        root_real = os.path.realpath(self._root)
        if not inside(os.path.realpath(path.parent), root_real):
            return RemoveOutcome.KEPT_NOT_REGULAR  # a symlinked directory leading outside
        with self._paths.lock(path) as entry:
            try:
                dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                return RemoveOutcome.ABSENT
            except OSError as exc:
                raise _remove_error(exc, path.parent, record, "cannot open") from exc
            try:
                outcome = self._remove_in(dir_fd, path, record)
                if outcome is RemoveOutcome.REMOVED:
                    entry.changes += 1
                    try:
                        os.fsync(dir_fd)  # the unlink is durable only with its directory
                    except OSError as exc:
                        raise _remove_error(exc, path.parent, record, "cannot sync") from exc
                return outcome
            finally:
                os.close(dir_fd)

    @staticmethod
    def _remove_in(dir_fd: int, path: Path, record: OtherRecord) -> RemoveOutcome:
        name = path.name
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
        try:
            fd = os.open(name, flags, dir_fd=dir_fd)
        except FileNotFoundError:
            return RemoveOutcome.ABSENT
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return RemoveOutcome.KEPT_NOT_REGULAR  # a symlink: never ours, never followed
            if exc.errno in (errno.EACCES, errno.EPERM):
                return RemoveOutcome.KEPT_NO_PROVENANCE  # not readable by us: not ours
            raise _remove_error(exc, path, record, "cannot open") from exc
        try:
            st = os.fstat(fd)
            raw: bytes | None = None
            if stat.S_ISREG(st.st_mode):
                with contextlib.suppress(OSError):  # no xattr, or no xattr support
                    raw = os.getxattr(fd, XATTR_NAME)
            verdict = removal_verdict(
                record, regular=stat.S_ISREG(st.st_mode), size=st.st_size, provenance=raw
            )
            if verdict is not RemoveOutcome.REMOVED:
                return verdict
            # Still the very file checked (not replaced behind the lock by a local user)?
            now = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                return RemoveOutcome.KEPT_NOT_REGULAR
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return RemoveOutcome.ABSENT
        except OSError as exc:
            raise _remove_error(exc, path, record, "cannot remove") from exc
        finally:
            os.close(fd)
        return RemoveOutcome.REMOVED


def _remove_error(exc: OSError, path: Path, record: OtherRecord, doing: str) -> LocalError:
    url = object_url(record.bucket, record.key)
    return LocalError(f"{doing} {path} for the removal of {url}: {exc.strerror or exc}")
