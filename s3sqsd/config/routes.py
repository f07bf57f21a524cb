"""``routes``: each route's matchers, folder and command, the bucket's identity and guards on
a route, and the checks across routes (overlapping folders, unreachable routes, one bucket's
settings alike)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from s3sqsd.config.aws import _account_id, _request_payer, _role_section
from s3sqsd.config.command import _command
from s3sqsd.config.keys import _ROUTE_KEYS, _unknown_keys
from s3sqsd.config.model import AFTER_DOWNLOAD_CHOICES, RouteConfig
from s3sqsd.config.values import (
    _absolute_file,
    _bucket_name,
    _Check,
    _choice,
    _download_folder,
    _Problems,
    _show,
)

_MAX_ROUTES = 1000  # each object is matched against them in order


def _routes(problems: _Problems, path: str, value: object) -> tuple[RouteConfig, ...] | None:
    if not isinstance(value, list):
        problems.add(
            path,
            "must be a list of routes, each a mapping with download_folder and any of bucket, "
            f"prefix, glob, strip_prefix, on_download, got {_show(value)}",
        )
        return None
    if not value:
        problems.add(
            path, "must list at least one route; leave it unset to download into download_folder"
        )
        return None
    if len(value) > _MAX_ROUTES:
        problems.add(path, f"must list at most {_MAX_ROUTES} routes, got {len(value)}")
        return None
    before = len(problems.lines)
    routes = [_route(problems, f"{path}[{index}]", item) for index, item in enumerate(value)]
    if len(problems.lines) != before:
        return None
    checked = [route for route in routes if route is not None]
    _overlapping_folders(problems, path, checked)
    _unreachable_routes(problems, path, checked)
    if len(problems.lines) != before:
        return None
    return tuple(checked)


def _route(problems: _Problems, path: str, value: object) -> RouteConfig | None:
    if not isinstance(value, Mapping):
        problems.add(
            path,
            "must be a mapping with download_folder and any of bucket, prefix, glob, "
            f"strip_prefix, on_download, got {_show(value)}",
        )
        return None
    before = len(problems.lines)
    folder: Path | None = None
    raw_folder = value.get("download_folder")
    if raw_folder is None:
        problems.add(f"{path}.download_folder", "required key is missing")
    else:
        folder = _download_folder(problems, f"{path}.download_folder", raw_folder)
    bucket: str | None = None
    raw_bucket = value.get("bucket")
    if raw_bucket is not None and _bucket_name(problems, f"{path}.bucket", raw_bucket):
        bucket = str(raw_bucket)
    prefix = _key_pattern(problems, f"{path}.prefix", value.get("prefix"))
    glob = _key_pattern(problems, f"{path}.glob", value.get("glob"))
    strip = False
    raw_strip = value.get("strip_prefix")
    if raw_strip is not None:
        if not isinstance(raw_strip, bool):
            problems.add(f"{path}.strip_prefix", f"must be true or false, got {_show(raw_strip)}")
        elif raw_strip and value.get("prefix") is None:
            problems.add(f"{path}.strip_prefix", f"needs {path}.prefix: the prefix to strip")
        elif raw_strip and prefix is not None and not prefix.endswith("/"):
            # Only whole folders are stripped: 'in' from 'inbox/a' would leave 'box/a', and
            # 'inbox' from 'inbox/a' would leave '/a', an absolute path that is refused.
            problems.add(
                f"{path}.prefix",
                f"must end with '/' when strip_prefix is true (only whole folders are "
                f"stripped), got {_show(prefix)}",
            )
        else:
            strip = raw_strip
    after_download = None
    if value.get("after_download") is not None:
        after_download = _choice(AFTER_DOWNLOAD_CHOICES)(
            problems, f"{path}.after_download", value["after_download"]
        )
    on_download = None
    raw_command = value.get("on_download")
    if raw_command is not None:
        on_download = _command(problems, f"{path}.on_download", raw_command)
    access = _bucket_access(problems, path, value)
    _unknown_keys(problems, value, f"{path}.", _ROUTE_KEYS)
    if len(problems.lines) != before or folder is None:
        return None
    return RouteConfig(
        download_folder=folder,
        bucket=bucket,
        prefix=prefix,
        glob=glob,
        strip_prefix=strip,
        after_download=after_download,
        on_download=on_download,
        **access,
    )


_ACCESS_KEYS = ("aws", "expected_bucket_owner", "request_payer", "sse_customer_key_file")


def _bucket_access(problems: _Problems, path: str, value: Mapping[Any, Any]) -> dict[str, Any]:
    """A route's own identity and guards: they belong to a bucket, so the route must name one."""
    checks: dict[str, _Check] = {
        "aws": _role_section,
        "expected_bucket_owner": _account_id,
        "request_payer": _request_payer,
        "sse_customer_key_file": _absolute_file,
    }
    found: dict[str, Any] = {}
    for key, check in checks.items():
        raw = value.get(key)
        if raw is not None:
            found[key] = check(problems, f"{path}.{key}", raw)
    if found and value.get("bucket") is None:
        problems.add(
            f"{path}.{next(iter(found))}",
            f"needs {path}.bucket: an identity or a guard belongs to one bucket (set it at the "
            "top level to apply it to every bucket)",
        )
    return found


