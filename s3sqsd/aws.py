"""The only place boto3 sessions and clients are made.

Clients are built once and shared by threads (boto3 clients are thread-safe; sessions are not).
Timeouts are explicit so no call can hang the daemon: the receive client's read timeout is longer
than the long poll, the control client (delete, visibility, dead-letter) fails fast.
Credentials come only from boto3's standard chain (environment, shared files, instance role).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import NoRegionError

from s3sqsd.config import MAX_WAIT_TIME_SECONDS, MAX_WORKERS, Config
from s3sqsd.errors import ConfigError

USER_AGENT = "s3sqsd"


@dataclass(frozen=True, slots=True)
class Clients:
    """The three clients the daemon uses; all built from one session."""

    s3: Any
    sqs_receive: Any  # used only by the receiving thread, for long polls
    sqs_control: Any  # deletes, visibility changes, dead-letter sends, queue attributes
    session: Any = None

    def credential_values(self) -> tuple[str, ...]:
        """The resolved credentials' values, so the logs can blank them out; () if none."""
        if self.session is None:
            return ()
        try:
            credentials = self.session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials else None
        except Exception:  # noqa: BLE001 - resolution errors surface on the first AWS call
            return ()
        if frozen is None:
            return ()
        return tuple(v for v in (frozen.access_key, frozen.secret_key, frozen.token) if v)


def endpoint_for(
    service: str, configured: str | None, *, environ: Mapping[str, str] | None = None
) -> str | None:
    """The endpoint for ``service``: the config's, else ``AWS_ENDPOINT_URL_<SERVICE>``, else
    ``AWS_ENDPOINT_URL``, else None (AWS).

    Recent botocore reads these variables itself; Debian bookworm's 1.26 does not, so we read
    them here and behave the same on both.
    """
    if configured:
        return configured
    env = os.environ if environ is None else environ
    return env.get(f"AWS_ENDPOINT_URL_{service.upper()}") or env.get("AWS_ENDPOINT_URL") or None


def session_and_endpoints(
    config: Config, *, environ: Mapping[str, str] | None = None
) -> tuple[Any, str | None, str | None]:
    """One boto3 session for the config's region, and the S3 and SQS endpoints to use."""
    session = boto3.session.Session(region_name=config.region)
    s3_endpoint = endpoint_for("s3", config.s3_endpoint, environ=environ)
    sqs_endpoint = endpoint_for("sqs", config.sqs_endpoint, environ=environ)
    return session, s3_endpoint, sqs_endpoint


def client(session: Any, service: str, endpoint: str | None, **options: Any) -> Any:
    """A client with our user agent and explicit timeouts; a missing region is a config error.

    S3-compatible stores and emulators usually need path-style addressing (Vector's default),
    so a custom S3 endpoint gets it.
    """
    if service == "s3" and endpoint:
        options.setdefault("s3", {"addressing_style": "path"})
    try:
        return session.client(
            service,
            endpoint_url=endpoint,
            config=BotoConfig(user_agent_extra=USER_AGENT, **options),
        )
    except NoRegionError as exc:
        raise ConfigError(
            "aws_region: no region configured, none in the queue URL and none in the "
            "environment (AWS_REGION / AWS_DEFAULT_REGION)"
        ) from exc


def make_clients(config: Config, *, environ: Mapping[str, str] | None = None) -> Clients:
    """Build the daemon's S3 and SQS clients."""
    session, s3_endpoint, sqs_endpoint = session_and_endpoints(config, environ=environ)
    s3 = client(
        session,
        "s3",
        s3_endpoint,
        connect_timeout=3,
        read_timeout=60,
        retries={"mode": "standard", "total_max_attempts": 3},
        # The clients are built once, but a reload may raise ``workers``: sized for the most
        # it can be, plus the ranged GETs' threads (a restart-only setting). urllib3 opens
        # connections only as they are used; this only bounds how many it keeps for reuse.
        max_pool_connections=MAX_WORKERS + config.large_objects.concurrency + 2,
    )
    sqs_receive = client(
        session,
        "sqs",
        sqs_endpoint,
        connect_timeout=3,
        # Longer than the longest long poll, or every idle poll would time out: the longest
        # SQS allows, not the configured one, which a reload may raise.
        read_timeout=MAX_WAIT_TIME_SECONDS + 10,
        # The receive loop has its own backoff and logs state changes itself: one attempt.
        retries={"mode": "standard", "total_max_attempts": 1},
    )
    sqs_control = client(
        session,
        "sqs",
        sqs_endpoint,
        connect_timeout=3,
        # The loop thread makes these calls: fail fast (at most 2 attempts of 3 s connect +
        # 5 s read, well inside the unit's WatchdogSec=30s) and let the loop retry next pass.
        read_timeout=5,
        retries={"mode": "standard", "total_max_attempts": 2},
        max_pool_connections=4,
    )
    return Clients(s3=s3, sqs_receive=sqs_receive, sqs_control=sqs_control, session=session)
