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
marker, needs no download (``Target.local_path`` returns None).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

from s3sqsd.config import CommandConfig, Config, RouteConfig
from s3sqsd.paths import local_path


@dataclass(frozen=True, slots=True)
class Target:
    """Where one object goes: ``root`` (a download folder) and the key part below it."""

    root: Path
    key_path: str  # the key, or the key without the route's prefix; "" is a folder marker
    on_download: CommandConfig | None  # already resolved: the route's, else the top-level one
    route_index: int | None  # index into config.routes; None without routes

    def local_path(self, *, bucket: str, key: str) -> Path | None:
        """The file's path under ``root``; None for a folder marker (nothing to download).

        ``key`` is the object's full key, named in errors. Raise UnsafeKeyError, like
        ``paths.local_path``, for a key part that cannot be stored safely.
        """
        return local_path(
            self.root,
            key,
            bucket=bucket,
            key_path=self.key_path,
            stripped_by=f"routes[{self.route_index}]",
        )


def route(obj_bucket: str, obj_key: str, *, config: Config) -> Target | None:
    """The target of the object ``obj_bucket``/``obj_key`` (decoded), or None: no route."""
    if not config.routes:
        return Target(config.download_folder, obj_key, config.on_download, None)
    for index, rule in enumerate(config.routes):
        if matches(rule, obj_bucket, obj_key):
            key_path = obj_key
            if rule.strip_prefix and rule.prefix is not None:
                key_path = obj_key[len(rule.prefix) :]
            on_download = rule.on_download if rule.on_download is not None else config.on_download
            return Target(rule.download_folder, key_path, on_download, index)
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
