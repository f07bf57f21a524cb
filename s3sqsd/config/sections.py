"""The small sections: ``retry``, ``key_decoding``, ``large_objects``, ``reconcile`` and
``metrics`` (with its ``listen`` address)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from s3sqsd.config.keys import _SECTION_KEYS, _section, _unknown_keys
from s3sqsd.config.model import (
    _MAX_VISIBILITY_SECONDS,
    DEFAULT_METRICS_LISTEN,
    S3_MAX_OBJECT_BYTES,
    LargeObjectsConfig,
    MetricsConfig,
    MiB,
    ReconcileConfig,
    RetryConfig,
)
from s3sqsd.config.values import (
    _int_range,
    _mapping,
    _number,
    _Problems,
    _quoted_number_hint,
    _show,
)
from s3sqsd.events import KeyDecoding, KeyDecodingPolicy


def _retry(problems: _Problems, path: str, value: object) -> RetryConfig | None:
    section = _section(problems, path, value)
    if section is None:
        return None
    default = RetryConfig()
    before = len(problems.lines)

    attempts = default.max_attempts
    attempts_raw = section.get("max_attempts")
    if attempts_raw is not None:
        checked = _int_range(1, 1000)(problems, f"{path}.max_attempts", attempts_raw)
        attempts = attempts if checked is None else checked

    base_raw = section.get("base_delay_seconds")
    base = default.base_delay_seconds
    base_ok = True
    if base_raw is not None:
        number = _number(base_raw)
        if number is None or not 0 < number <= _MAX_VISIBILITY_SECONDS:
            base_ok = False
            problems.add(
                f"{path}.base_delay_seconds",
                f"must be a number of seconds > 0 and <= {_MAX_VISIBILITY_SECONDS}, "
                f"got {_show(base_raw)}" + _quoted_number_hint(base_raw),
            )
        else:
            base = number

    max_raw = section.get("max_delay_seconds")
    top = default.max_delay_seconds
    if max_raw is not None:
        number = _number(max_raw)
        if number is None or not 0 < number <= _MAX_VISIBILITY_SECONDS:
            problems.add(
                f"{path}.max_delay_seconds",
                f"must be a number of seconds > 0 and <= {_MAX_VISIBILITY_SECONDS} "
                f"(12 hours, the SQS visibility limit), got {_show(max_raw)}"
                + _quoted_number_hint(max_raw),
            )
        elif base_ok and number < base:
            problems.add(
                f"{path}.max_delay_seconds",
                f"must be >= {path}.base_delay_seconds ({base!r}), got {_show(max_raw)}",
            )
        else:
            top = number
    elif base_ok and base > top:
        problems.add(
            f"{path}.base_delay_seconds",
            f"must be <= {path}.max_delay_seconds ({top!r}, the default), got {_show(base_raw)}; "
            f"set {path}.max_delay_seconds too",
        )

    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["retry"])
    if len(problems.lines) != before:
        return None
    return RetryConfig(
        max_attempts=attempts,
        base_delay_seconds=base,
        max_delay_seconds=top,
    )


def _key_decoding(problems: _Problems, path: str, value: object) -> KeyDecodingPolicy | None:
    section = _section(problems, path, value)
    if section is None:
        return None
    before = len(problems.lines)
    chosen: dict[str, KeyDecoding] = {}
    for name in _SECTION_KEYS["key_decoding"]:
        raw = section.get(name)
        if raw is None:
            continue
        if isinstance(raw, str) and raw.lower() in ("url", "none"):
            chosen[name] = KeyDecoding(raw.lower())
            continue
        hint = "; write none (not false, no or off)" if isinstance(raw, bool) else ""
        problems.add(f"{path}.{name}", f"must be 'url' or 'none', got {_show(raw)}{hint}")
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["key_decoding"])
    if len(problems.lines) != before:
        return None
    return KeyDecodingPolicy(**chosen)


def _large_objects(problems: _Problems, path: str, value: object) -> LargeObjectsConfig | None:
    section = _section(problems, path, value)
    if section is None:
        return None
    checks = {
        "threshold_bytes": _int_range(
            MiB, S3_MAX_OBJECT_BYTES, note="5 TiB, the S3 maximum, fetches every object whole"
        ),
        "part_size_bytes": _int_range(
            MiB, S3_MAX_OBJECT_BYTES, note="1 MiB to 5 TiB; S3 serves any range, 8 MiB is usual"
        ),
        "concurrency": _int_range(1, 256),
    }
    values = _int_section(problems, path, section, checks, "large_objects")
    return None if values is None else LargeObjectsConfig(**values)


def _reconcile(problems: _Problems, path: str, value: object) -> ReconcileConfig | None:
    section = _mapping(
        problems,
        path,
        value,
        _SECTION_KEYS["reconcile"],
        hint=" (write {} for a pass every hour)",
    )
    if section is None:
        return None
    checks = {
        # A pass lists every object the config takes: more often than a minute is a listing
        # loop (S3 bills per LIST), and a week is the longest an operator should wait.
        "interval_seconds": _int_range(60, 7 * 24 * 3600, note="a minute to a week"),
        "workers": _int_range(1, 64),
        "min_age_seconds": _int_range(0, 7 * 24 * 3600),
    }
    values = _int_section(problems, path, section, checks, "reconcile")
    return None if values is None else ReconcileConfig(**values)


def _int_section(
    problems: _Problems,
    path: str,
    section: Mapping[Any, Any],
    checks: Mapping[str, Callable[[_Problems, str, object], int | None]],
    name: str,
) -> dict[str, int] | None:
    """Check a section of integer keys; the values given, or None if any was refused."""
    before = len(problems.lines)
    values: dict[str, int] = {}
    for key, check in checks.items():
        raw = section.get(key)
        checked = None if raw is None else check(problems, f"{path}.{key}", raw)
        if checked is not None:
            values[key] = checked
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS[name])
    return None if len(problems.lines) != before else values


def _metrics(problems: _Problems, path: str, value: object) -> MetricsConfig | None:
    section = _mapping(
        problems,
        path,
        value,
        _SECTION_KEYS["metrics"],
        hint=f" (write {{}} for the default, {DEFAULT_METRICS_LISTEN})",
    )
    if section is None:
        return None
    before = len(problems.lines)
    listen = DEFAULT_METRICS_LISTEN
    raw = section.get("listen")
    if raw is not None:
        problem = _listen_problem(raw)
        if problem is not None:
            problems.add(f"{path}.listen", problem)
        else:
            listen = str(raw)
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["metrics"])
    if len(problems.lines) != before:
        return None
    return MetricsConfig(listen=listen)


_LISTEN = re.compile(r"(?P<host>\[[^\]]*\]|[^:\[\]]*):(?P<port>[0-9]{1,5})")
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _listen_problem(value: object) -> str | None:
    """Why ``value`` is not ``host:port``, ``[IPv6]:port`` or ``name:port``; None when it is."""
    expected = "must be host:port such as 127.0.0.1:9464, [::1]:9464 or localhost:9464"
    if not isinstance(value, str):
        hint = ""
        if isinstance(value, int) and not isinstance(value, bool):
            hint = f" (write 127.0.0.1:{value} for this host only)"
        return f"{expected}, got {_show(value)}{hint}"
    match = _LISTEN.fullmatch(value)
    if match is None:
        if "://" in value:
            return f"{expected}, without a scheme such as http://, got {_show(value)}"
        if _is_ipv6(value) or (not value.startswith("[") and _is_ipv6(value.rpartition(":")[0])):
            return f"{expected}; write an IPv6 address in brackets, got {_show(value)}"
        return f"{expected}, got {_show(value)}"
    host, port = match.group("host"), int(match.group("port"))
    if not 1 <= port <= 65535:
        return f"the port must be from 1 to 65535, got {_show(value)}"
    if not host:
        return (
            "must name the address to listen on: 127.0.0.1 for this host only, 0.0.0.0 for "
            f"every interface, got {_show(value)}"
        )
    if host.startswith("["):
        if not _is_ipv6(host[1:-1]):
            return f"{_show(host)} is not an IPv6 address, got {_show(value)}"
        return None
    if all(ch.isdigit() or ch == "." for ch in host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"{_show(host)} is not an IPv4 address, got {_show(value)}"
        return None
    labels = host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"{_show(host)} is not a host name or address, got {_show(value)}"
    return None
