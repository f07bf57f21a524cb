"""Credential material never survives redaction, whatever shape AWS quotes it in."""

from __future__ import annotations

import io
import json
import logging

import pytest

from s3sqsd.logs import add_secrets, configure_logging
from s3sqsd.redact import redact

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
