"""URLs: the queue, endpoint and proxy URL checks, and the region an AWS queue URL names."""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from s3sqsd.config.values import _Problems, _show

# Hosts of AWS queue URLs: sqs.<region>.amazonaws.com (current), <region>.queue.amazonaws.com
# (legacy), with the .com.cn suffix in China; also the FIPS and dual-stack forms.
_AWS_QUEUE_HOST = re.compile(
    r"(?:sqs|sqs-fips)\.(?P<a>[a-z0-9-]+)\.(?:amazonaws\.com(?:\.cn)?|api\.aws)"
    r"|(?P<b>[a-z0-9-]+)\.queue\.amazonaws\.com(?:\.cn)?"
)


def _region_from_queue_url(url: str) -> str | None:
    """The region named by an AWS SQS queue URL's host, or None (not AWS, or not parseable)."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    if host is None:
        return None
    match = _AWS_QUEUE_HOST.fullmatch(host)
    if match is None:
        return None
    return match.group("a") or match.group("b")


def _url(problems: _Problems, path: str, value: object, *, queue: bool) -> str | None:
    what = "an http:// or https:// queue URL" if queue else "an http:// or https:// URL"
    if not isinstance(value, str):
        problems.add(path, f"must be {what}, got {_show(value)}")
        return None
    if value.startswith("arn:"):
        problems.add(path, f"must be {what}, not an ARN, got {_show(value)}")
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        problems.add(path, f"must be {what}, got {_show(value)}")
        return None
    if parts.username is not None or parts.password is not None:
        # Never echo the value: it holds what looks like a credential.
        problems.add(
            path,
            "must not contain user:password@; credentials come from boto3's standard chain, "
            "never from this file",
        )
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        problems.add(path, f"must be {what} with a host, got {_show(value)}")
        return None
    if any(ch.isspace() for ch in value):
        problems.add(path, f"must not contain whitespace, got {_show(value)}")
        return None
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        problems.add(path, f"must not have a query string or fragment, got {_show(value)}")
        return None
    if queue and parts.path.strip("/") == "":
        problems.add(
            path,
            "must include the queue's path, as in "
            f"https://sqs.<region>.amazonaws.com/<account>/<queue>, got {_show(value)}",
        )
        return None
    return value


def _queue_url(problems: _Problems, path: str, value: object) -> str | None:
    return _url(problems, path, value, queue=True)


def _endpoint_url(problems: _Problems, path: str, value: object) -> str | None:
    return _url(problems, path, value, queue=False)


def _same_url(a: str, b: str) -> bool:
    def canonical(url: str) -> tuple[str, str | None, int | None, str]:
        parts: SplitResult = urlsplit(url)
        return (parts.scheme.lower(), parts.hostname, parts.port, parts.path.rstrip("/"))

    return canonical(a) == canonical(b)


def _proxy_url(problems: _Problems, path: str, value: object) -> str | None:
    """``http://host:port`` or ``https://host:port``, credentials allowed in the URL (they are
    never shown: only the scheme, host and port appear in messages)."""
    if isinstance(value, str) and "\0" not in value:
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            parts = urlsplit("")
        if parts.scheme in ("http", "https") and parts.hostname:
            return value
    shown = "a value that is not a URL"
    if isinstance(value, str):
        parts = urlsplit(value)
        shown = repr(f"{parts.scheme}://{parts.hostname or ''}") if parts.scheme else shown
    problems.add(path, f"must be a proxy URL such as http://proxy.example:3128, got {shown}")
    return None
