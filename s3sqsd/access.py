"""Which identity and which guards each bucket, and the queue, are reached with. Pure: no I/O.

The top level's ``aws`` role and guards (``expected_bucket_owner``, ``request_payer``,
``sse_customer_key_file``) apply to every bucket; a route that names a bucket may give that
bucket its own role (``routes[i].aws``) and guards, each unset guard taken from the top level.
Config validation makes every route naming one bucket agree, so the answer depends on the
bucket alone: a GET, a HEAD, a listing and a source delete of one bucket all use one client
(buckets.py), whichever route or command made the call.

SQS uses ``aws.sqs`` when set (a queue in another account), else the top-level role.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from s3sqsd.config import BucketGuards, Config, RoleConfig


@dataclass(frozen=True, slots=True)
class BucketAccess:
    """One bucket's identity (None: the host's own credentials) and guards."""

    role: RoleConfig | None = None
    guards: BucketGuards = field(default_factory=BucketGuards)


@dataclass(frozen=True, slots=True)
class AccessPlan:
    """Every bucket's access: ``buckets`` for those with settings of their own, else
    ``default``; and the queue's identity."""

    default: BucketAccess
    buckets: Mapping[str, BucketAccess]
    sqs_role: RoleConfig | None

    def for_bucket(self, bucket: str) -> BucketAccess:
        return self.buckets.get(bucket, self.default)

    def roles(self) -> tuple[RoleConfig | None, ...]:
        """Each distinct identity, the default's and the queue's first."""
        found = [self.default.role, self.sqs_role]
        found.extend(access.role for access in self.buckets.values())
        return tuple(dict.fromkeys(found))

    def key_files(self) -> tuple[str, ...]:
        """Every SSE-C key file named, as text, in order of first use."""
        accesses = (self.default, *self.buckets.values())
        files = (a.guards.sse_customer_key_file for a in accesses)
        return tuple(dict.fromkeys(str(path) for path in files if path is not None))


def plan_access(config: Config) -> AccessPlan:
    """The access of every bucket the config names, and of the queue."""
    default = BucketAccess(role=config.aws.role, guards=config.guards)
    buckets: dict[str, BucketAccess] = {}
    for rule in config.routes:
        if rule.bucket is None or (rule.aws is None and rule.guards == BucketGuards()):
            continue
        buckets.setdefault(
            rule.bucket,
            BucketAccess(
                role=rule.aws or config.aws.role,
                guards=rule.guards.merged_over(config.guards),
            ),
        )
    return AccessPlan(
        default=default,
        buckets=buckets,
        sqs_role=config.aws.sqs_role or config.aws.role,
    )


def describe(plan: AccessPlan) -> str:
    """One line for the start-up log: each identity's users and each bucket's guards (names and
    account ids only; a key file is named, never read here)."""

    def who(role: RoleConfig | None) -> str:
        return "the host's own credentials" if role is None else f"role {role.role_arn}"

    def guarded(guards: BucketGuards) -> str:
        found = []
        if guards.expected_bucket_owner:
            found.append(f"owner {guards.expected_bucket_owner}")
        if guards.request_payer:
            found.append("requester pays")
        if guards.sse_customer_key_file is not None:
            found.append(f"SSE-C key {guards.sse_customer_key_file}")
        return f" ({', '.join(found)})" if found else ""

    others = "other buckets" if plan.buckets else "buckets"
    parts = [f"queue as {who(plan.sqs_role)}"]
    parts.append(f"{others} as {who(plan.default.role)}{guarded(plan.default.guards)}")
    parts.extend(
        f"bucket {name} as {who(access.role)}{guarded(access.guards)}"
        for name, access in sorted(plan.buckets.items())
    )
    return "; ".join(parts)
