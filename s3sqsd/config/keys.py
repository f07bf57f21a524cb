"""The keys each level of the file may have, and the message for an unknown one (a close
name, or the right name at the wrong level)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from s3sqsd.config.model import (
    AwsConfig,
    CommandConfig,
    Config,
    LargeObjectsConfig,
    MetricsConfig,
    ReconcileConfig,
    RetryConfig,
    RoleConfig,
    RouteConfig,
)
from s3sqsd.config.values import _key_text, _Problems, _show
from s3sqsd.events import KeyDecodingPolicy

_TOP_KEYS = tuple(f.name for f in fields(Config))
_SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "retry": tuple(f.name for f in fields(RetryConfig)),
    "key_decoding": tuple(f.name for f in fields(KeyDecodingPolicy)),
    "on_download": tuple(f.name for f in fields(CommandConfig)),
    "metrics": tuple(f.name for f in fields(MetricsConfig)),
    "large_objects": tuple(f.name for f in fields(LargeObjectsConfig)),
    "reconcile": tuple(f.name for f in fields(ReconcileConfig)),
    "aws": (
        *(f.name for f in fields(RoleConfig)),
        "sqs",
        *(f.name for f in fields(AwsConfig) if f.name not in ("role", "sqs_role")),
    ),
    "role": tuple(f.name for f in fields(RoleConfig)),
}
_ROUTE_KEYS = tuple(f.name for f in fields(RouteConfig))


def _unknown_keys(
    problems: _Problems, data: Mapping[Any, Any], prefix: str, valid: tuple[str, ...]
) -> None:
    for key in data:
        if isinstance(key, str) and key in valid:
            continue
        path = prefix + _key_text(key)
        problems.add(path, "unknown key" + _suggest_key(key, prefix, valid))


def _suggest_key(key: object, prefix: str, valid: tuple[str, ...]) -> str:
    if not isinstance(key, str):
        return " (keys are names such as 'workers')"
    wanted = key.strip().lower().replace("-", "_").replace(" ", "_")
    close = _closest(wanted, valid, cutoff=0.6)
    if close:
        return f" (did you mean {close!r}?)"
    # The right name at the wrong level is usually an indentation mistake.
    elsewhere: dict[str, str] = {}  # name -> how to refer to it
    if prefix:
        elsewhere.update((name, f"the top-level key {name!r}") for name in _TOP_KEYS)
    # A name at several levels (workers: top level and reconcile.workers) suggests the first.
    for section, keys in _SECTION_KEYS.items():
        if f"{section}." != prefix:
            for name in keys:
                elsewhere.setdefault(name, repr(f"{section}.{name}"))
    if not prefix.startswith("routes["):
        for name in _ROUTE_KEYS:
            elsewhere.setdefault(name, f"{name!r} in a routes entry")
    close = _closest(wanted, tuple(elsewhere), cutoff=0.8)
    if close:
        return f" (did you mean {elsewhere[close]}? check the indentation)"
    return ""


def _closest(wanted: str, candidates: tuple[str, ...], *, cutoff: float) -> str | None:
    """difflib's closest match, preferring names with the same first letter ('retries' is
    'retry', not 'metrics'): typing mistakes rarely hit the first letter."""
    scored = []
    for candidate in candidates:
        ratio = difflib.SequenceMatcher(None, wanted, candidate).ratio()
        if ratio >= cutoff:
            bonus = 0.1 if candidate[:1] == wanted[:1] else 0.0
            scored.append((ratio + bonus, candidate))
    return max(scored)[1] if scored else None


def _section(problems: _Problems, path: str, value: object) -> Mapping[Any, Any] | None:
    if not isinstance(value, Mapping):
        keys = ", ".join(_SECTION_KEYS[path])
        problems.add(path, f"must be a mapping with the keys {keys}, got {_show(value)}")
        return None
    return value
