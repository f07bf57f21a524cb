"""``s3sqsd check``'s lines about how AWS is reached: who each bucket and the queue are accessed
as (``sts:GetCallerIdentity`` after assuming the role), and which network settings are in
effect. The rest of the checklist is in preflight.py; this module only describes and asks STS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from botocore.utils import get_environ_proxies

from s3sqsd.access import AccessPlan
from s3sqsd.aws import ca_bundle_problems, resolved_endpoint, shown_proxy
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


def describe_network(config: Config, aws: Any, *, s3: Any, sqs: Any) -> CheckResult:
    """What is in effect: each service's endpoint as botocore resolves it (FIPS, dual-stack,
    STS regional or global), the proxy (never its credentials) and where it comes from, and the
    CA certificates. ``s3``, ``sqs``: the clients the checks use (``s3`` the default bucket's);
    the STS client is the one that assumes roles. A CA bundle that cannot be used is a FAIL."""
    network = config.aws
    problems = ca_bundle_problems(network)
    if problems:
        return CheckResult("network", Verdict.FAIL, "; ".join(problems))
    sts = aws.sts_client()
    bucket = next(iter(config.s3_bucket_name), None)
    if aws.s3_endpoint is not None:
        s3_url = aws.s3_endpoint
    elif bucket:  # virtual-hosted addressing: the bucket's own host name
        s3_url = resolved_endpoint(s3, "HeadBucket", {"Bucket": bucket})
    else:
        s3_url = resolved_endpoint(s3, "ListBuckets")
    endpoints = {
        "S3": (s3, s3_url),
        "SQS": (sqs, aws.sqs_endpoint or resolved_endpoint(sqs, "GetQueueAttributes")),
        "STS": (sts, aws.sts_endpoint or resolved_endpoint(sts, "GetCallerIdentity")),
    }
    parts = [f"{service} {url}" for service, (_, url) in endpoints.items()]
    if aws.sts_endpoint is None:
        parts[-1] += f" (sts_regional_endpoints: {network.sts_regional_endpoints})"
    flags = [
        name
        for name, on in (
            ("FIPS", network.use_fips_endpoint),
            ("dual-stack", network.use_dualstack_endpoint),
        )
        if on
    ]
    if flags:
        custom = [
            service
            for service, given in (
                ("S3", aws.s3_endpoint),
                ("SQS", aws.sqs_endpoint),
                ("STS", aws.sts_endpoint),
            )
            if given
        ]
        ignored = f" (not for {', '.join(custom)}: endpoint URL set)" if custom else ""
        parts.append(f"{' and '.join(flags)} endpoints{ignored}")
    parts.append(_proxy_in_effect(network.proxy_url, endpoints))
    if network.ca_bundle is not None:
        parts.append(f"CA certificates {network.ca_bundle} (aws.ca_bundle)")
    else:
        default = aws.default_ca_bundle()
        parts.append(
            f"CA certificates {default} (AWS_CA_BUNDLE or the AWS config file)"
            if default
            else "botocore's default CA certificates"
        )
    if network.proxy_ca_bundle is not None:
        parts.append(f"proxy CA certificates {network.proxy_ca_bundle} (aws.proxy_ca_bundle)")
    return CheckResult("network", Verdict.OK, "; ".join(parts))


def _proxy_in_effect(proxy_url: str | None, endpoints: Mapping[str, tuple[Any, str]]) -> str:
    """The proxy each client uses: ``aws.proxy_url`` for all, else what botocore took from the
    environment for the client's endpoint (``HTTPS_PROXY``/``HTTP_PROXY`` unless ``NO_PROXY``
    names its host), credentials never shown."""
    if proxy_url:
        return (
            f"proxy {shown_proxy(proxy_url)} for every call (aws.proxy_url; HTTPS_PROXY and "
            "NO_PROXY are not read)"
        )
    used: dict[str, list[str]] = {}
    for service, (client, _) in endpoints.items():
        endpoint = str(client.meta.endpoint_url)
        proxy = get_environ_proxies(endpoint).get(urlsplit(endpoint).scheme)
        used.setdefault(shown_proxy(proxy) if proxy else "", []).append(service)
    if list(used) == [""]:
        return "no proxy (none configured, none in the environment)"
    shown = [
        f"proxy {proxy} from the environment for {', '.join(services)}"
        if proxy
        else f"no proxy for {', '.join(services)} (NO_PROXY)"
        for proxy, services in used.items()
    ]
    return "; ".join(shown)
