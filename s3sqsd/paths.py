"""Object key -> local path inside ``download_folder``. Pure: no I/O, no boto3, no logging.

A key is mapped one to one, ``root / key``, and refused when that mapping could leave the root,
collide with another key or the daemon's own temp folder, or hit a kernel limit. Refusing is
preferred to rewriting: a rewritten name (``..`` -> ``_``) could silently merge two different
keys into one file, while a refusal is visible and counted. Symlinks are not looked at here;
the download folder (folder.py), which does the I/O, checks them when it opens the directories.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from s3sqsd.errors import UnsafeKeyError
from s3sqsd.events import object_url

TEMP_DIR_NAME = ".s3sqsd-tmp"
"""The daemon's hidden temp folder directly under ``download_folder``; no key may use it."""

PATH_LOCK_NAME = "paths.lock"
"""The file in the temp folder whose byte-range locks order changes to one path across
processes (pathlocks.py); never swept."""

SYNC_DIR_PREFIX = "sync."
"""The temp sub-folders of ``s3sqsd sync`` processes (``sync.<pid>.<random>``), each locked
by its process while it lives (folder.py)."""

NAME_MAX = 255
"""Longest file name component in bytes (Linux ``NAME_MAX`` on ext4, xfs, btrfs, tmpfs)."""

PATH_MAX = 4095
"""Longest full path in bytes: Linux ``PATH_MAX`` is 4096 including the terminating NUL."""


_FORBIDDEN_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""C0 controls (NUL, newline...), DEL, C1 controls, and lone surrogates.

Control characters in file names break shell scripts and log lines that consumers of the
download folder use; a lone surrogate cannot be encoded as UTF-8 at all. One regex search per
key, not a Python call per character (every download checks its key).
"""


def local_path(
    root: Path,
    key: str,
    *,
    bucket: str,
    key_path: str | None = None,
    stripped_by: str = "a route",
) -> Path | None:
    """Map ``key`` to ``root/<key>``; None for a folder marker (a key ending in ``/``).

    ``root`` must be absolute and normalised (the caller guarantees it). Raise UnsafeKeyError,
    naming ``s3://bucket/key`` and the rule broken, for any key that is not a plain relative
    path of non-empty, non-dot components within the kernel's length limits.

    ``key_path``: the part of the key that becomes the path, when a route strips a prefix
    (``stripped_by`` names it in errors); "" is the route folder's own marker (None). The same
    rules apply to it, and errors still name the full key.
    """
    if key_path is not None and key_path != key:
        if key_path == "":
            return None
        try:
            return local_path(root, key_path, bucket=bucket)
        except UnsafeKeyError as exc:
            raise UnsafeKeyError(
                f"{exc} (the key {object_url(bucket, key)} with the prefix of {stripped_by} "
                "stripped)"
            ) from None
    # A folder marker ("a/b/") stands for a directory, which needs no download; it is still
    # validated like any other key so that "../x/" is refused, not quietly skipped.
    folder_marker = key.endswith("/")
    segments = (key[:-1] if folder_marker else key).split("/")
    problem = _problem(root, key, segments)
    if problem is not None:
        raise UnsafeKeyError(f"unsafe key {object_url(bucket, key)}: {problem}")
    return None if folder_marker else root.joinpath(*segments)


def _problem(root: Path, key: str, segments: list[str]) -> str | None:
    """The first rule ``key`` breaks, or None when it maps safely under ``root``."""
    if not key:
        return "empty key"
    if key.startswith("/"):
        return "absolute path (starts with '/')"
    if _FORBIDDEN_CHARS.search(key):
        return "control character, NUL or lone surrogate in key"
    for segment in segments:
        if not segment:
            return "empty path component ('//' or a trailing '//')"
        if segment in (".", ".."):
            return f"'{segment}' path component"
        if len(segment.encode("utf-8")) > NAME_MAX:
            return f"path component longer than {NAME_MAX} bytes"
    if segments[0] == TEMP_DIR_NAME:
        return f"'{TEMP_DIR_NAME}' is reserved for the daemon's temporary files"
    target = os.path.join(root, *segments)
    if len(os.fsencode(target)) > PATH_MAX:
        return f"full local path longer than {PATH_MAX} bytes"
    # Belt and braces: the rules above already exclude every way out, but the guarantee that
    # matters is this one, so it is checked directly as well.
    base = os.path.normpath(root)
    inside = os.path.normpath(target)
    if inside == base or os.path.commonpath([base, inside]) != base:
        return "resolves outside download_folder"
    return None
