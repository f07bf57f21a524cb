"""``s3sqsd check``'s lines about how AWS is reached: who each bucket and the queue are accessed
as (``sts:GetCallerIdentity`` after assuming the role), and which network settings are in
effect. The rest of the checklist is in preflight.py; this module only describes and asks STS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from s3sqsd.access import AccessPlan
from s3sqsd.config import Config, RoleConfig
from s3sqsd.preflight_result import CheckResult, Verdict, error_text


def role_users(plan: AccessPlan, role: RoleConfig | None) -> str:
    """Who uses ``role``: the queue, named buckets, and every other bucket (the default)."""
    users = []
    if plan.sqs_role == role:
        users.append("queue")
    named = sorted(name for name, access in plan.buckets.items() if access.role == role)
    if plan.default.role == role:
        users.append("buckets" if not plan.buckets else "other buckets")
    users.extend(f"bucket {name}" for name in named)
    return ", ".join(users)


def role_key(config: Config, role: RoleConfig) -> str:
    """The config key that names ``role``, for a FAIL line."""
    if config.aws.role == role:
        return "aws.role_arn"
    if config.aws.sqs_role == role:
        return "aws.sqs.role_arn"
    for index, rule in enumerate(config.routes):
        if rule.aws == role:
            return f"routes[{index}].aws.role_arn"
    return "role_arn"


def check_identities(
    config: Config, aws: Any, *, options: Mapping[str, Any]
) -> tuple[CheckResult, ...]:
    """One ``identity`` line per distinct identity: the ARN STS says it is, or a FAIL naming the
    role that cannot be assumed. The host's own identity is a WARN when STS cannot tell (an
    S3-compatible store without STS): the daemon does not need STS then."""
    results = []
    for role in aws.plan.roles():
        users = role_users(aws.plan, role)
        try:
            arn = aws.caller_identity(role, **options)
        except (BotoCoreError, ClientError) as exc:
            if role is None:
                detail = f"{users}: the host's own credentials; sts:GetCallerIdentity failed: "
                results.append(CheckResult("identity", Verdict.WARN, detail + error_text(exc)))
            else:
                detail = (
                    f"{users}: cannot assume {role.role_arn} ({role_key(config, role)}): "
                    f"{error_text(exc)}"
                )
                results.append(CheckResult("identity", Verdict.FAIL, detail))
            continue
        how = "the host's own credentials" if role is None else f"role {role.role_arn}"
        results.append(CheckResult("identity", Verdict.OK, f"{users}: {how}, as {arn}"))
    return tuple(results)


def describe_network(
    config: Config, *, s3_endpoint: str | None, sqs_endpoint: str | None, sts_endpoint: str | None
) -> CheckResult:
    """What is in effect: endpoints, FIPS and dual-stack, proxy (never its credentials), CA
    bundles and STS. A CA bundle or proxy CA bundle that cannot be read is a FAIL."""
    aws = config.aws
    flavour = [
        name
        for name, on in (
            ("FIPS", aws.use_fips_endpoint),
            ("dual-stack", aws.use_dualstack_endpoint),
        )
        if on
    ]
    kind = f"AWS {' '.join(flavour)} endpoints" if flavour else "AWS endpoints"
    parts = []
    for service, endpoint in (("S3", s3_endpoint), ("SQS", sqs_endpoint), ("STS", sts_endpoint)):
        parts.append(f"{service} {endpoint or kind}")
    if sts_endpoint is None:
        parts[-1] += f" ({aws.sts_regional_endpoints})"
    if aws.proxy_url:
        proxy = urlsplit(aws.proxy_url)
        port = f":{proxy.port}" if proxy.port else ""
        shown = f"{proxy.scheme}://{proxy.hostname}{port}"
        parts.append(f"proxy {shown}")
    else:
        parts.append("no proxy configured (HTTPS_PROXY in the environment still applies)")
    problems = []
    for name, path in (
        ("aws.ca_bundle", aws.ca_bundle),
        ("aws.proxy_ca_bundle", aws.proxy_ca_bundle),
    ):
        if path is None:
            continue
        parts.append(f"{name} {path}")
        try:
            with open(path, "rb") as handle:
                handle.read(1)
        except OSError as exc:
            problems.append(f"{name} {path} cannot be read ({exc.strerror})")
    if problems:
        return CheckResult("network", Verdict.FAIL, "; ".join(problems))
    return CheckResult("network", Verdict.OK, "; ".join(parts))
