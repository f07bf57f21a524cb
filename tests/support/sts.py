"""What the emulator's STS knows: who signed a request, and which roles were assumed.

moto's ``AssumeRole`` works for any role ARN and returns new keys each time (``ASIA...``); its
``GetCallerIdentity`` answers ``arn:aws:sts::<account>:assumed-role/<role>/<session>`` for
those keys (and ``arn:aws:sts::<account>:user/moto`` for keys it never issued, such as the
tests' ``testing``). A recording ``FaultProxy`` gives each request's access key id
(``Event.access_key_id``), so a test can say which identity made every call.

``assumed_roles`` reads moto's backend directly: the ``Emulator`` runs moto in the test
process, so the secret keys and session tokens it handed out are at hand for the canary tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import boto3

from tests.support.emulator import REGION, TEST_ENV
from tests.support.faultproxy import Event

HOST_KEY_ID = TEST_ENV["AWS_ACCESS_KEY_ID"]  # the host's own credentials in daemon_env()


@dataclass(frozen=True)
class Issued:
    """One set of credentials moto's STS issued."""

    role_arn: str
    session_name: str
    external_id: str | None
    access_key_id: str
    secret_access_key: str
    session_token: str


def assumed_roles() -> list[Issued]:
    """Every role assumption the in-process emulator answered, in every account."""
    from moto.sts.models import sts_backends

    found = []
    for account in list(sts_backends):
        for partition in list(sts_backends[account]):
            for role in sts_backends[account][partition].assumed_roles:
                found.append(
                    Issued(
                        role_arn=role.role_arn,
                        session_name=role.session_name,
                        external_id=role.external_id,
                        access_key_id=role.access_key_id,
                        secret_access_key=role.secret_access_key,
                        session_token=role.session_token,
                    )
                )
    return found


class Identities:
    """``arn(key_id)``: who moto's ``GetCallerIdentity`` says an access key id is (cached)."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._known: dict[str, str] = {}

    def arn(self, key_id: str) -> str:
        if key_id not in self._known:
            sts = boto3.client(
                "sts",
                region_name=REGION,
                endpoint_url=self.endpoint,
                aws_access_key_id=key_id,
                aws_secret_access_key="not-checked-by-moto",
            )
            self._known[key_id] = str(sts.get_caller_identity()["Arn"])
        return self._known[key_id]

    def of(self, events: Iterable[Event]) -> set[str]:
        """The identities that signed ``events``."""
        found = set()
        for event in events:
            key_id = event.access_key_id()
            assert key_id is not None, f"{event.operation} {event.path} was not signed"
            found.add(self.arn(key_id))
        return found


def form(event: Event) -> dict[str, str]:
    """The parameters of a query-protocol request (STS, or SQS on an old botocore)."""
    parsed = parse_qs(event.body.decode(), keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def assume_role_calls(events: Iterable[Event]) -> list[dict[str, str]]:
    """The parameters of every ``AssumeRole`` among ``events``."""
    return [form(e) for e in events if e.service == "sts" and e.operation == "AssumeRole"]


def by_service(events: Iterable[Event], service: str, **match: Any) -> list[Event]:
    """The events of ``service`` (``s3``, ``sqs``, ``sts``), optionally of one ``operation``."""
    return [
        e
        for e in events
        if e.service == service and all(getattr(e, name) == value for name, value in match.items())
    ]
