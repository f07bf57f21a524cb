"""access.py: which identity and guards each bucket and the queue use, and the start-up line."""

from __future__ import annotations

from pathlib import Path

from s3sqsd.access import describe, plan_access
from s3sqsd.config import parse_config

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/q"
TOP = "arn:aws:iam::111122223333:role/top"
PARTNER = "arn:aws:iam::777788889999:role/partner"
QUEUE_ROLE = "arn:aws:iam::444455556666:role/queue"


def test_a_route_bucket_gets_its_role_and_its_guards_over_the_top_level() -> None:
    config = parse_config(
        {
            "sqs_queue_url": QUEUE,
            "aws": {"role_arn": TOP, "sqs": {"role_arn": QUEUE_ROLE}},
            "expected_bucket_owner": "111122223333",
            "request_payer": "requester",
            "routes": [
                {
                    "bucket": "partner",
                    "prefix": "a/",
                    "download_folder": "/srv/partner",
                    "aws": {"role_arn": PARTNER},
                    "expected_bucket_owner": "777788889999",
                },
                {
                    "bucket": "partner",
                    "prefix": "b/",
                    "download_folder": "/srv/b",
                    "aws": {"role_arn": PARTNER},
                    "expected_bucket_owner": "777788889999",
                },
                {"download_folder": "/srv/rest"},
            ],
        }
    )
    plan = plan_access(config)
    partner = plan.for_bucket("partner")
    assert partner.role is not None
    assert partner.role.role_arn == PARTNER
    assert partner.guards.expected_bucket_owner == "777788889999"
    assert partner.guards.request_payer == "requester"  # unset on the route: the top level's
    other = plan.for_bucket("anything-else")
    assert other.role is not None
    assert other.role.role_arn == TOP
    assert other.guards.expected_bucket_owner == "111122223333"
    assert plan.sqs_role is not None
    assert plan.sqs_role.role_arn == QUEUE_ROLE
    assert [r.role_arn if r else None for r in plan.roles()] == [TOP, QUEUE_ROLE, PARTNER]
    assert describe(plan) == (
        f"queue as role {QUEUE_ROLE}; other buckets as role {TOP} (owner 111122223333, "
        f"requester pays); bucket partner as role {PARTNER} (owner 777788889999, requester pays)"
    )


def test_without_settings_everything_uses_the_host_credentials() -> None:
    plan = plan_access(parse_config({"sqs_queue_url": QUEUE}))
    assert plan.roles() == (None,)
    assert plan.buckets == {}
    assert describe(plan) == (
        "queue as the host's own credentials; buckets as the host's own credentials"
    )


def test_the_queue_uses_the_top_role_without_its_own_and_key_files_are_listed() -> None:
    config = parse_config(
        {
            "sqs_queue_url": QUEUE,
            "aws": {"role_arn": TOP},
            "routes": [
                {
                    "bucket": "sealed",
                    "download_folder": "/srv/s",
                    "sse_customer_key_file": "/run/credentials/s3sqsd.service/k",
                },
                {"download_folder": "/srv/rest"},
            ],
        }
    )
    plan = plan_access(config)
    assert plan.sqs_role is not None
    assert plan.sqs_role.role_arn == TOP
    assert plan.for_bucket("sealed").guards.sse_customer_key_file == Path(
        "/run/credentials/s3sqsd.service/k"
    )
    assert plan.key_files() == ("/run/credentials/s3sqsd.service/k",)
    assert "SSE-C key /run/credentials/s3sqsd.service/k" in describe(plan)