def _key_pattern(problems: _Problems, path: str, value: object) -> str | None:
    """A route's prefix or glob: compared with the decoded key, which never starts with '/'."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        problems.add(path, f"must be a string, got the number {_show(value)}; quote it")
        return None
    if not isinstance(value, str) or not value:
        problems.add(path, f"must be a non-empty string, got {_show(value)}")
        return None
    if "\0" in value:
        problems.add(path, "must not contain a NUL character")
        return None
    if value.startswith("/"):
        problems.add(
            path,
            "must not start with '/': keys are matched as decoded, without a leading '/' (a key "
            f"that has one is refused as unsafe), got {_show(value)}",
        )
        return None
    return value


def _overlapping_folders(problems: _Problems, path: str, routes: list[RouteConfig]) -> None:
    """Routes may share one folder, but no route's folder may lie inside another's.

    Each folder has its own temp folder and start-up sweep, and keys are only kept out of the
    temp folder at the top of their own route's folder: a key of the outer route could reach
    into the inner folder's temp folder, and one file could be claimed by two routes.
    """
    for later, route in enumerate(routes):
        for earlier in range(later):
            other = routes[earlier].download_folder
            folder = route.download_folder
            if other in folder.parents:
                relation = "is inside"
            elif folder in other.parents:
                relation = "contains"
            else:
                continue  # the same folder, or separate ones
            problems.add(
                f"{path}[{later}].download_folder",
                f"{folder} {relation} {path}[{earlier}].download_folder ({other}); route folders "
                "must be the same folder or separate ones, never one inside another",
            )
            break


def _covers(first: RouteConfig, later: RouteConfig) -> bool:
    """True when ``first`` surely takes every object ``later`` would match."""
    return (
        (first.bucket is None or first.bucket == later.bucket)
        and (
            first.prefix is None
            or (later.prefix is not None and later.prefix.startswith(first.prefix))
        )
        and (first.glob is None or first.glob == later.glob)
    )


def _unreachable_routes(problems: _Problems, path: str, routes: list[RouteConfig]) -> None:
    for later, route in enumerate(routes):
        for earlier in range(later):
            if _covers(routes[earlier], route):
                problems.add(
                    f"{path}[{later}]",
                    f"is never used: {path}[{earlier}] comes first and matches every object "
                    "this route matches (the first matching route wins)",
                )
                break


def _route_problems(problems: _Problems, data: Mapping[Any, Any], values: dict[str, Any]) -> None:
    """Checks that involve routes and other top-level keys."""
    routes: tuple[RouteConfig, ...] | None = values.get("routes")
    if data.get("routes") is None:
        if values.get("unrouted") == "dead_letter":
            problems.add("unrouted", "has no effect without routes; remove it or add routes")
        return
    if data.get("download_folder") is not None:
        problems.add(
            "download_folder",
            "is not used when routes is set: each route has its own download_folder; remove "
            "this key",
        )
    allowed: tuple[str, ...] | None = values.get("s3_bucket_name")
    _bucket_access_agrees(problems, routes or ())
    for index, route in enumerate(routes or ()):
        if allowed and route.bucket is not None and route.bucket not in allowed:
            problems.add(
                f"routes[{index}].bucket",
                f"{route.bucket!r} is not in s3_bucket_name, so this route would never be used",
            )


def _bucket_access_agrees(problems: _Problems, routes: tuple[RouteConfig, ...]) -> None:
    """Routes naming one bucket must name one identity and the same guards: every call on a
    bucket (a GET, a listing, a delete) uses one client, whichever route took the object."""
    seen: dict[str, tuple[int, tuple[Any, ...]]] = {}
    for index, route in enumerate(routes):
        if route.bucket is None:
            continue
        access = (route.aws, route.guards)
        first = seen.setdefault(route.bucket, (index, access))
        if first[1] != access:
            problems.add(
                f"routes[{index}]",
                f"names bucket {route.bucket!r} with other aws, expected_bucket_owner, "
                f"request_payer or sse_customer_key_file settings than routes[{first[0]}]: "
                "one bucket has one identity and one set of guards; set them alike",
            )
