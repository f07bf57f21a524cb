"""The pure parts of ``s3sqsd sync`` besides converge.py: the listing targets of a config
(listing.targets) and the progress line (progress.render)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.parsers import ResponseParserError

from s3sqsd.config import parse_config
from s3sqsd.errors import ConfigError, ListingError
from s3sqsd.listing import Target, list_pages, targets
from s3sqsd.progress import render
from s3sqsd.sync import Tally

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/q"


def config(**fields: Any) -> Any:
    return parse_config({"sqs_queue_url": QUEUE, **fields})


def test_allow_list_buckets_are_listed_whole() -> None:
    assert targets(config(s3_bucket_name=["a", "b"])) == (Target(bucket="a"), Target(bucket="b"))


def test_no_bucket_anywhere_needs_bucket_argument() -> None:
    with pytest.raises(ConfigError, match="--bucket"):
        targets(config())
    assert targets(config(), bucket="x", prefix="p/") == (Target(bucket="x", prefix="p/"),)


def test_bucket_argument_must_be_allowed() -> None:
    with pytest.raises(ConfigError, match="not in s3_bucket_name"):
        targets(config(s3_bucket_name=["a"]), bucket="z")
    assert targets(config(s3_bucket_name=["a", "b"]), bucket="b") == (Target(bucket="b"),)


def test_routes_give_bucket_and_prefix_and_prefix_argument_narrows() -> None:
    routed = config(
        s3_bucket_name=["a", "r"],
        routes=[
            {"bucket": "r", "prefix": "in/", "download_folder": "/srv/r"},
            {"prefix": "logs/", "download_folder": "/srv/l"},
        ],
    )
    assert targets(routed) == (
        Target(bucket="r", prefix="in/"),
        Target(bucket="a", prefix="logs/"),
        Target(bucket="r", prefix="logs/"),
    )
    assert targets(routed, prefix="logs/2024/") == (
        Target(bucket="a", prefix="logs/2024/"),
        Target(bucket="r", prefix="logs/2024/"),
    )
    with pytest.raises(ConfigError, match="nothing to list"):
        targets(routed, prefix="elsewhere/")


def test_progress_says_listed_so_far_until_the_total_is_known() -> None:
    streaming = Tally(listed=10, done=4, done_bytes=4096, downloaded_bytes=4096)
    line = render(streaming, elapsed=2.0)
    assert "4 of 10 objects listed so far" in line
    assert "ETA" not in line
    finished = Tally(
        listed=10, listed_bytes=10240, done=5, done_bytes=5120, listing_finished=True, failed=1
    )
    line = render(finished, elapsed=5.0)
    assert "5/10 objects" in line
    assert "ETA 0:05" in line
    assert "1 failed" in line


def test_a_garbled_listing_answer_is_a_listing_error_not_a_crash() -> None:
    """botocore raises ResponseParserError (not a BotoCoreError on bookworm's 1.29) for a
    garbled answer: it must end that listing, reported, not the whole sync with status 70."""

    class Garbled:
        def list_objects_v2(self, **params: object) -> dict[str, object]:
            raise ResponseParserError("Unable to parse response (not well-formed)")

    with pytest.raises(ListingError, match="ResponseParserError"):
        list(list_pages(Garbled(), Target(bucket="inbox", prefix="")))
