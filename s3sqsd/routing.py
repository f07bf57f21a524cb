"""Object (bucket, key) -> where it goes and what runs after. Pure: no I/O, no logging.

Without ``routes`` every object goes to ``download_folder`` under its full key and gets the
top-level ``on_download``: exactly the behaviour before routes existed. With ``routes`` the
first route whose matchers all match takes the object (a route without matchers takes every
object); ``None`` means no route does, and the caller applies ``unrouted``.

Matchers: ``bucket`` is compared exactly; ``prefix`` with ``str.startswith`` on the decoded
key; ``glob`` with ``fnmatch.fnmatchcase`` on the whole decoded key, so ``*`` and ``?`` match
``/`` too (``*.csv`` matches ``a/b.csv``) and case matters on every platform.

``strip_prefix`` removes the route's prefix (config guarantees it ends with ``/``) from the
part of the key that becomes the path; that remainder goes through ``paths.local_path`` like
any key, so every path rule (no ``..``, no temp folder, length limits) still applies below the
route's folder. A key equal to the prefix (``reports/`` for prefix ``reports/``) leaves an
empty remainder: it is the folder marker of the route's folder itself, and, like every folder
marker, needs no download (``Placement.local_path`` returns None).

``route`` answers with a ``Placement`` whose ``folder`` is the download folder's Path; the
daemon hands the worker the same type with that folder's ``Fetcher`` in its place.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from s3sqsd.config import CommandConfig, Config, RouteConfig
from s3sqsd.paths import local_path

# The folder's handle: a Path here, where routing decides; the folder's Fetcher in the worker.
Folder = TypeVar("Folder")


# Not slots=True: with slots, Python 3.11 breaks ``Placement[X](...)`` on a frozen generic
# dataclass (TypeError from __setattr__); one object per file, so slots would save nothing.
@dataclass(frozen=True, kw_only=True)
class Placement(Generic[Folder]):
    """Where one object goes (a download folder, the key part below it) and what runs after.

    One type for the routing decision and for what the worker acts on, so that a field added to
    routes (a new per-route setting) has one place to go and cannot be dropped on the way from
    ``route`` to the download thread: routing fills ``folder`` with the folder's Path (pure, no
    I/O), the daemon swaps in that folder's ``Fetcher`` (which owns its temp folder and path
    locks) and keeps every other field. Without routes there is one placement for everything.
    """

    folder: Folder
    key_path: str | None = None  # None: the key itself; else the key without the route's
    # prefix, "" being the route folder's own marker
    on_download: CommandConfig | None = None  # resolved: the route's, else the top-level one
    after_download: str = "keep"  # resolved likewise: "delete" deletes the source (sources.py)
    route_index: int | None = None  # index into config.routes; None without routes

    def local_path(self: Placement[Path], *, bucket: str, key: str) -> Path | None:
        """The file's path under ``folder``; None for a folder marker (nothing to download).

        ``key`` is the object's full key, named in errors. Raise UnsafeKeyError, like
        ``paths.local_path``, for a key part that cannot be stored safely.
        """
        return local_path(
            self.folder,
            key,
            bucket=bucket,
            key_path=self.key_path,
            stripped_by=f"routes[{self.route_index}]",
        )


def route(obj_bucket: str, obj_key: str, *, config: Config) -> Placement[Path] | None:
    """The placement of the object ``obj_bucket``/``obj_key`` (decoded), or None: no route."""
    if not config.routes:
        return Placement(
            folder=config.download_folder,
            on_download=config.on_download,
            after_download=config.after_download,
        )
    for index, rule in enumerate(config.routes):
        if matches(rule, obj_bucket, obj_key):
            key_path = None
            if rule.strip_prefix and rule.prefix is not None:
                key_path = obj_key[len(rule.prefix) :]
            on_download = rule.on_download if rule.on_download is not None else config.on_download
            return Placement(
                folder=rule.download_folder,
                key_path=key_path,
                on_download=on_download,
                after_download=rule.after_download or config.after_download,
                route_index=index,
            )
    return None


def matches(rule: RouteConfig, bucket: str, key: str) -> bool:
    """True when every matcher ``rule`` has accepts the object (no matcher: always)."""
    if rule.bucket is not None and rule.bucket != bucket:
        return False
    if rule.prefix is not None and not key.startswith(rule.prefix):
        return False
    return rule.glob is None or fnmatch.fnmatchcase(key, rule.glob)


def download_folders(config: Config) -> tuple[Path, ...]:
    """Every distinct folder objects can be written to, in order of first use.

    One ``Fetcher`` (with its own temp folder and start-up sweep) per folder: routes that
    share a folder share its fetcher, and so its per-path locks.
    """
    if not config.routes:
        return (config.download_folder,)
    return tuple(dict.fromkeys(rule.download_folder for rule in config.routes))
