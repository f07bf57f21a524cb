"""Credential material never survives redaction, whatever shape AWS quotes it in.

One section per function of ``s3sqsd/redact.py``; the exact replacements are pinned because
log readers, dead-letter attributes and the preflight report show them.
"""

from __future__ import annotations

import io
import json
import logging

import pytest

from s3sqsd.logs import add_secrets, configure_logging
from s3sqsd.redact import hide_access_key_ids, hide_url_queries, redact

TOKEN = "IQoJb3JpZ2luX2VjEDcaCXVzLWVhc3QtMSJHMEUCIQDcanaryTokenTail"
KEY_ID = "ASIAQCANARY1234567890"


@pytest.mark.parametrize(
    "text",
    [
        # SignatureDoesNotMatch from a query-protocol service quotes the canonical request.
        "The request signature we calculated does not match the signature you provided. "
        "The Canonical String for this request should have been\n'POST\n/\n\n"
        f"host:sqs.us-east-1.amazonaws.com\nx-amz-date:20260101T000000Z\n"
        f"x-amz-security-token:{TOKEN}\n\nhost;x-amz-date;x-amz-security-token\nabc'\n"
        f"The String-to-Sign should have been\n'AWS4-HMAC-SHA256\n{KEY_ID}'",
        f"header x-amz-security-token: {TOKEN} seen",
        f"https://b.s3.amazonaws.com/k?X-Amz-Security-Token={TOKEN}&X-Amz-Credential={KEY_ID}"
        "%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0123456789abcdef0123",
        f"Authorization: AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/sqs/aws4_request,"
        " SignedHeaders=host, Signature=0123456789abcdef0123456789abcdef",
        f"<Error><AWSAccessKeyId>{KEY_ID}</AWSAccessKeyId></Error>",
        f"the key {KEY_ID} is not valid",
    ],
)
def test_secrets_are_removed(text: str) -> None:
    cleaned = redact(text)
    assert TOKEN not in cleaned
    assert TOKEN[-16:] not in cleaned
    assert KEY_ID not in cleaned
    assert "0123456789abcdef0123" not in cleaned


def test_ordinary_text_is_untouched() -> None:
    text = "s3://inbox/reports/Q1 2024/a+b.csv: NoSuchKey (attempt 2 of 5)"
    assert redact(text) == text


def test_log_lines_are_redacted_in_every_field() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging(level="info", stream=out, journal=False)
        logging.getLogger("s3sqsd.test").error(
            "receive failed: x-amz-security-token:%s",
            TOKEN,
            extra={"error": f"X-Amz-Security-Token={TOKEN}", "other": f"plain {KEY_ID[:4]}"},
        )
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    record = json.loads(out.getvalue())
    assert TOKEN not in out.getvalue()
    assert "x-amz-security-token:***" in record["message"]
    assert record["other"] == "plain ASIA"


def test_known_secret_values_are_removed_wherever_they_appear() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging(level="info", stream=out, journal=False)
        add_secrets("s3cr3t-value-with-no-shape", "", None)
        logging.getLogger("s3sqsd.test").error("oops %s", "s3cr3t-value-with-no-shape")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert "s3cr3t" not in out.getvalue()
    assert "oops ***" in out.getvalue()


# ---- hide_url_queries: S3 GET error texts ------------------------------------------------------


def test_a_presigned_url_keeps_its_address_and_loses_its_query() -> None:
    text = (
        f"see https://b.s3.example/k?X-Amz-Security-Token={TOKEN}&X-Amz-Credential={KEY_ID}"
        "&X-Amz-Signature=0123456789abcdef0123 and 'http://h/p?a=1'"
    )
    assert hide_url_queries(text) == "see https://b.s3.example/k?... and 'http://h/p?...'"


def test_text_without_a_query_is_untouched_by_hide_url_queries() -> None:
    text = "GET s3://inbox/a b.csv failed: NoSuchKey (HTTP 404)"
    assert hide_url_queries(text) == text


# ---- hide_access_key_ids: the preflight report ---------------------------------------------------


def test_access_key_ids_are_named_not_shown() -> None:
    text = (
        "The key AKIAIOSFODNN7EXAMPLE (or ASIAXXXXXXXXXXXXXXXX) is not valid; AKIA alone is fine;"
        " user AIDAJQABLZS4A3QDU576Q, role AROAJQABLZS4A3QDU576Q"
    )
    assert hide_access_key_ids(text) == (
        "The key <access key id> (or <access key id>) is not valid; AKIA alone is fine;"
        " user <access key id>, role <access key id>"
    )
