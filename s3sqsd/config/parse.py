"""The top level: each key's check, the checks across keys, then ``Config`` (pure)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from s3sqsd.config.aws import _account_id, _aws, _request_payer
from s3sqsd.config.command import _command
from s3sqsd.config.keys import _TOP_KEYS, _unknown_keys
from s3sqsd.config.model import (
    _MAX_VISIBILITY_SECONDS,
    _MAX_WAIT_TIME_SECONDS,
    AFTER_DOWNLOAD_CHOICES,
    AUTO,
    DEFAULT_DOWNLOAD_FOLDER,
    DEFAULT_MAX_WORKERS,
    DEFAULT_MIN_WORKERS,
    FILE_MTIME_CHOICES,
    INTEGRITY_CHOICES,
    MAX_POLLERS,
    MAX_WORKERS,
    MIN_BANDWIDTH_BYTES_PER_SECOND,
    ON_REMOVE_CHOICES,
    UNROUTED_CHOICES,
    Config,
)
from s3sqsd.config.routes import _route_problems, _routes
from s3sqsd.config.sections import _key_decoding, _large_objects, _metrics, _reconcile, _retry
from s3sqsd.config.urls import _endpoint_url, _queue_url, _same_url, _url
from s3sqsd.config.values import (
    _absolute_file,
    _bucket_names,
    _Check,
    _choice,
    _download_folder,
    _int_range,
    _mode,
    _Problems,
    _quoted_number_hint,
    _seconds_range,
    _show,
)
from s3sqsd.errors import ConfigError


def parse_config(
    data: object,
    *,
    source: str = "config",
    default_download_folder: Path = DEFAULT_DOWNLOAD_FOLDER,
) -> Config:
    """Validate already-loaded YAML data (pure); raise ConfigError listing every problem."""
    return _parse_config(data, source=source, default_download_folder=default_download_folder)


_LOG_LEVELS = ("debug", "info", "warning", "error")
_REGION = re.compile(r"[a-z0-9-]+")


def _parse_config(data: object, *, source: str, default_download_folder: Path) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{source}: the top level must be a mapping of keys to values (key: value lines), "
            f"got {_show(data)}"
        )
    problems = _Problems()
    values: dict[str, Any] = {}

    queue_url = data.get("sqs_queue_url")
    if queue_url is None:
        problems.add("sqs_queue_url", "required key is missing")
    else:
        values["sqs_queue_url"] = _url(problems, "sqs_queue_url", queue_url, queue=True)

    checks: dict[str, _Check] = {
        "download_folder": _download_folder,
        "aws_region": _aws_region,
        "s3_bucket_name": _bucket_names,
        "endpoint_url": _endpoint_url,
        "s3_endpoint_url": _endpoint_url,
        "sqs_endpoint_url": _endpoint_url,
        "dead_letter_queue_url": _queue_url,
        "workers": _workers,
        "min_workers": _int_range(1, MAX_WORKERS),
        "max_workers": _int_range(1, MAX_WORKERS),
        "pollers": _int_range(1, MAX_POLLERS),
        "wait_time_seconds": _int_range(
            1, _MAX_WAIT_TIME_SECONDS, note="the SQS long-poll maximum; short polling is refused"
        ),
        "visibility_timeout_seconds": _int_range(5, _MAX_VISIBILITY_SECONDS, note="12 hours"),
        "shutdown_timeout_seconds": _seconds_range(0.0, 3600.0),
        "retry": _retry,
        "key_decoding": _key_decoding,
        "file_mode": _mode(0o600, "read and write"),
        "directory_mode": _mode(0o700, "read, write and search (rwx)"),
        "file_mtime": _choice(FILE_MTIME_CHOICES),
        "log_level": _log_level,
        "on_download": _command,
        "routes": _routes,
        "unrouted": _choice(UNROUTED_CHOICES),
        "on_remove": _choice(ON_REMOVE_CHOICES),
        "after_download": _choice(AFTER_DOWNLOAD_CHOICES),
        "integrity": _choice(INTEGRITY_CHOICES),
        "metrics": _metrics,
        "large_objects": _large_objects,
        "reconcile": _reconcile,
        "aws": _aws,
        "expected_bucket_owner": _account_id,
        "request_payer": _request_payer,
        "sse_customer_key_file": _absolute_file,
        "max_bandwidth_bytes_per_second": _int_range(
            MIN_BANDWIDTH_BYTES_PER_SECOND,
            1 << 40,
            note="bytes per second, 64 KiB/s to 1 TiB/s; leave it unset for no limit",
        ),
        "min_free_bytes": _int_range(0, 1 << 50, note="bytes, up to 1 PiB"),
    }
    for key, check in checks.items():
        raw = data.get(key)
        if raw is not None:  # null means "use the default", like an absent key
            values[key] = check(problems, key, raw)

    queue = values.get("sqs_queue_url")
    dlq = values.get("dead_letter_queue_url")
    if queue is not None and dlq is not None and _same_url(queue, dlq):
        problems.add(
            "dead_letter_queue_url", "must differ from sqs_queue_url (it is the same queue)"
        )

    least = values.get("min_workers") or DEFAULT_MIN_WORKERS
    most = values.get("max_workers") or DEFAULT_MAX_WORKERS
    if least > most and values.get("min_workers") is not None:
        problems.add("min_workers", f"must not be above max_workers ({most}), got {least}")
    elif least > most:
        problems.add("max_workers", f"must be at least min_workers ({least}), got {most}")

    _route_problems(problems, data, values)
    if values.get("reconcile") is not None and not values.get("s3_bucket_name"):
        routes = values.get("routes") or ()
        if not routes or any(route.bucket is None for route in routes):
            problems.add(
                "reconcile",
                "needs s3_bucket_name (or a bucket on every route): a pass lists buckets, "
                "where events name their own",
            )

    _unknown_keys(problems, data, "", _TOP_KEYS)

    if problems.lines:
        raise ConfigError(problems.lines)
    if values.get("download_folder") is None:
        values["download_folder"] = default_download_folder
    return Config(**{key: value for key, value in values.items() if value is not None})


def _aws_region(problems: _Problems, path: str, value: object) -> str | None:
    if not isinstance(value, str) or not _REGION.fullmatch(value):
        problems.add(
            path,
            "must be an AWS region name such as 'eu-west-1' (lower-case letters, digits and '-'), "
            f"got {_show(value)}",
        )
        return None
    return value


def _workers(problems: _Problems, path: str, value: object) -> int | str | None:
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
        problems.add(
            path,
            f"must be auto or an integer from 1 to {MAX_WORKERS}, got {_show(value)}"
            + _quoted_number_hint(value),
        )
        return None
    return value


def _log_level(problems: _Problems, path: str, value: object) -> str | None:
    if isinstance(value, str) and value.lower() in _LOG_LEVELS:
        return value.lower()
    suggestion = ""
    if isinstance(value, str):
        close = difflib.get_close_matches(value.lower(), _LOG_LEVELS, n=1, cutoff=0.6)
        suggestion = f" (did you mean {close[0]!r}?)" if close else ""
    problems.add(path, f"must be one of {', '.join(_LOG_LEVELS)}, got {_show(value)}{suggestion}")
    return None
