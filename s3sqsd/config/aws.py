"""The ``aws`` section: the roles (``aws``, ``aws.sqs``, ``routes[i].aws``), the network keys,
and the bucket guards' values (account id, requester pays); s3sqsd/aws.py uses them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from s3sqsd.config.keys import _SECTION_KEYS, _unknown_keys
from s3sqsd.config.model import STS_REGIONAL_CHOICES, AwsConfig, RoleConfig
from s3sqsd.config.urls import _endpoint_url, _proxy_url
from s3sqsd.config.values import (
    _absolute_file,
    _boolean,
    _Check,
    _choice,
    _int_range,
    _mapping,
    _pattern,
    _Problems,
    _show,
)

_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
_ACCOUNT_ID = re.compile(r"[0-9]{12}")
# STS: 2 to 64 characters of [\w+=,.@-]
_SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")
_MAX_ROLE_SECONDS = 43200  # STS: a role's maximum session is at most 12 hours
_MIN_ROLE_SECONDS = 900


def _role_arn(problems: _Problems, path: str, value: object) -> str | None:
    if isinstance(value, str) and _ROLE_ARN.fullmatch(value):
        return value
    problems.add(
        path,
        "must be an IAM role ARN such as arn:aws:iam::123456789012:role/s3sqsd-reader, "
        f"got {_show(value)}",
    )
    return None


def _role(problems: _Problems, path: str, section: Mapping[Any, Any]) -> RoleConfig | None:
    """The role keys of ``section`` (``aws`` flat, ``aws.sqs``, ``routes[i].aws``); None if
    none is set or one is refused."""
    names = _SECTION_KEYS["role"]
    if all(section.get(name) is None for name in names):
        return None
    before = len(problems.lines)
    raw_arn = section.get("role_arn")
    arn = None
    if raw_arn is None:
        given = next(name for name in names if section.get(name) is not None)
        problems.add(f"{path}.role_arn", f"required key is missing ({path}.{given} is set)")
    else:
        arn = _role_arn(problems, f"{path}.role_arn", raw_arn)
    external_id = _pattern(
        problems,
        f"{path}.external_id",
        section.get("external_id"),
        _EXTERNAL_ID,
        "2 to 1224 characters of letters, digits and +=,.@:/-",
    )
    session_name = _pattern(
        problems,
        f"{path}.role_session_name",
        section.get("role_session_name"),
        _SESSION_NAME,
        "2 to 64 characters of letters, digits and +=,.@-",
    )
    duration = 3600
    raw_duration = section.get("duration_seconds")
    if raw_duration is not None:
        checked = _int_range(
            _MIN_ROLE_SECONDS, _MAX_ROLE_SECONDS, note="the role's maximum session must allow it"
        )(problems, f"{path}.duration_seconds", raw_duration)
        duration = duration if checked is None else checked
    if len(problems.lines) != before or arn is None:
        return None
    return RoleConfig(
        role_arn=arn,
        external_id=external_id,
        role_session_name=session_name,
        duration_seconds=duration,
    )


def _role_section(problems: _Problems, path: str, value: object) -> RoleConfig | None:
    """``routes[i].aws``: the route's bucket's role."""
    section = _mapping(problems, path, value, _SECTION_KEYS["role"])
    if section is None:
        return None
    before = len(problems.lines)
    role = _role(problems, path, section)
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["role"])
    if role is None and len(problems.lines) == before:
        problems.add(f"{path}.role_arn", "required key is missing")
    return None if len(problems.lines) != before else role


def _aws(problems: _Problems, path: str, value: object) -> AwsConfig | None:
    section = _mapping(problems, path, value, _SECTION_KEYS["aws"])
    if section is None:
        return None
    before = len(problems.lines)
    values: dict[str, Any] = {"role": _role(problems, path, section)}
    raw_sqs = section.get("sqs")
    if raw_sqs is not None:
        values["sqs_role"] = _role_section(problems, f"{path}.sqs", raw_sqs)
    checks: dict[str, _Check] = {
        "ca_bundle": _absolute_file,
        "proxy_url": _proxy_url,
        "proxy_ca_bundle": _absolute_file,
        "use_fips_endpoint": _boolean,
        "use_dualstack_endpoint": _boolean,
        "sts_regional_endpoints": _choice(STS_REGIONAL_CHOICES),
        "sts_endpoint_url": _endpoint_url,
    }
    for key, check in checks.items():
        raw = section.get(key)
        if raw is not None:
            values[key] = check(problems, f"{path}.{key}", raw)
    if values.get("proxy_ca_bundle") is not None and section.get("proxy_url") is None:
        problems.add(f"{path}.proxy_ca_bundle", f"needs {path}.proxy_url: the proxy it verifies")
    _unknown_keys(problems, section, f"{path}.", _SECTION_KEYS["aws"])
    if len(problems.lines) != before:
        return None
    return AwsConfig(**{key: item for key, item in values.items() if item is not None})


def _account_id(problems: _Problems, path: str, value: object) -> str | None:
    if isinstance(value, int) and not isinstance(value, bool):
        problems.add(
            path,
            f"must be a 12-digit AWS account id written as a string (quote it: leading zeros "
            f"count), got the number {_show(value)}",
        )
        return None
    if isinstance(value, str) and _ACCOUNT_ID.fullmatch(value):
        return value
    problems.add(
        path, f"must be a 12-digit AWS account id such as '123456789012', got {_show(value)}"
    )
    return None


def _request_payer(problems: _Problems, path: str, value: object) -> str | None:
    if value == "requester":
        return "requester"
    problems.add(
        path,
        "must be 'requester' (this host pays for the requests and the transfer of a Requester "
        f"Pays bucket); leave it unset for other buckets, got {_show(value)}",
    )
    return None
